"""The promotion gate: serve the candidate only if it is not worse than its parent on a holdout.

Both models are judged as they would serve the holdout's users right after this update: the
candidate with the slice trained in, the parent with the slice as fresh history it was not
trained on (its seen items and, for sequential models, contexts include the slice, exactly
as ``recommend --history`` would serve). Ground truth is the next-slice protocol
(PROTOCOL.md): each holdout user's items new to them after the slice; the same users and truth
for both. The candidate passes when its NDCG@k is at least ``(1 - max_drop)`` x the parent's:
a relative tolerance, so one setting means the same on a log scoring 0.05 and one scoring 0.4.

>>> passes(candidate=0.196, parent=0.2, max_drop=0.02), passes(candidate=0.19, parent=0.2, max_drop=0.02)
(True, False)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recinc_cli.checkpoint import Bundle
from recinc_cli.evaluate import ranking_metrics, slice_truth
from recinc_cli.serve import serve_top


def passes(candidate: float, parent: float, max_drop: float) -> bool:
    """True when ``candidate`` NDCG is at most ``max_drop`` (relative) below ``parent``'s."""
    return candidate >= parent * (1.0 - max_drop) - 1e-12


def judge(
    parent: Bundle, candidate: Bundle, slice_events: pl.DataFrame, holdout: pl.DataFrame, max_drop: float, k: int = 10
) -> dict[str, Any]:
    """Compare ``parent`` and ``candidate`` (the parent updated with ``slice_events``) on
    ``holdout``.

    Returns ``{"passed", "users", "k", "max_drop", "parent_ndcg", "candidate_ndcg",
    "relative_change", "reason"}`` (plain values, stored in the lineage). ``passed`` is False
    when no holdout user can be judged: a gate that cannot see must not wave a model through.
    """
    users, row, truth = slice_truth(holdout, candidate.users, candidate.items, candidate.seen.contains)
    verdict: dict[str, Any] = {"k": k, "max_drop": max_drop, "users": len(users)}
    if len(users) == 0:
        return verdict | {
            "passed": False,
            "parent_ndcg": None,
            "candidate_ndcg": None,
            "relative_change": None,
            "reason": "no holdout user known to the model has items new to them there; nothing to judge by",
        }
    raw = pl.Series("user_id", candidate.users.ids, pl.String).gather(users)
    n_catalogue = len(candidate.items) - 1
    cand_top, _, _ = serve_top(candidate, candidate.serving_state(None), raw, k)
    par_top, _, _ = serve_top(parent, parent.serving_state(slice_events), raw, k)
    # The parent's item indices are a prefix of the candidate's (append-only), but map by id anyway.
    to_cand = candidate.items.lookup(pl.Series(parent.items.ids, dtype=pl.String))
    to_cand[0] = 0
    cand = ranking_metrics(cand_top, row, truth, k, n_catalogue)["ndcg"]
    par = ranking_metrics(to_cand[par_top], row, truth, k, n_catalogue)["ndcg"]
    change = (cand - par) / par if par > 0 else (0.0 if cand == par else float(np.sign(cand - par)))
    ok = passes(cand, par, max_drop)
    reason = f"candidate NDCG@{k} {cand:.4f} vs parent {par:.4f} ({change:+.1%}) on {len(users):,} holdout users" + (
        "" if ok else f": more than the allowed {max_drop:.1%} drop"
    )
    return verdict | {
        "passed": ok,
        "parent_ndcg": float(par),
        "candidate_ndcg": float(cand),
        "relative_change": float(change),
        "reason": reason,
    }
