"""Top-k recommendation: batched scoring, seen-item masking, popularity fallback.

>>> seen = SeenItems.empty(3).merge(np.array([1]), np.array([2]), n_users=3)
>>> scores = lambda u, out=None: torch.tensor([[0.0, 3.0, 9.0, 1.0]]).repeat(len(u), 1)
>>> items, vals = top_k(scores, np.array([1, 2]), seen, k=2)
>>> items.tolist()
[[1, 3], [2, 1]]
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from recinc_cli.data.context import Context
from recinc_cli.data.seen import SeenItems
from recinc_cli.models.base import Query, Recommender


class ScoreFn(Protocol):
    """Scores of every item for users ``users`` (B,) int64: (B, n_items) float32, a tensor its
    caller may overwrite (masking happens in place).

    ``out`` is a (B, n_items) float32 buffer the scores may be written into (the return value
    is then ``out``): :func:`top_k` reuses one buffer across chunks, which spares the page
    faults of a fresh 100 MB allocation per chunk (2.6x on a 195,000-item catalogue).
    """

    def __call__(self, users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor: ...


#: Users scored at once, at most; fewer where the catalogue is large (_CHUNK_FLOATS).
CHUNK = 2048
#: Floats in one chunk's scores (128 MiB): 2,048 users up to 16,384 items, 167 at 200,000.
_CHUNK_FLOATS = 1 << 25
#: The first chunk, scored before the catalogue's width is known.
_FIRST_CHUNK = 256


def top_k(
    score_fn: ScoreFn,
    user_idx: np.ndarray,
    seen: SeenItems | None,
    k: int,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` unseen items for each user.

    Parameters
    ----------
    score_fn: maps user indices (B,) int64 to scores (B, n_items) (:class:`ScoreFn`); called
        from several threads at once when ``workers`` > 1.
    user_idx: (U,) int64 user indices; indices beyond ``seen`` have nothing masked.
    seen: each user's items to leave out; None ranks them too (``--repeats``).
    workers: chunks scored at once, each on one thread (default: torch's thread count).

    Returns
    -------
    items (U, k) int64 and scores (U, k) float32; where fewer than ``k`` items are left,
    the tail holds item 0 and score -inf.

    The first chunk is scored alone: it gives the catalogue's width, and it fills whatever a
    model keeps between calls (sasrec's item vectors, the ranker's booster) before any thread
    reads it. The rest go to ``workers`` threads, each with its own buffer and one thread of
    torch and of numpy's BLAS: a skinny product splits badly across cores, and two chunks at
    once, one core each, ran 2.1x faster than one chunk on two cores (40,000 users of the
    medium mf, 110,942 items). Memory: ``workers`` buffers of about :data:`_CHUNK_FLOATS` floats.
    """
    out_items = np.zeros((len(user_idx), k), dtype=np.int64)
    out_scores = np.full((len(user_idx), k), -np.inf, dtype=np.float32)
    if not len(user_idx):
        return out_items, out_scores
    caller = threading.current_thread()

    def rank(start: int, stop: int, buffer: torch.Tensor | None) -> torch.Tensor:
        users = torch.from_numpy(np.asarray(user_idx[start:stop], dtype=np.int64))
        with torch.inference_mode():  # per thread: each worker enters it itself
            scores = score_fn(users, out=None if buffer is None else buffer[: len(users)]).float()
            _mask(scores, users, seen)
            kk = min(k, scores.shape[1])
            vals, idx = block_topk(scores, kk)
            idx[torch.isinf(vals)] = 0
        out_items[start:stop, :kk] = idx.numpy()
        out_scores[start:stop, :kk] = vals.numpy()
        if progress and threading.current_thread() is caller:  # rich's bar: advanced from one thread
            progress(len(users))
        return scores

    # numpy's BLAS (the models' scoring product) on one thread: the cores go to the workers.
    with _one_blas_thread():
        first = min(len(user_idx), chunk, _FIRST_CHUNK)
        width = rank(0, first, None).shape[1] if first else 0
        # Bounded memory: the (users x items) scores of one chunk stay near _CHUNK_FLOATS.
        step = max(1, min(chunk, _CHUNK_FLOATS // max(width, 1)))
        starts = list(range(first, len(user_idx), step))
        workers = min(torch.get_num_threads() if workers is None else workers, len(starts))
        if workers <= 1:
            buffer = torch.empty(step, width) if starts else None
            for start in starts:
                rank(start, start + step, buffer)
            return out_items, out_scores
        local = threading.local()

        def work(start: int) -> int:
            if not hasattr(local, "buffer"):
                torch.set_num_threads(1)  # per thread: OpenMP keeps its thread count per thread
                local.buffer = torch.empty(step, width)
            return len(rank(start, start + step, local.buffer))

        threads = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(workers) as pool:
                for done in pool.map(work, starts):
                    if progress:
                        progress(done)
        finally:
            torch.set_num_threads(threads)
    return out_items, out_scores


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """numpy's BLAS on one thread for the block, when called from the main thread (a command).

    Its thread count is one setting for the whole process, so only the main thread sets it:
    a server's request threads each restoring the count they found would leave one thread
    behind for good when they overlap (threadpoolctl from 3.6 ignores every thread but the
    first to set it, for the same reason).
    """
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return _blas().limit(limits=1, user_api="blas")


@functools.cache
def _blas() -> ThreadpoolController:
    """The thread pools of the libraries loaded now, numpy's BLAS among them: found once, as
    each ``threadpool_limits`` call would search them again (2.3 ms, against 0.05 ms)."""
    return ThreadpoolController()


def _mask(scores: torch.Tensor, users: torch.Tensor, seen: SeenItems | None) -> None:
    """Set the padding item and each user's ``seen`` items to -inf in ``scores`` (B, n) in place."""
    scores[:, 0] = float("-inf")
    known = users < (seen.n_users if seen is not None else 0)
    if seen is not None and bool(known.all()):
        seen.mask_(scores, users)  # in place: no copy of the chunk (--all: every user)
    elif seen is not None and known.any():
        rows = known.nonzero().squeeze(1)
        sub = scores[rows]
        seen.mask_(sub, users[rows])
        scores[rows] = sub


#: Rows at least this wide take the two-stage top-k of :func:`block_topk`.
BLOCK_TOPK_MIN_ITEMS = 8192
#: Items per block there: 64 measured fastest against 32 and 128 (302 x 110,942 scores).
_BLOCK = 64


def block_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest of each row of ``scores`` (B, n) float32, best first: values (B, k)
    float32 and column indices (B, k) int64, as ``torch.topk(scores, k, dim=1)``.

    On rows of at least :data:`BLOCK_TOPK_MIN_ITEMS` it takes each block of 64 columns' maximum
    (one pass at memory speed), then the top ``k`` of just the ``k`` blocks with the largest
    maxima, plus the columns past the last whole block: the ``k`` best values lie in those
    blocks, since each block holding one of them has a maximum at least the ``k``-th best.
    torch's ``topk`` over every column took 2.6x as long (302 rows of 110,942 scores). Among
    equal scores either may pick any; the values are always the same.

    >>> s = torch.arange(20000.0).repeat(2, 1)
    >>> s[1, 5] = 1e9
    >>> v, i = block_topk(s, 3)
    >>> i.tolist()
    [[19999, 19998, 19997], [5, 19999, 19998]]
    """
    b, n = scores.shape
    # The candidates (k blocks) must be a small part of the row for the two stages to pay.
    if n < BLOCK_TOPK_MIN_ITEMS or k * _BLOCK * 4 > n:
        return torch.topk(scores, k, dim=1)
    whole = n // _BLOCK * _BLOCK
    blocks = scores[:, :whole].reshape(b, whole // _BLOCK, _BLOCK)  # a view: no copy
    best_blocks = torch.topk(blocks.amax(dim=2), k, dim=1).indices  # (B, k)
    cand = (best_blocks.unsqueeze(2) * _BLOCK + torch.arange(_BLOCK)).reshape(b, k * _BLOCK)
    if whole < n:
        cand = torch.cat([cand, torch.arange(whole, n).expand(b, n - whole)], dim=1)
    vals, at = torch.topk(torch.gather(scores, 1, cand), k, dim=1)
    return vals, torch.gather(cand, 1, at)


def model_scorer(model: Recommender, context: Context | None) -> ScoreFn:
    """A ScoreFn over ``model``; sequential models read each user's events from ``context``."""
    score_into = model.score
    if not _takes_out(getattr(model.score, "__func__", model.score)):
        # A plugin written before ``out`` existed: its score(query) may return a view (an
        # expanded bias row), so it is copied, as every model's scores once were.
        def score_into(query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
            scores = model.score(query)
            return scores.clone() if out is None else out.copy_(scores)

    if not model.CONTEXT:
        return lambda users, out=None: score_into({"user": users}, out=out)
    if context is None:
        raise ValueError(f"model {model.name} needs each user's recent events, and none are stored")

    def score(users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        items, types = context.padded(users)
        query = {"user": users, "seq_item": items, "seq_type": types}
        if model.reads_times:
            query["seq_ts"] = context.padded_times(users, items.shape[1])
        return score_into(query, out=out)

    return score


@functools.lru_cache(maxsize=64)
def _takes_out(score: Callable[..., Any]) -> bool:
    """Whether a model's score function takes ``out`` (asked once per class: ``inspect`` took
    a tenth of a one-user request)."""
    return "out" in inspect.signature(score).parameters


def popularity_scorer(item_pop: torch.Tensor) -> ScoreFn:
    """A ScoreFn that gives every user the same popularity scores."""

    def score(users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        row = item_pop[None, :].expand(len(users), -1)
        return row.clone() if out is None else out.copy_(row)

    return score


def adjusted_scorer(
    base: ScoreFn | None, prior: torch.Tensor, weight: float, blocked: torch.Tensor | None = None
) -> ScoreFn:
    """``base(users) + weight * prior`` (``prior`` alone when ``base`` is None), with the items
    of ``blocked`` at -inf.

    ``prior`` (n_items,) float, e.g. log(1 + decayed popularity): a logit adjustment (Menon et
    al., ICLR 2021) that tilts a softmax model towards what is consumed now; ``blocked``
    (n_items,) bool, e.g. expired items.

    >>> f = adjusted_scorer(lambda u, out=None: torch.zeros(len(u), 3), torch.tensor([0., 1., 2.]), 0.5,
    ...     torch.tensor([False, False, True]))
    >>> f(torch.tensor([1])).tolist()
    [[0.0, 0.5, -inf]]
    """
    if base is None and blocked is None:
        return popularity_scorer(prior * weight)

    def score(users: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if base is None:
            s = popularity_scorer(prior * weight)(users, out=out)
        else:
            s = base(users, out=out)
            if weight:
                s.add_(prior[: s.shape[1]], alpha=weight)
        if blocked is not None:
            s[:, blocked[: s.shape[1]]] = float("-inf")
        return s

    return score


def ranked_unseen(order: np.ndarray, seen: SeenItems, user_idx: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` items of one shared ranking that each user has not seen, vectorised.

    ``order`` (n,) item indices best first (ties already broken, e.g. by a stable sort: the
    popularity baselines keep the tie order they were measured with); ``user_idx`` (U,) rows of
    ``seen``. Returns (U, k) int64 item indices, 0 where fewer than ``k`` remain.

    >>> seen = SeenItems.empty(3).merge(np.array([1]), np.array([5]), n_users=3)
    >>> ranked_unseen(np.array([5, 2, 7]), seen, np.array([1, 2]), k=2).tolist()
    [[2, 7], [5, 2]]
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    out = np.zeros((len(user_idx), k), dtype=np.int64)
    lengths = np.diff(seen.indptr.numpy())
    for lo in range(0, len(user_idx), CHUNK):
        users = user_idx[lo : lo + CHUNK]
        # A user can lose at most their seen count from the head of the ranking.
        width = min(len(order), k + int(lengths[np.minimum(users, seen.n_users - 1)].max(initial=0)))
        cand = order[:width]
        fresh = ~seen.contains(np.repeat(users, width), np.tile(cand, len(users))).reshape(len(users), width)
        rank = np.cumsum(fresh, axis=1)
        row, col = np.nonzero(fresh & (rank <= k))
        out[lo + row, rank[row, col] - 1] = cand[col]
    return out
