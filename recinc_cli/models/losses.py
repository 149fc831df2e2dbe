"""Softmax losses shared by the models: full catalogue, chunked, and sampled with log-Q correction.

>>> h, items = torch.randn(5, 4), torch.randn(9, 4)
>>> target = torch.tensor([1, 2, 3, 4, 8])
>>> full = full_softmax_ce(h, items, target)
>>> chunked = full_softmax_ce(h, items, target, max_logits=20)
>>> full.shape, bool(torch.allclose(full, chunked))
(torch.Size([5]), True)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

#: Largest (events x items) logit matrix built at once; above it the loss is computed in
#: chunks that are recomputed in the backward pass, so memory stays bounded.
MAX_LOGITS = 1 << 25


def _ce_chunk(
    h: torch.Tensor,
    item_vecs: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    # The padding row is never a candidate; adding -inf (not writing it in place) keeps autograd
    # happy, and cross_entropy's fused log-softmax is ~15% faster than logsumexp minus gather.
    mask = torch.zeros(item_vecs.shape[0], dtype=h.dtype, device=h.device)
    mask[0] = float("-inf")
    logits = torch.addmm(mask if bias is None else bias + mask, h, item_vecs.T)
    if offset is not None:
        logits = logits + offset
    return F.cross_entropy(logits, target, reduction="none")


def _chunked(
    fn: Callable[..., torch.Tensor], n_items: int, max_logits: int, *per_row: torch.Tensor | None
) -> torch.Tensor:
    """``fn(*per_row)`` over row chunks of at most ``max_logits`` logits each (``per_row``: tensors
    with one row per event, or None), every chunk recomputed in the backward pass, so only one
    chunk's logits are alive at a time."""
    rows = max(1, max_logits // max(n_items, 1))
    n = next(t for t in per_row if t is not None).shape[0]
    if n <= rows:
        return fn(*per_row)
    parts = [
        checkpoint(fn, *(None if t is None else t[s : s + rows] for t in per_row), use_reentrant=False)
        for s in range(0, n, rows)
    ]
    return torch.cat(parts)


def full_softmax_ce(
    h: torch.Tensor,
    item_vecs: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    max_logits: int = MAX_LOGITS,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-event cross-entropy over every item: ``(N, d)`` x ``(n_items, d)`` -> ``(N,)``.

    ``target`` (N,) int64 item indices; ``bias`` optional (n_items,) added to every logit;
    ``offset`` optional (N, n_items) added to each event's logits (a logit adjustment).
    """
    return _chunked(
        lambda hh, tt, oo: _ce_chunk(hh, item_vecs, bias, tt, oo), len(item_vecs), max_logits, h, target, offset
    )


def _multi_ce_chunk(
    h: torch.Tensor,
    item_vecs: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    mask = torch.zeros(item_vecs.shape[0], dtype=h.dtype, device=h.device)
    mask[0] = float("-inf")
    logits = torch.addmm(mask, h, item_vecs.T)
    if offset is not None:
        logits = logits + offset
    logp = torch.log_softmax(logits, dim=1).gather(1, targets.clamp(min=1))
    # Padding targets (0) have weight 0; clamping their index keeps -inf out of the product.
    return -(logp * weights).sum(1) / weights.sum(1).clamp(min=1e-12)


def full_softmax_multi_ce(
    h: torch.Tensor,
    item_vecs: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    max_logits: int = MAX_LOGITS,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean cross-entropy of several targets per event under one full softmax.

    ``h`` (N, d), ``item_vecs`` (n_items, d), ``targets`` (N, K) int64 (0 = none), ``weights``
    (N, K) float (0 where there is no target), ``offset`` optional (N, n_items) -> ``(N,)``.
    One softmax serves all K targets, so a future window costs a gather, not K losses.

    >>> h, items = torch.randn(3, 4), torch.randn(6, 4)
    >>> t = torch.tensor([[1, 0], [2, 3], [5, 0]])
    >>> w = (t > 0).float()
    >>> one = full_softmax_ce(h, items, t[:, 0])
    >>> multi = full_softmax_multi_ce(h, items, t, w)
    >>> bool(torch.allclose(one[[0, 2]], multi[[0, 2]]))
    True
    >>> bool(torch.allclose(multi, full_softmax_multi_ce(h, items, t, w, max_logits=6)))  # in chunks
    True
    """
    return _chunked(
        lambda hh, tt, ww, oo: _multi_ce_chunk(hh, item_vecs, tt, ww, oo),
        len(item_vecs),
        max_logits,
        h,
        targets,
        weights,
        offset,
    )


def sampled_softmax_ce(
    pos_logit: torch.Tensor,
    neg_logit: torch.Tensor,
    target: torch.Tensor,
    neg: torch.Tensor,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-event cross-entropy over the positive and ``M`` shared sampled negatives.

    ``pos_logit`` (N,), ``neg_logit`` (N, M), ``target`` (N,), ``neg`` (M,) item indices.
    ``log_q`` (n_items,): log of each item's expected count among the negatives; subtracting it
    from every logit (log-Q correction, Bengio & Senecal 2008) makes the sampled softmax an
    unbiased stand-in for the full one under a non-uniform proposal. ``None`` = uniform.
    A negative equal to the event's own target is masked out.
    """
    if log_q is not None:
        pos_logit = pos_logit - log_q[target]
        neg_logit = neg_logit - log_q[neg][None, :]
    neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], float("-inf"))
    return torch.logsumexp(torch.cat([pos_logit[:, None], neg_logit], dim=1), dim=1) - pos_logit
