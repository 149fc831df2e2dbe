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

import numpy as np
import torch


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
