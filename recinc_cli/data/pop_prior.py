"""The popularity prior of training: each event's logits offset by the popularity of its time.

Serving adds ``pop_weight x log(1 + decayed popularity)`` to a model's scores (a logit
adjustment). Trained without it, the model spends its item biases and embeddings on how
popular items were over the whole training log: years of it for ``init``, which is not what
is consumed next week. Trained *with* it (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021), every event's softmax gets ``weight x log(1 + pop(t))`` added, with
pop(t) the decayed popularity just before that event; the model then learns what a user takes
beyond what was trending at the time, and serving adds today's trend back.

Popularity is taken at snapshots (at most :data:`MAX_SNAPSHOTS` per training call) on the
bundle's own popularity clock (:class:`~recinc_cli.data.popularity.PopClock`: events or wall time),
so a batch's offsets are a row gather.

>>> import numpy as np
>>> from recinc_cli.data.events import TrainData
>>> from recinc_cli.data.popularity import PopClock
>>> d = TrainData.of_pairs([1, 1, 2], [1, 1, 2])
>>> p = PopPrior.of(torch.zeros(3), PopClock(0, 1e9, events=True), d, weight=1.0, n_items=3, max_snapshots=3)
>>> p.snap.tolist(), [round(x, 3) for x in p.log_pop[2].tolist()]
([0, 1, 2], [0.0, 1.099, 0.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recinc_cli.data.events import TrainData
from recinc_cli.data.popularity import PopClock

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
        clock: PopClock,
        data: TrainData,
        weight: float,
        n_items: int,
        max_snapshots: int = MAX_SNAPSHOTS,
    ) -> PopPrior:
        """The prior of ``data`` (time-ordered) given the popularity ``start_pop`` read at
        ``clock`` (the bundle's :meth:`~recinc_cli.store.format.Bundle.popularity_clock`)."""
        n = len(data)
        chunk = max(1, math.ceil(n / max_snapshots))
        pop = torch.zeros(n_items)
        pop[: len(start_pop)] = start_pop
        snaps = []
        for lo in range(0, max(n, 1), chunk):
            if lo:  # fold in the chunk before this snapshot
                part = slice(lo - chunk, lo)
                pop, clock = clock.fold(pop, data.item_idx[part], data.weight[part], data.ts_ms[part], n_items)
            snaps.append(torch.log1p(pop))
        return cls(np.arange(n, dtype=np.int64) // chunk, weight * torch.stack(snaps))

    def extended(self, n_more: int) -> PopPrior:
        """The same prior for ``n_more`` further events (replayed past ones) read at the first
        snapshot: their own time's popularity is not kept, and the slice's start is nearest."""
        return PopPrior(np.concatenate([self.snap, np.zeros(n_more, np.int64)]), self.log_pop)


class PriorSource:
    """What a trainer's model calls for the prior of the data it is given: ``source(data)``.

    Built before a fit from the bundle's popularity and its clock at that moment; the last
    result is cached, since every epoch passes the same data.
    """

    def __init__(self, start_pop: torch.Tensor, clock: PopClock, weight: float, n_items: int) -> None:
        self.start_pop = start_pop.clone()
        self.clock = clock
        self.weight = weight
        self.n_items = n_items
        self._last: tuple[TrainData, PopPrior] | None = None

    def __call__(self, data: TrainData) -> PopPrior:
        if self._last is None or self._last[0] is not data:
            prior = PopPrior.of(self.start_pop, self.clock, data, self.weight, self.n_items)
            self._last = (data, prior)
        return self._last[1]
