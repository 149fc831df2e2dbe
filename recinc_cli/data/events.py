"""Training data as dense index arrays, built from an events DataFrame and the vocabularies.

>>> import datetime as dt
>>> from recinc_cli.data.vocab import Vocab
>>> ev = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"],
...     "timestamp": [dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2)], "weight": [1.0, 3.0]})
>>> users, items = Vocab.empty(), Vocab.empty()
>>> _ = users.extend(ev["user_id"]); _ = items.extend(ev["item_id"])
>>> d = TrainData.from_events(ev, users, items)
>>> d.user_idx.tolist(), d.item_idx.tolist(), d.weight.tolist()
([1, 2], [1, 1], [1.0, 3.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recinc_cli.data.vocab import Vocab


@dataclass(frozen=True)
class TrainData:
    """Events as parallel arrays, sorted by time, all of shape ``(n_events,)``.

    ``user_idx``/``item_idx`` int64 dense indices (never 0: unknown ids are added to the
    vocabularies before this is built); ``weight`` float32 event weights; ``ts_ms`` int64
    unix milliseconds; ``type_idx`` int64 event-type indices (all 0 when not given).
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    weight: np.ndarray
    ts_ms: np.ndarray
    type_idx: np.ndarray | None = None

    def types(self) -> np.ndarray:
        """``type_idx``, or zeros when the data has no event types."""
        return self.type_idx if self.type_idx is not None else np.zeros(len(self), np.int64)

    def __len__(self) -> int:
        return len(self.user_idx)

    @classmethod
    def of_pairs(cls, users: list[int], items: list[int]) -> TrainData:
        """Events (user index, item index) of weight 1, one per millisecond in the order given:
        the small data of examples and tests.

        >>> TrainData.of_pairs([1, 2], [3, 3]).ts_ms.tolist()
        [0, 1]
        """
        n = len(users)
        return cls(np.asarray(users, np.int64), np.asarray(items, np.int64), np.ones(n, np.float32), np.arange(n))

    @classmethod
    def from_events(cls, events: pl.DataFrame, users: Vocab, items: Vocab, types: Vocab | None = None) -> TrainData:
        """Map raw ids to indices; ``events`` must already be sorted by time."""
        return cls(
            user_idx=users.lookup(events["user_id"]),
            item_idx=items.lookup(events["item_id"]),
            weight=events["weight"].cast(pl.Float32).to_numpy(),
            ts_ms=events["timestamp"].dt.epoch("ms").to_numpy().astype(np.int64, copy=False),
            type_idx=types.lookup(events["event_type"]) if types is not None else None,
        )

    def subset(self, mask: np.ndarray) -> TrainData:
        """The events where ``mask`` (n,) bool is true, in the same order."""
        return TrainData(
            self.user_idx[mask],
            self.item_idx[mask],
            self.weight[mask],
            self.ts_ms[mask],
            None if self.type_idx is None else self.type_idx[mask],
        )

    def concat(self, other: TrainData | None) -> TrainData:
        """These events followed by ``other``'s (event types kept when both have them)."""
        if other is None or len(other) == 0:
            return self
        types = (
            None if self.type_idx is None or other.type_idx is None else np.concatenate([self.type_idx, other.type_idx])
        )
        return TrainData(
            np.concatenate([self.user_idx, other.user_idx]),
            np.concatenate([self.item_idx, other.item_idx]),
            np.concatenate([self.weight, other.weight]),
            np.concatenate([self.ts_ms, other.ts_ms]),
            types,
        )

    def decayed(self, now_ms: int, half_life_s: float) -> TrainData:
        """The events with weight x 2^(-(now - t) / half_life); unchanged when half_life is 0.

        >>> d = TrainData(np.array([1]), np.array([1]), np.ones(1, np.float32), np.array([0]))
        >>> d.decayed(2000, half_life_s=1.0).weight.tolist()
        [0.25]
        """
        if half_life_s <= 0 or len(self) == 0:
            return self
        age_s = np.maximum(now_ms - self.ts_ms, 0).astype(np.float64) / 1000.0
        weight = (self.weight * np.exp2(-age_s / half_life_s)).astype(np.float32)
        return TrainData(self.user_idx, self.item_idx, weight, self.ts_ms, self.type_idx)
