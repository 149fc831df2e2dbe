"""A uniform reservoir sample of every event a lineage has trained on (Vitter's Algorithm R).

Each ``update`` mixes a few of these past events into its training data (``--replay-ratio``),
the data-side remedy for forgetting of IncCTR (Wang et al. 2020) and ADER (Mi et al. 2020),
then offers its own events to the reservoir. After n events have been offered, each of them is
in the reservoir with probability size / n, whatever slice it came in: old tastes stay
represented without keeping the old logs.

>>> r = Reservoir.empty(3)
>>> g = torch.Generator().manual_seed(0)
>>> r = r.add(np.array([1, 2, 3, 4, 5]), np.array([7, 8, 9, 7, 8]), np.zeros(5, np.int64),
...     np.ones(5, np.float32), np.arange(5), g)
>>> len(r), r.n_seen
(3, 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recinc_cli.data.events import TrainData

#: Checkpoint keys of the reservoir's arrays, in field order.
KEYS = ("replay_user", "replay_item", "replay_type", "replay_weight", "replay_ts_ms")


@dataclass(frozen=True)
class Reservoir:
    """Sampled events as parallel arrays (``(len,)`` each) plus the offer count.

    ``user``/``item`` int64 indices, ``type`` int64 event-type indices, ``weight`` float32,
    ``ts_ms`` int64; ``size`` is the capacity, ``n_seen`` how many events were offered.
    """

    user: np.ndarray
    item: np.ndarray
    type: np.ndarray
    weight: np.ndarray
    ts_ms: np.ndarray
    size: int
    n_seen: int

    @classmethod
    def empty(cls, size: int) -> Reservoir:
        z = np.zeros(0, np.int64)
        return cls(z, z, z, np.zeros(0, np.float32), z, size, 0)

    @classmethod
    def of(cls, arrays: Sequence[np.ndarray], size: int, n_seen: int) -> Reservoir:
        """A reservoir from its five arrays in field order (:meth:`arrays`)."""
        user, item, type_, weight, ts_ms = arrays
        return cls(user, item, type_, weight, ts_ms, size=size, n_seen=n_seen)

    def __len__(self) -> int:
        return len(self.user)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.user, self.item, self.type, self.weight, self.ts_ms)

    def add(
        self,
        user: np.ndarray,
        item: np.ndarray,
        type_: np.ndarray,
        weight: np.ndarray,
        ts_ms: np.ndarray,
        generator: torch.Generator,
    ) -> Reservoir:
        """A new reservoir with the events (parallel ``(m,)`` arrays, in time order) offered.

        Vectorised Algorithm R: the event offered as number t (0-based) fills slot t while the
        reservoir is not full, else replaces slot r ~ U{0..t} when r < size; when two events of
        one call land in the same slot the later one wins, exactly as the sequential loop.
        """
        m = len(user)
        new = (user, item, type_, weight, ts_ms)
        cols = [
            np.concatenate([old, np.asarray(n, old.dtype)])[: self.size]
            for old, n in zip(self.arrays(), new, strict=True)
        ]
        if self.size == 0 or m == 0:
            return Reservoir.of(cols, size=self.size, n_seen=self.n_seen + m)
        fill = min(max(self.size - len(self), 0), m)  # events that fill empty slots
        t = self.n_seen + np.arange(fill, m, dtype=np.float64)
        u = torch.rand(len(t), generator=generator, dtype=torch.float64).numpy()
        slot = np.floor(u * (t + 1)).astype(np.int64)  # uniform on 0..t
        keep = slot < self.size
        src, slot = np.arange(fill, m)[keep], slot[keep]
        # the last event per slot wins: reverse, take the first occurrence
        last = len(slot) - 1 - np.unique(slot[::-1], return_index=True)[1]
        src, slot = src[last], slot[last]
        for col, n in zip(cols, new, strict=True):
            col[slot] = np.asarray(n, col.dtype)[src]
        return Reservoir.of(cols, size=self.size, n_seen=self.n_seen + m)

    def add_data(self, data: TrainData, generator: torch.Generator) -> Reservoir:
        """:meth:`add` the events of ``data``."""
        return self.add(data.user_idx, data.item_idx, data.types(), data.weight, data.ts_ms, generator)

    def sample(self, n: int, generator: torch.Generator) -> TrainData:
        """Up to ``n`` distinct reservoir events, uniformly, as :class:`TrainData` in time order."""
        n = min(n, len(self))
        pick = torch.randperm(len(self), generator=generator)[:n].numpy()
        pick = pick[np.argsort(self.ts_ms[pick], kind="stable")]
        return TrainData(self.user[pick], self.item[pick], self.weight[pick], self.ts_ms[pick], self.type[pick])

    def resized(self, size: int, generator: torch.Generator) -> Reservoir:
        """The reservoir with a new capacity. Shrinking keeps a random subset, still uniform;
        growing fills the new slots with the next events offered (these are then over-represented
        until the reservoir has turned over)."""
        if size >= len(self):
            return Reservoir.of(self.arrays(), size=size, n_seen=self.n_seen)
        pick = np.sort(torch.randperm(len(self), generator=generator)[:size].numpy())
        return Reservoir.of([a[pick] for a in self.arrays()], size=size, n_seen=self.n_seen)
