"""Splitting events into train and test: each user's last events, or by time."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from recinc_cli.data.split import split_at, split_last

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def frame(users: list[str], minutes: list[int] | None = None) -> pl.DataFrame:
    """Time-sorted events; ``item_id`` is the row number, so rows can be told apart."""
    minutes = minutes if minutes is not None else list(range(len(users)))
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": [f"i{k}" for k in range(len(users))],
            "timestamp": [T0 + dt.timedelta(minutes=m) for m in minutes],
        },
        schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Datetime("ms", "UTC")},
    )


def test_split_last_by_example() -> None:
    ev = frame(["a", "b", "a", "c", "a", "b"])
    train, test = split_last(ev, 1)
    assert test["item_id"].to_list() == ["i4", "i5"]  # c has a single event: nothing predicts it
    assert train["item_id"].to_list() == ["i0", "i1", "i2", "i3"]
    assert train.columns == test.columns == ev.columns
    train, test = split_last(ev, 2)
    assert test["item_id"].to_list() == ["i2", "i4"] and train["item_id"].to_list() == ["i0", "i1", "i3", "i5"]
    train, test = split_last(ev, 1, min_left=0)
    assert test["item_id"].to_list() == ["i3", "i4", "i5"]


@given(st.lists(st.sampled_from("abcd"), max_size=25), st.integers(1, 3), st.integers(0, 3))
def test_split_last_holds_out_each_users_last_n_of_those_with_enough(users: list[str], n: int, min_left: int) -> None:
    ev = frame(users)
    train, test = split_last(ev, n, min_left)
    counts = {u: users.count(u) for u in users}
    seen: dict[str, int] = {}
    expected_test = []
    for k, u in enumerate(users):
        seen[u] = seen.get(u, 0) + 1
        if counts[u] >= n + min_left and counts[u] - seen[u] < n:
            expected_test.append(f"i{k}")
    assert test["item_id"].to_list() == expected_test
    assert train["item_id"].to_list() == [f"i{k}" for k in range(len(users)) if f"i{k}" not in expected_test]


def test_split_at_puts_the_cut_time_in_test() -> None:
    ev = frame(["a", "b", "a", "c"], [0, 10, 10, 20])
    before, after = split_at(ev, T0 + dt.timedelta(minutes=10))
    assert before["item_id"].to_list() == ["i0"] and after["item_id"].to_list() == ["i1", "i2", "i3"]
    before, after = split_at(ev, T0 + dt.timedelta(minutes=30))
    assert (before.height, after.height) == (4, 0)
    before, after = split_at(ev, T0 - dt.timedelta(minutes=1))
    assert (before.height, after.height) == (0, 4)
