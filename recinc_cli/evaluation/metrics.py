"""Ranking metrics (pure numpy) and the next-slice evaluation protocol.

Protocol (shared/PROTOCOL.md step 3a): users known to the model with at least one item in the
test events that they never interacted with before; ground truth = those new distinct items;
the full known catalogue is ranked minus each user's seen items. Items new to the catalogue
count in the ground truth (they cannot be hit, as in production).

>>> top = np.array([[5, 7, 9], [1, 2, 3]])
>>> m = ranking_metrics(top, np.array([0, 0, 1]), np.array([7, 8, 4]), k=3, n_catalogue=10)
>>> round(m["ndcg"], 4), m["recall"], m["hit_rate"], m["mrr"], m["coverage"]
(0.1934, 0.25, 0.5, 0.25, 0.6)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from recinc_cli.data.unique import sorted_unique
from recinc_cli.data.vocab import Vocab


def ranking_metrics(
    top_items: np.ndarray,
    truth_row: np.ndarray,
    truth_item: np.ndarray,
    k: int,
    n_catalogue: int,
) -> dict[str, float]:
    """Mean metrics@k over users.

    Parameters
    ----------
    top_items: (U, k) int64 ranked item indices per evaluated user (0 = empty slot).
    truth_row, truth_item: (n,) int64 ground-truth pairs; ``truth_row`` indexes rows of
        ``top_items``; each pair is distinct. Every row has at least one pair.
    n_catalogue: number of rankable items (for coverage).

    Returns
    -------
    dict with recall, precision, f1, ndcg, mrr, hit_rate, coverage, users. Recall divides by
    min(k, |truth|) and NDCG's ideal DCG has min(k, |truth|) hits, as in PROTOCOL.md.
    """
    per_user = user_metrics(top_items, truth_row, truth_item, k)
    top = top_items[:, :k]
    recommended = sorted_unique(top[top > 0])
    return {
        **{name: float(v.mean()) if len(v) else 0.0 for name, v in per_user.items()},
        "coverage": len(recommended) / max(n_catalogue, 1),
        "users": int(top_items.shape[0]),
    }


def user_metrics(top_items: np.ndarray, truth_row: np.ndarray, truth_item: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each user's metrics@k: ``{"recall", "precision", "f1", "ndcg", "mrr", "hit_rate"}``, each
    (U,) float64, from the same inputs as :func:`ranking_metrics` (which averages them).

    >>> user_metrics(np.array([[5, 7], [1, 2]]), np.array([0, 1]), np.array([7, 3]), k=2)["mrr"].tolist()
    [0.5, 0.0]
    """
    n_users = top_items.shape[0]
    top = top_items[:, :k]
    n_truth = np.bincount(truth_row, minlength=n_users)
    stride = int(max(top.max(initial=0), truth_item.max(initial=0))) + 1
    truth_keys = sorted_unique(truth_row.astype(np.int64) * stride + truth_item)
    rows = np.arange(n_users, dtype=np.int64)[:, None]
    hits = np.isin(rows * stride + top, truth_keys) & (top > 0)
    n_hits = hits.sum(1)
    denom = np.minimum(n_truth, k).clip(min=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts[: top.shape[1]]).sum(1)
    idcg = np.cumsum(discounts)[denom - 1]
    recall = n_hits / denom
    precision = n_hits / k
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(n_hits > 0, 2 * precision * recall / (precision + recall), 0.0)
    first = np.where(hits.any(1), hits.argmax(1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    return {
        "recall": recall.astype(np.float64),
        "precision": precision.astype(np.float64),
        "f1": f1.astype(np.float64),
        "ndcg": dcg / idcg,
        "mrr": mrr,
        "hit_rate": (n_hits > 0).astype(np.float64),
    }


#: The means@k a streaming slice is scored by.
SLICE_METRICS: tuple[str, ...] = ("ndcg", "recall", "hit_rate")


@dataclass(frozen=True)
class SliceScore:
    """One ranking scored on one slice: ``metrics`` the means@k (ndcg, recall, hit_rate) and
    ``users``; ``ndcg`` (U,) float64 each user's NDCG@k in the order of ``SliceTruth.users``,
    so two rankings of the same slice pair user by user (``recinc replay``)."""

    metrics: dict[str, float]
    ndcg: np.ndarray

    @classmethod
    def of(cls, top: np.ndarray, truth_row: np.ndarray, truth_item: np.ndarray, k: int) -> SliceScore:
        """Score rankings ``top`` (U, k) against truth pairs (:func:`~recinc_cli.evaluation.metrics.user_metrics`)."""
        per_user = user_metrics(top, truth_row, truth_item, k)
        means = {name: float(per_user[name].mean()) if len(top) else 0.0 for name in SLICE_METRICS}
        return cls(means | {"users": int(top.shape[0])}, per_user["ndcg"])


def next_slice_truth(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    item_key: np.ndarray,
    seen_contains: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eligible users and their ground truth for the next-slice protocol.

    Parameters
    ----------
    user_idx, item_idx: (n,) int64 indices of the test events (0 = unknown to the model).
    item_key: (n,) int64 distinct code per raw item id (so unknown items stay distinct).
    seen_contains: ``SeenItems.contains``.

    Returns
    -------
    users (U,) sorted eligible user indices, truth_row (m,) row into ``users``, truth_item (m,)
    item index (0 for items the model has never seen).
    """
    known = user_idx > 0
    pairs = np.unique(np.stack([user_idx[known], item_key[known]], 1), axis=0, return_index=True)[1]
    u = user_idx[known][pairs]
    i = item_idx[known][pairs]
    new = ~seen_contains(u, i)
    u, i = u[new], i[new]
    users, row = np.unique(u, return_inverse=True)
    return users, row, i


def never_seen(user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    """A ``seen_contains`` under which every item counts as new (``--repeats``: items a user has
    seen are ranked and count as ground truth too)."""
    return np.zeros(len(user_idx), dtype=bool)


def slice_truth(
    events: pl.DataFrame, users: Vocab, items: Vocab, seen_contains: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`next_slice_truth` of an events DataFrame under a model's vocabularies."""
    item_key = events["item_id"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    return next_slice_truth(users.lookup(events["user_id"]), items.lookup(events["item_id"]), item_key, seen_contains)


def latency_ms(score_one: Callable[[np.ndarray], object], user_idx: np.ndarray, n: int = 200) -> dict[str, float]:
    """p50/p99 milliseconds to answer one user at a time, over up to ``n`` users."""
    times = []
    for u in user_idx[:n]:
        t0 = time.perf_counter()
        score_one(np.array([u]))
        times.append((time.perf_counter() - t0) * 1000)
    if not times:
        return {"p50": 0.0, "p99": 0.0}
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}
