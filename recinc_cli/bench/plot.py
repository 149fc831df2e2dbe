"""The figure of a ``recinc replay`` report: NDCG@k per slice per strategy, and update seconds.

matplotlib is an optional extra (``pip install 'recinc[plot]'``); :func:`require_matplotlib`
fails fast, before a long replay, when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recinc_cli.data.io import atomic_path
from recinc_cli.errors import UsageError


def require_matplotlib() -> None:
    """Raise :class:`UsageError` (exit 2) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'recinc[plot]'") from None


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """Write a PNG with two panels: metric per slice per strategy, mean update seconds."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed under cron
    import matplotlib.pyplot as plt

    k = report["k"]
    strategies = report["strategies"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for name, r in strategies.items():
        values = [s["ndcg"] for s in r["per_slice"]]
        left.plot(range(1, len(values) + 1), values, marker="o", label=f"{name} (mean {r['mean']['ndcg']:.3f})")
    left.set_xlabel("slice")
    left.set_ylabel(f"NDCG@{k}")
    left.set_title(f"{report['model']}: evaluated on each slice before training on it")
    left.set_xticks(range(1, len(report["slices"])))
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    names = list(strategies)
    seconds = [strategies[n]["mean"]["seconds"] for n in names]
    bars = right.bar(names, seconds, color="tab:gray")
    right.bar_label(bars, labels=[f"{s:.1f}s" for s in seconds], fontsize=8)
    right.set_ylabel("mean seconds per update")
    right.set_title(f"update cost (base fit {report['base_seconds']:.1f}s)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
