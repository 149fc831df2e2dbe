"""The popularity prior of training: each event's logits offset by the popularity of its time.

Serving adds ``pop_weight x log(1 + decayed popularity)`` to a model's scores (a logit
adjustment). Trained without it, the model spends its item biases and embeddings on how
popular items were over the whole training log: years of it for ``init``, which is not what
is consumed next week. Trained *with* it (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021), every event's softmax gets ``weight x log(1 + pop(t))`` added, with
pop(t) the decayed popularity just before that event; the model then learns what a user takes
beyond what was trending at the time, and serving adds today's trend back.

Popularity is taken at snapshots (at most :data:`MAX_SNAPSHOTS` per training call) on the
same event clock as the bundle's popularity, so a batch's offsets are a row gather.

>>> import numpy as np
>>> from recinc_cli.data import TrainData
>>> d = TrainData(np.array([1, 1, 2]), np.array([1, 1, 2]), np.ones(3, np.float32), np.arange(3))
>>> p = PopPrior.of(torch.zeros(3), d, half_life_events=1e9, weight=1.0, n_items=3, max_snapshots=3)
>>> p.snap.tolist(), [round(x, 3) for x in p.log_pop[2].tolist()]
([0, 1, 2], [0.0, 1.099, 0.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recinc_cli.data import TrainData

#: Popularity snapshots per training call: offsets within a chunk of n / 64 events share one.
MAX_SNAPSHOTS = 64


@dataclass(frozen=True)
class PopPrior:
    """``snap`` (n_events,) int64: each event's snapshot; ``log_pop`` (n_snapshots, n_items)
    float32: ``weight x log(1 + popularity)`` before each snapshot's first event."""

    snap: np.ndarray
    log_pop: torch.Tensor

    @classmethod
    def of(
        cls,
        start_pop: torch.Tensor,
        data: TrainData,
        half_life_events: float,
        weight: float,
        n_items: int,
        max_snapshots: int = MAX_SNAPSHOTS,
    ) -> PopPrior:
        """The prior of ``data`` (time-ordered) given the popularity ``start_pop`` before it."""
        n = len(data)
        chunk = max(1, math.ceil(n / max_snapshots))
        pop = np.zeros(n_items, np.float64)
        pop[: len(start_pop)] = start_pop.double().numpy()
        snaps = []
        for lo in range(0, max(n, 1), chunk):
            snaps.append(np.log1p(pop))
            hi = min(n, lo + chunk)
            age = (hi - 1 - np.arange(lo, hi)).astype(np.float64)
            decayed = data.weight[lo:hi] * 2.0 ** (-age / half_life_events)
            pop = pop * 2.0 ** (-(hi - lo) / half_life_events)
            pop += np.bincount(data.item_idx[lo:hi], weights=decayed, minlength=n_items)[:n_items]
        log_pop = torch.from_numpy((weight * np.stack(snaps)).astype(np.float32))
        return cls(np.arange(n, dtype=np.int64) // chunk, log_pop)

    def extended(self, n_more: int) -> PopPrior:
        """The same prior for ``n_more`` further events (replayed past ones) read at the first
        snapshot: their own time's popularity is not kept, and the slice's start is nearest."""
        return PopPrior(np.concatenate([self.snap, np.zeros(n_more, np.int64)]), self.log_pop)


class PriorSource:
    """What a trainer's model calls for the prior of the data it is given: ``source(data)``.

    Built before a fit from the bundle's popularity at that moment; the last result is cached,
    since every epoch passes the same data.
    """

    def __init__(self, start_pop: torch.Tensor, half_life_events: float, weight: float, n_items: int) -> None:
        self.start_pop = start_pop.clone()
        self.half_life_events = half_life_events
        self.weight = weight
        self.n_items = n_items
        self._last: tuple[TrainData, PopPrior] | None = None

    def __call__(self, data: TrainData) -> PopPrior:
        if self._last is None or self._last[0] is not data:
            prior = PopPrior.of(self.start_pop, data, self.half_life_events, self.weight, self.n_items)
            self._last = (data, prior)
        return self._last[1]
