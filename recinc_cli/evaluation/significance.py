"""Is a measured lift more than noise? Paired bootstrap intervals and the thin-evidence warning.

A next-slice evaluation on a small log scores a few dozen users, and a session log scored with
the wrong protocol may score one; the mean metric of so few says nothing, yet it prints like any
other number. :func:`lift_evidence` resamples the evaluated units (users, or sessions for the
session protocol) with replacement and reports the 95% interval of the model's mean metric minus
the baseline's, on the same resampled units (a paired bootstrap). :func:`thin_warning` turns it
into one line for the user when fewer than :data:`MIN_USERS` units were scored or the interval
reaches zero (the lift is within the noise).

>>> rng = np.random.default_rng(0)
>>> base = rng.random(400)
>>> e = lift_evidence(base + 0.1, base)
>>> round(e["difference"], 3), e["interval"][0] > 0, thin_warning(e) is None
(0.1, True, True)
>>> thin_warning(lift_evidence(np.array([1.0, 0.0]), np.array([0.0, 0.0])))
'only 2 users scored (under 100): these figures say little'
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Fewest evaluated users (or sessions) whose mean metric we present without a warning.
MIN_USERS = 100
#: Bootstrap resamples; fewer for very many units (the interval is then narrow anyway).
N_RESAMPLES = 1000
#: Resampled values drawn per block (memory bound of one block: 8 bytes each).
_BLOCK = 4_000_000


def lift_evidence(
    model: np.ndarray,
    baseline: np.ndarray,
    counts: np.ndarray | None = None,
    level: float = 0.95,
    seed: int = 0,
    unit: str = "users",
) -> dict[str, Any]:
    """Paired bootstrap interval of ``mean(model) - mean(baseline)``.

    Parameters
    ----------
    model, baseline: (U,) float per-unit metric values (e.g. each user's NDCG@10), or per-unit
        sums when ``counts`` is given.
    counts: (U,) number of predictions summed in each unit (session protocol: a session's
        clicks); the mean is then sum of sums / sum of counts, and units are resampled whole.
    unit: what a unit is, for the warning text (``users`` or ``sessions``).

    Returns
    -------
    ``{"units", "unit", "difference", "interval": [lo, hi], "level"}`` (plain floats).
    """
    model = np.asarray(model, dtype=np.float64)
    diff = model - np.asarray(baseline, dtype=np.float64)
    weight = np.ones(len(diff)) if counts is None else np.asarray(counts, dtype=np.float64)
    n = len(diff)
    out: dict[str, Any] = {"units": n, "unit": unit, "level": level}
    if n == 0 or weight.sum() == 0:
        return out | {"difference": 0.0, "interval": [0.0, 0.0]}
    out["difference"] = float(diff.sum() / weight.sum())
    rng = np.random.default_rng(seed)
    n_resamples = int(min(N_RESAMPLES, max(200, 50_000_000 // n)))
    stats = np.empty(n_resamples)
    per_block = max(1, _BLOCK // n)
    for lo in range(0, n_resamples, per_block):
        m = min(per_block, n_resamples - lo)
        pick = rng.integers(0, n, size=(m, n))
        stats[lo : lo + m] = diff[pick].sum(1) / np.maximum(weight[pick].sum(1), 1e-12)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return out | {"interval": [float(low), float(high)]}


def thin_warning(evidence: dict[str, Any], min_units: int = MIN_USERS) -> str | None:
    """One line when ``evidence`` (from :func:`lift_evidence`) is too thin to mean anything:
    fewer than ``min_units`` units, or a 95% interval of the lift that includes zero."""
    n, unit = evidence["units"], evidence.get("unit", "users")
    if n < min_units:
        return f"only {n:,} {unit if n != 1 else unit.rstrip('s')} scored (under {min_units}): these figures say little"
    lo, hi = evidence["interval"]
    if lo <= 0 <= hi:
        pct = round(evidence.get("level", 0.95) * 100)
        return (
            f"the lift over popularity ({evidence['difference']:+.4f}) is within the noise: its {pct}% "
            f"interval over {n:,} {unit} is {lo:+.4f} .. {hi:+.4f}"
        )
    return None
