"""Time-decayed item popularity: the cold-start fallback and the evaluation baseline.

pop_i(T) = sum over events e of item i of  w_e * 2^(-(T - t_e) / half_life),
kept incrementally: moving the clock from T0 to T multiplies the old vector by
2^(-(T - T0) / half_life) before the new events are added, so no old log is re-read.

>>> pop, t = decayed_popularity(torch.zeros(3), 0, np.array([1, 2, 2]),
...     np.ones(3, np.float32), np.array([0, 0, 1000]), n_items=3, half_life_s=1.0)
>>> [round(x, 3) for x in pop.tolist()], t
([0.0, 0.5, 1.5], 1000)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PopClock:
    """The clock a popularity vector runs on, from ``start``: an event clock (``events``: the
    k-th event folded after ``start`` happens at ``start + k``, so age counts events) or unix
    milliseconds (event times). ``half_life`` is in the clock's own units (events or ms).

    >>> PopClock(start=10, half_life=5.0, events=True).times(np.array([0, 99, 7])).tolist()
    [11, 12, 13]
    """

    start: int
    half_life: float
    events: bool

    def times(self, ts_ms: np.ndarray) -> np.ndarray:
        """(n,) int64 clock reading of each of n time-ordered events with times ``ts_ms``."""
        if self.events:
            return self.start + np.arange(1, len(ts_ms) + 1, dtype=np.int64)
        return ts_ms

    def fold(
        self, prev: torch.Tensor, item_idx: np.ndarray, weight: np.ndarray, ts_ms: np.ndarray, n_items: int
    ) -> tuple[torch.Tensor, PopClock]:
        """:func:`decayed_popularity` of ``prev`` (read at ``start``) with the events added, and
        the clock after them."""
        pop, now = decayed_popularity(
            prev, self.start, item_idx, weight, self.times(ts_ms), n_items, self.half_life / 1000.0
        )
        return pop, PopClock(now, self.half_life, self.events)


def decayed_popularity(
    prev: torch.Tensor,
    prev_time_ms: int,
    item_idx: np.ndarray,
    weight: np.ndarray,
    ts_ms: np.ndarray,
    n_items: int,
    half_life_s: float,
) -> tuple[torch.Tensor, int]:
    """Fold events into the decayed popularity vector.

    Parameters
    ----------
    prev: (n_prev,) float32, popularity at ``prev_time_ms``; padded with zeros to ``n_items``.
    item_idx, weight, ts_ms: (n_events,) arrays of the new events.

    Returns
    -------
    (n_items,) float32 popularity at the new clock, and that clock (max event time seen, ms).
    """
    now = int(max(prev_time_ms, int(ts_ms.max(initial=prev_time_ms))))
    hl_ms = half_life_s * 1000.0
    out = np.zeros(n_items, dtype=np.float64)
    out[: len(prev)] = prev.double().numpy() * 2.0 ** (-(now - prev_time_ms) / hl_ms)
    decay = weight.astype(np.float64) * 2.0 ** (-(now - ts_ms.astype(np.float64)) / hl_ms)
    out += np.bincount(item_idx, weights=decay, minlength=n_items)[:n_items]
    return torch.from_numpy(out.astype(np.float32)), now
