"""Splitting an events table: into train and test parts per user (leave-last-out) or at a
time, or into time slices of about equal event counts.

>>> import datetime as dt
>>> ev = pl.DataFrame({"user_id": ["a", "b", "a", "a"], "item_id": ["x", "y", "z", "w"],
...     "timestamp": [dt.datetime(2026, 1, d) for d in (1, 2, 3, 4)]})
>>> train, test = split_last(ev, 1)
>>> test["item_id"].to_list(), train["item_id"].to_list()
(['w'], ['x', 'y', 'z'])
>>> split_at(ev, dt.datetime(2026, 1, 3))[1]["item_id"].to_list()
['z', 'w']
>>> [part["item_id"].to_list() for part in split_slices(ev, 2)]
[['x', 'y'], ['z', 'w']]
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import polars as pl


def split_last(events: pl.DataFrame, n: int = 1, min_left: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rest, each user's last ``n`` events) of time-sorted ``events``, both in the input order.

    Only users with more than ``n + min_left - 1`` events give any: at least ``min_left``
    of a user's events stay in the rest, so every held-out event has history to be predicted
    from (``min_left=0`` holds out the last ``n`` of every user).
    """
    from_end = pl.int_range(pl.len()).reverse().over("user_id")
    held = (from_end < n) & (pl.len().over("user_id") >= n + min_left)
    mask = events.select(held.alias("held"))["held"]
    return events.filter(~mask), events.filter(mask)


def split_at(events: pl.DataFrame, at: dt.datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events before ``at``, events at or after ``at``)."""
    after = events["timestamp"] >= at
    return events.filter(~after), events.filter(after)


def slice_bounds(times: np.ndarray, n: int) -> np.ndarray:
    """Row offsets ``[0, c_1, ..., c_{n-1}, len(times)]`` that cut the sorted ``times`` into ``n``
    non-empty runs of about equal length, never between two equal times.

    A cut can only fall where the time changes. Each goes to such an edge nearest its ideal
    offset ``k * len / n`` (the earlier one when two are as near), then as little further as
    it takes for every slice to keep at least one time. Raises ``ValueError`` when ``times``
    has fewer distinct values than ``n``.

    >>> slice_bounds(np.array([1, 2, 3, 4, 5, 6]), 3).tolist()
    [0, 2, 4, 6]
    >>> slice_bounds(np.array([1, 2, 2, 2, 3, 4]), 2).tolist()
    [0, 4, 6]
    >>> slice_bounds(np.array([1, 2, 2, 2, 2, 3]), 2).tolist()
    [0, 1, 6]
    >>> slice_bounds(np.array([1, 1, 1, 1, 2, 3]), 3).tolist()
    [0, 4, 5, 6]
    """
    rows = len(times)
    edges = np.flatnonzero(times[1:] != times[:-1]) + 1  # rows where a new time starts
    if len(edges) < n - 1:
        raise ValueError(f"{len(edges) + 1} distinct times cannot make {n} slices")
    ideal = np.arange(1, n) * rows / n
    right = np.clip(np.searchsorted(edges, ideal), 0, len(edges) - 1)
    left = np.maximum(right - 1, 0)
    pick = np.where(np.abs(edges[left] - ideal) <= np.abs(edges[right] - ideal), left, right)
    k = np.arange(n - 1)
    pick = np.clip(pick, k, len(edges) - (n - 1) + k)  # leave an edge for every other cut
    pick = np.maximum.accumulate(pick - k) + k  # strictly increasing: no slice left empty
    return np.concatenate([[0], edges[pick], [rows]]).astype(np.int64)


def split_slices(events: pl.DataFrame, n: int) -> list[pl.DataFrame]:
    """Time-sorted ``events`` cut into ``n`` consecutive non-empty slices (:func:`slice_bounds`):
    about equal event counts, all events of one timestamp in the same slice."""
    bounds = slice_bounds(events["timestamp"].dt.epoch("ms").to_numpy(), n)
    return [events[int(a) : int(b)] for a, b in itertools.pairwise(bounds)]
