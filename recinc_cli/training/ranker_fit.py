"""Fitting ``--model ranker`` in ``init`` and ``update``: labelled examples, then the booster.

An example is a (user, candidate) pair with the features as of a cut-off and the label "the
user took this item, new to them, after the cut-off". The cut-offs never see their labels:

- ``init`` cuts its log at :data:`INIT_CUTS` of its events; at each cut the model holds only
  the events before it, and the next ``window_fraction`` of the log labels the examples;
- ``update`` builds its examples with the parent's state (features as of the end of the
  previous slice) and labels them with the new slice, then folds the slice in. This is exactly
  what the served model faces next time: the state after this update and the slice to come.

Each run's examples join the model's pool and the booster is fit on it (refit at ``init``,
continued at ``update``: :meth:`~recinc_cli.models.ranker.Ranker.learn`). Before that, the
current booster is scored on the new examples: that NDCG@10 is the run's ``valid_ndcg``, a
test-then-train figure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from recinc_cli.config import Auto, auto_or
from recinc_cli.data.unique import sorted_unique
from recinc_cli.evaluation.metrics import user_metrics
from recinc_cli.models.ranker import FEATURES, POOL_ROWS, block_rows
from recinc_cli.training.closed_form import absorbed
from recinc_cli.training.report import FitReport, Judged, closed_form_report

if TYPE_CHECKING:
    from recinc_cli.models.ranker import Ranker
    from recinc_cli.store.bundle import Bundle

#: Where ``init`` cuts its log to build training examples (fractions of its events).
#: Boosters fit offline on the replay slices' examples (README, "0.8.0"): 17 cuts from 10% to
#: 90% gave 0.2064 / 0.2047 NDCG@10 on MovieLens-100K / -1M, the 6 cuts 30%-80% of 0.7.0 0.1909
#: / 0.1981 (the booster saw 482 / 647 users' groups instead of 171 / 229); cuts every 2.5% or
#: windows of 15-20% gained nothing. ``recinc replay`` itself: 0.2019 / 0.2006, from 0.1859 / 0.1983.
INIT_CUTS: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))
#: Users one run (an ``update``, or one cut of an ``init``) builds examples for, drawn at random
#: from those with a new item in the window when more qualify. Candidate building is the bulk of
#: a fit's cost, and the pool keeps only POOL_ROWS rows (about 1,300 users' groups at 50
#: candidates) however many are built; MovieLens-1M users 1-1500 never reaches this.
EXAMPLE_USERS = 2048


def ranker_fit(
    bundle: Bundle, events: pl.DataFrame, window_fraction: float, pop_weight: float | Auto
) -> tuple[Bundle, FitReport]:
    """Fold ``events`` (time-ordered) into ``bundle``'s ranker and fit its booster; return the
    bundle with the events folded in and the fit's report.

    ``window_fraction``: at ``init`` (nothing folded yet), the share of the log after each cut
    that labels its examples (``--valid-fraction``; 0 = no examples, the generators' blend is
    served). The served popularity weight is ``pop_weight``, 0 for ``auto``: popularity is a feature.
    """
    start = time.perf_counter()
    model: Ranker = bundle.model  # type: ignore[assignment]
    half_life = auto_or(bundle.train_cfg.cooc_half_life_events, 0.0)

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    rng = np.random.default_rng(bundle.train_cfg.seed)
    if float(model.clock[0]) == 0:
        n, pos = events.height, 0
        window = round(n * window_fraction)
        cuts = sorted({c for c in (round(n * f) for f in INIT_CUTS) if 0 < c < n}) if window else []
        last = 0  # rows the newest built cut gave
        for i, cut in enumerate(cuts):
            # The pool keeps the newest POOL_ROWS rows: skip a cut when the cuts after it, at the
            # newest built cut's size, would push all its rows out (a large log builds the first
            # cut, to learn that size, then only the newest few).
            if (len(cuts) - i - 1) * last >= POOL_ROWS:
                continue
            bundle = absorbed(bundle, events[pos:cut], half_life)
            pos = cut
            parts.append(examples(bundle, events[cut : cut + window], rng))
            last = len(parts[-1][1])
        bundle = absorbed(bundle, events[pos:], half_life)
    else:
        parts.append(examples(bundle, events, rng))
        bundle = absorbed(bundle, events, half_life)
    ndcg = parts[-1][3] if parts else np.zeros(0)
    if parts:
        feats, labels, groups = (np.concatenate([p[j] for p in parts]) for j in range(3))
        model.learn(feats, labels, groups, bundle.train_cfg.seed)
    # The booster is scored on the new examples before it learns them: a test-then-train figure.
    judged = Judged(float(ndcg.mean()), float(ndcg.mean()), "next", len(ndcg)) if len(ndcg) else None
    extra = {"pool_rows": len(model.pool_y), "pool_groups": len(model.pool_group)}
    report = closed_form_report(events, time.perf_counter() - start, judged, model.FIT_SUMMARY, extra)
    return bundle.replace(pop_weight=auto_or(pop_weight, 0.0)), report


def examples(
    bundle: Bundle, window: pl.DataFrame, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Examples labelled by ``window``, with the features of ``bundle``'s model as it is now,
    for at most :data:`EXAMPLE_USERS` users (drawn with ``rng``, seeded 0 by default, when more qualify).

    Returns features (m, F) float32, labels (m,) float32, group sizes (G,) int64 (users with
    at least one positive candidate, in order) and the NDCG@10 (U,) of the current ranking
    for every user with a new item in ``window`` (users with no earlier event are skipped).
    """
    model: Ranker = bundle.model  # type: ignore[assignment]
    n_items = model.n_items
    users = bundle.users.lookup(window["user_id"])
    items = bundle.items.lookup(window["item_id"])
    known = (users > 0) & (users < bundle.seen.n_users) & (items > 0)
    known[known] = np.diff(bundle.seen.indptr.numpy())[users[known]] > 0  # an earlier event
    new = known.copy()
    new[known] = ~bundle.seen.contains(users[known], items[known])
    truth = sorted_unique(users[new] * n_items + items[new])  # sorted by user, then item
    truth_user, truth_item = truth // n_items, truth % n_items
    eligible = sorted_unique(truth_user)
    if len(eligible) > EXAMPLE_USERS:
        eligible = np.sort((rng or np.random.default_rng(0)).choice(eligible, EXAMPLE_USERS, replace=False))
        inside = np.isin(truth_user, eligible)
        truth, truth_user, truth_item = truth[inside], truth_user[inside], truth_item[inside]
    empty = np.zeros((0, len(FEATURES)), np.float32)
    out_f, out_y, out_g, out_ndcg = [empty], [np.zeros(0, np.float32)], [np.zeros(0, np.int64)], [np.zeros(0)]
    step = block_rows(n_items)
    for lo in range(0, len(eligible), step):
        block = eligible[lo : lo + step]
        seq = bundle.context.padded(torch.as_tensor(block), width=model.cfg.max_len)[0].numpy()  # type: ignore[union-attr]
        rows, cand, feats = model.candidates(seq, block)
        # Items seen before the context's window are never served (top-k masks them): no examples.
        fresh = ~bundle.seen.contains(block[rows], cand)
        rows, cand, feats = rows[fresh], cand[fresh], feats[fresh]
        labels = np.isin(block[rows] * n_items + cand, truth).astype(np.float32)
        t_lo, t_hi = np.searchsorted(truth_user, block[0]), np.searchsorted(truth_user, block[-1], side="right")
        top = _top_items(rows, cand, model.rank_scores(feats), len(block), k=10)
        truth_row = np.searchsorted(block, truth_user[t_lo:t_hi])
        out_ndcg.append(user_metrics(top, truth_row, truth_item[t_lo:t_hi], k=10)["ndcg"])
        sizes = np.bincount(rows, minlength=len(block))
        positive = np.bincount(rows, weights=labels, minlength=len(block)) > 0
        keep = positive[rows]
        out_f.append(feats[keep])
        out_y.append(labels[keep])
        out_g.append(sizes[positive].astype(np.int64))
    return np.concatenate(out_f), np.concatenate(out_y), np.concatenate(out_g), np.concatenate(out_ndcg)


def _top_items(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, k: int) -> np.ndarray:
    """(n_rows, k) int64: each row's ``k`` best-scored candidate items, 0-padded.

    >>> _top_items(np.array([0, 0, 1]), np.array([4, 7, 9]), np.array([1.0, 2.0, 5.0]), 2, k=3).tolist()
    [[7, 4, 0], [9, 0, 0]]
    """
    order = np.lexsort((-scores, rows))
    r = rows[order]
    pos = np.arange(len(r)) - np.searchsorted(r, r, side="left")
    keep = pos < k
    top = np.zeros((n_rows, k), np.int64)
    top[r[keep], pos[keep]] = items[order][keep]
    return top
