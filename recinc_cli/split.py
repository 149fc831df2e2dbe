"""Splitting an events table into train and test parts: per user (leave-last-out) or by time.

>>> import datetime as dt
>>> ev = pl.DataFrame({"user_id": ["a", "b", "a", "a"], "item_id": ["x", "y", "z", "w"],
...     "timestamp": [dt.datetime(2026, 1, d) for d in (1, 2, 3, 4)]})
>>> train, test = split_last(ev, 1)
>>> test["item_id"].to_list(), train["item_id"].to_list()
(['w'], ['x', 'y', 'z'])
>>> split_at(ev, dt.datetime(2026, 1, 3))[1]["item_id"].to_list()
['z', 'w']
"""

from __future__ import annotations

import datetime as dt

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
