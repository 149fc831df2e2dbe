"""Items like one item (``GET /similar``): by the model's item vectors where it has them, else
by who consumed both.

- ``embedding``: cosine of the model's item vectors (``mf``'s item embeddings, ``sasrec``'s
  item vectors): items the model places near each other.
- ``co-occurrence``: every other model (``ranker``, ``ease``, ``sknn``): cosine of the item
  columns of the user x item matrix of seen pairs, ``|U_i & U_j| / sqrt(|U_i| |U_j|)``: items
  the same users consumed.

Expired items and the item itself are never returned. Built once per served model and kept
(:class:`Similarity`), so a request costs one product or one gather.

>>> import torch
>>> from recinc_cli.data.seen import SeenItems
>>> seen = SeenItems(torch.tensor([0, 0, 2, 4, 5]), torch.tensor([1, 2, 1, 2, 3]))
>>> sim = Similarity.co_occurrence(seen, n_items=4)
>>> items, scores = sim.top(1, k=2)
>>> items.tolist(), [round(s, 3) for s in scores.tolist()]
([2], [1.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recinc_cli.data.seen import SeenItems
from recinc_cli.models.base import Recommender


@dataclass(frozen=True)
class Similarity:
    """Item-to-item similarity of one served model: unit item vectors ``vectors`` (n_items, d),
    or the item -> users CSR (``indptr`` (n_items + 1,), ``users``) with the seen matrix."""

    source: str
    vectors: torch.Tensor | None = None
    indptr: np.ndarray | None = None
    users: np.ndarray | None = None
    seen: SeenItems | None = None
    blocked: torch.Tensor | None = None

    @classmethod
    def of(cls, model: Recommender, seen: SeenItems, blocked: torch.Tensor | None = None) -> Similarity:
        """The model's own item vectors where it has them, else co-occurrence in ``seen``."""
        with torch.inference_mode():
            maker = getattr(model, "item_vectors", None)  # sasrec's, with its item features
            vectors = maker() if callable(maker) else getattr(model, "item_emb", None)
            if isinstance(vectors, torch.Tensor) and vectors.dim() == 2:
                unit = torch.nn.functional.normalize(vectors.detach().float(), dim=1)
                return cls("embedding", vectors=unit, blocked=blocked)
        return cls.co_occurrence(seen, model.n_items, blocked)

    @classmethod
    def co_occurrence(cls, seen: SeenItems, n_items: int, blocked: torch.Tensor | None = None) -> Similarity:
        users, items = seen.pairs()
        order = np.argsort(items, kind="stable")
        indptr = np.zeros(n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(items, minlength=n_items)[:n_items], out=indptr[1:])
        return cls("co-occurrence", indptr=indptr, users=users[order], seen=seen, blocked=blocked)

    def top(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most like ``item`` (an index > 0): indices (<= k,) int64 and scores
        (<= k,) float32, best first; fewer where fewer items share anything with it."""
        scores = self._scores(item)
        scores[0] = -np.inf
        scores[item] = -np.inf
        if self.blocked is not None:
            scores[self.blocked[: len(scores)].numpy()] = -np.inf
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        best = best[np.isfinite(scores[best]) & (scores[best] > (-1 if self.source == "embedding" else 0))]
        return best.astype(np.int64), scores[best].astype(np.float32)

    def _scores(self, item: int) -> np.ndarray:
        if self.vectors is not None:
            return (self.vectors @ self.vectors[item]).numpy().copy()
        assert self.indptr is not None and self.users is not None and self.seen is not None
        who = self.users[self.indptr[item] : self.indptr[item + 1]]
        n = len(self.indptr) - 1
        if not len(who):
            return np.full(n, -np.inf, dtype=np.float64)
        ip = self.seen.indptr.numpy()
        starts, ends = ip[who], ip[who + 1]
        lengths = ends - starts
        flat = np.repeat(ends - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        both = np.bincount(self.seen.indices.numpy()[flat], minlength=n)[:n].astype(np.float64)
        pop = np.diff(self.indptr).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(both > 0, both / np.sqrt(pop * pop[item]), -np.inf)
