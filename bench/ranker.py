"""The ranker's ablation under the streaming protocol (shared/PROTOCOL.md), through ``recinc replay``.

Per log: the ranker at defaults with every strategy (incremental vs retrain: quality ratio and
seconds per update), then the incremental ranker without each feature group
(``--rank-features``), with 25 and 100 candidates per generator (``--candidates``), and the
single models it is measured against (``ease``, ``mf``). Each row gives the mean NDCG@10, the
slices won against latest-slice popularity, seconds per update and the run's peak memory
(resident set of the replay process). Every figure comes from the command's own
``report.json``; the popularity baseline is that of the same run.

Usage::

    python bench/ranker.py [--data-dir ../shared/data] [--out bench_out] [--datasets ml-1m,ml-100k]
        [--show bench_out/ranker.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import console, run_main  # type: ignore[import-not-found]
from rich.table import Table

GROUPS = ("generators", "popularity", "item_age", "user")


def _without(group: str) -> str:
    return ",".join(g for g in GROUPS if g != group)


#: label -> (model, strategies, extra options)
RUNS: dict[str, tuple[str, str, list[str]]] = {
    "ranker (defaults)": ("ranker", "incremental,retrain,popular", []),
    **{f"ranker without {g}": ("ranker", "incremental,popular", ["--rank-features", _without(g)]) for g in GROUPS},
    "ranker, 25 candidates": ("ranker", "incremental,popular", ["--candidates", "25"]),
    "ranker, 100 candidates": ("ranker", "incremental,popular", ["--candidates", "100"]),
    "ease alone": ("ease", "incremental,popular", []),
    "mf alone": ("mf", "incremental,popular", []),
}


def replay(log: Path, out: Path, model: str, strategies: str, extra: list[str]) -> dict[str, Any]:
    """One ``recinc replay``; its report with ``peak_mb`` (the process's peak resident MiB)."""
    cmd = [sys.executable, "-m", "recinc_cli", "replay", str(log), "-o", str(out), "--model", model]
    proc = subprocess.Popen([*cmd, "--strategies", strategies, *extra, "-q"], stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode().strip() if proc.stderr else status}")
    report = json.loads((out / "report.json").read_text())
    report["peak_mb"] = round(usage.ru_maxrss / 1024, 1)
    return report


def run_dataset(name: str, log: Path, out: Path, models: list[str]) -> dict[str, Any]:
    results = {}
    for label, (model, strategies, extra) in RUNS.items():
        console.log(f"{name}: {label}")
        slug = label.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
        results[label] = replay(log, out / "ranker" / name / slug, model, strategies, extra)
    return results


def show(name: str, results: dict[str, Any]) -> None:
    table = Table(title=f"{name}: incremental, mean over slices (latest-slice popularity of the same run)")
    for col in ("variant", "NDCG@10", "x popular", "slices won", "s/update", "peak MiB", "per slice"):
        table.add_column(col, justify="left" if col in ("variant", "per slice") else "right")
    for label, r in results.items():
        inc, pop = r["strategies"]["incremental"], r["strategies"]["popular"]
        won = sum(a["ndcg"] > b["ndcg"] for a, b in zip(inc["per_slice"], pop["per_slice"], strict=True))
        table.add_row(
            label,
            f"{inc['mean']['ndcg']:.4f}",
            f"{inc['mean']['ndcg'] / max(pop['mean']['ndcg'], 1e-12):.3f}",
            f"{won}/{len(inc['per_slice'])}",
            f"{inc['mean']['seconds']:.2f}",
            f"{r['peak_mb']:.0f}",
            " ".join(f"{x['ndcg']:.3f}" for x in inc["per_slice"]),
        )
    console.print(table)
    main = results.get("ranker (defaults)", {}).get("strategies", {})
    if "retrain" in main:
        inc, re_ = main["incremental"]["mean"], main["retrain"]["mean"]
        console.print(
            f"{name}: ranker incremental / retrain NDCG@10 = {inc['ndcg'] / max(re_['ndcg'], 1e-12):.3f}x "
            f"({inc['ndcg']:.4f} / {re_['ndcg']:.4f}); seconds per update = "
            f"{inc['seconds'] / max(re_['seconds'], 1e-12):.3f}x ({inc['seconds']:.2f} / {re_['seconds']:.2f})"
        )


if __name__ == "__main__":
    run_main(__doc__, "ranker.json", run_dataset, show, "ml-100k,ml-1m", "ranker")
