"""The promotion gate: serve the candidate only if it is not worse than its parent on a holdout.

Both models are judged as they would serve the holdout's users right after this update: the
candidate with the slice trained in, the parent with the slice as fresh history it was not
trained on (its seen items and, for sequential models, contexts include the slice, exactly
as ``recommend --history`` would serve). Ground truth is the next-slice protocol
(PROTOCOL.md): each holdout user's items new to them after the slice (with the checkpoint's
``repeats`` on, every item they take, seen ones ranked too, as they would be served); the same
users and truth for both. The candidate passes when its NDCG@k is at least ``(1 - max_drop)`` x the parent's:
a relative tolerance, so one setting means the same on a log scoring 0.05 and one scoring 0.4.

The verdict also says how far to trust it: the users judged and a paired bootstrap interval of
the candidate-minus-parent NDCG@k difference (:func:`~recinc_cli.evaluation.significance.lift_evidence`),
with a ``warning`` when fewer than 100 users were judged or the interval includes 0. The gate
still decides on the point estimate, not on the interval: a candidate is nearly always close to
its parent, so on a holdout of a few hundred users the interval nearly always includes 0. A gate
that demanded a significant gain would block almost every update; one that blocked only a
significant loss would wave through a damaged model whenever the holdout is small. The
tolerance on the point estimate behaves the same on every holdout; the interval tells the
operator whether the holdout is large enough for it.

>>> passes(candidate=0.196, parent=0.2, max_drop=0.02), passes(candidate=0.19, parent=0.2, max_drop=0.02)
(True, False)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recinc_cli.evaluation.metrics import never_seen, slice_truth, user_metrics
from recinc_cli.evaluation.significance import MIN_USERS, lift_evidence
from recinc_cli.serving.serve import serve_top
from recinc_cli.serving.views import serving_state
from recinc_cli.store.bundle import Bundle


def passes(candidate: float, parent: float, max_drop: float) -> bool:
    """True when ``candidate`` NDCG is at most ``max_drop`` (relative) below ``parent``'s."""
    return candidate >= parent * (1.0 - max_drop) - 1e-12


#: The verdict when no holdout user can be judged.
BLIND: dict[str, Any] = {
    "passed": False,
    **dict.fromkeys(("parent_ndcg", "candidate_ndcg", "relative_change", "difference", "interval", "level", "warning")),
    "reason": "no holdout user known to the model has items new to them there; nothing to judge by",
}


def judge(
    parent: Bundle, candidate: Bundle, slice_events: pl.DataFrame, holdout: pl.DataFrame, max_drop: float, k: int = 10
) -> dict[str, Any]:
    """Compare ``parent`` and ``candidate`` (the parent updated with ``slice_events``) on
    ``holdout``.

    Returns ``{"passed", "users", "k", "max_drop", "parent_ndcg", "candidate_ndcg",
    "relative_change", "difference", "interval", "level", "warning", "reason"}`` (plain values,
    stored in the lineage): ``difference`` is candidate minus parent NDCG@k, ``interval`` its
    ``level`` (95%) paired bootstrap interval over the users judged, ``warning`` one line when
    the verdict rests on fewer than 100 users or the interval includes 0 (else None); the reason
    carries the warning too. ``passed`` is False when no holdout user can be judged: a gate that
    cannot see must not wave a model through.
    """
    repeats = candidate.train_cfg.repeats  # judge what would be served: seen items too with --repeats
    seen_contains = never_seen if repeats else candidate.seen.contains
    users, row, truth = slice_truth(holdout, candidate.users, candidate.items, seen_contains)
    verdict: dict[str, Any] = {"k": k, "max_drop": max_drop, "users": len(users)}
    if len(users) == 0:
        return verdict | BLIND
    raw = pl.Series("user_id", candidate.users.ids, pl.String).gather(users)
    cand_top, _, _ = serve_top(candidate, serving_state(candidate, None), raw, k, repeats=repeats)
    par_top, _, _ = serve_top(parent, serving_state(parent, slice_events), raw, k, repeats=repeats)
    # The parent's item indices are a prefix of the candidate's (append-only), but map by id anyway.
    to_cand = candidate.items.lookup(pl.Series(parent.items.ids, dtype=pl.String))
    to_cand[0] = 0
    cand_users = user_metrics(cand_top, row, truth, k)["ndcg"]
    par_users = user_metrics(to_cand[par_top], row, truth, k)["ndcg"]
    cand, par = float(cand_users.mean()), float(par_users.mean())
    evidence = lift_evidence(cand_users, par_users)
    change = (cand - par) / par if par > 0 else (0.0 if cand == par else float(np.sign(cand - par)))
    ok = passes(cand, par, max_drop)
    lo, hi = evidence["interval"]
    warning = _warning(len(users), evidence)
    reason = (
        f"candidate NDCG@{k} {cand:.4f} vs parent {par:.4f} ({change:+.1%}; difference "
        f"{cand - par:+.4f}, 95% interval {lo:+.4f} .. {hi:+.4f}) on {len(users):,} holdout users"
        + ("" if ok else f": more than the allowed {max_drop:.1%} drop")
        + ("" if warning is None else f" (warning: {warning})")
    )
    return verdict | {
        "passed": ok,
        "parent_ndcg": par,
        "candidate_ndcg": cand,
        "relative_change": float(change),
        "difference": evidence["difference"],
        "interval": [lo, hi],
        "level": evidence["level"],
        "warning": warning,
        "reason": reason,
    }


def _warning(n_users: int, evidence: dict[str, Any]) -> str | None:
    """Why the verdict says little, in one line: too few users, or a difference within the noise.

    >>> _warning(40, {"interval": [0.01, 0.02]})
    'only 40 holdout users judged (under 100): the verdict rests on few users'
    >>> _warning(400, {"interval": [-0.01, 0.02]})
    'the difference is within the noise: its 95% interval includes 0'
    >>> _warning(400, {"interval": [0.01, 0.02]}) is None
    True
    """
    if n_users < MIN_USERS:
        who = "user" if n_users == 1 else "users"
        return f"only {n_users:,} holdout {who} judged (under {MIN_USERS}): the verdict rests on few users"
    lo, hi = evidence["interval"]
    if lo <= 0 <= hi:
        return "the difference is within the noise: its 95% interval includes 0"
    return None
