"""Serving from fresh events (``recommend --history``): context and seen items extended in memory."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import torch

from recinc_cli.data.context import Context
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.serving.history import with_history

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
MS0 = int(T0.timestamp() * 1000)
USERS = Vocab(["", "u1", "u2"])
ITEMS = Vocab(["", "a", "b", "c", "d", "e"])
TYPES = Vocab(["", "view", "cart"])


def stored() -> tuple[Context, SeenItems]:
    """u1 has events at t = 0 and 10 ms (items a, b); u2 has none."""
    ctx = Context.empty(3).extend(
        np.array([1, 1]), np.array([1, 2]), np.array([1, 2]), MS0 + np.array([0, 10]), n_users=3, max_len=3
    )
    return ctx, SeenItems.empty(3).merge(np.array([1, 1]), np.array([1, 2]), n_users=3)


def fresh(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    """Events (user, item, event type, ms after T0), time-sorted."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": [T0 + dt.timedelta(milliseconds=r[3]) for r in rows],
            "weight": [1.0] * len(rows),
        },
        schema_overrides={"timestamp": pl.Datetime("ms", "UTC")},
    )


EVENTS = fresh(
    [
        ("n1", "c", "view", -5),  # a new user: every event counts, whatever its time
        ("u1", "a", "view", 5),  # older than u1's stored context: already there
        ("u1", "b", "cart", 10),  # as old as u1's newest stored event: already there
        ("u2", "d", "view", 11),  # u2 has no stored events: counts
        ("n2", "zzz", "view", 12),  # an item unknown to the model: dropped
        ("u1", "c", "cart", 20),  # newer: counts
        ("n1", "e", "cart", 21),
        ("n2", "d", "view", 22),
        ("u1", "d", "view", 30),
        ("u1", "e", "view", 40),  # pushes u1's oldest stored event out (max_len 3)
    ]
)


def rows(ctx: Context, user: int) -> list[tuple[int, int, int]]:
    """(item, type, ms after T0) of each stored event of ``user``."""
    lo, hi = int(ctx.indptr[user]), int(ctx.indptr[user + 1])
    return [
        (int(i), int(t), int(ts) - MS0)
        for i, t, ts in zip(ctx.items[lo:hi], ctx.types[lo:hi], ctx.ts_ms[lo:hi], strict=True)
    ]


def test_known_users_get_newer_events_and_unknown_users_temporary_indices() -> None:
    ctx, seen = stored()
    ctx_before = [t.clone() for t in (ctx.indptr, ctx.items, ctx.types, ctx.ts_ms)]
    s = with_history(EVENTS, USERS, ITEMS, TYPES, seen, ctx, max_len=3)

    assert (s.n_known, s.extra_ids) == (3, ["n1", "n2"])  # in order of first appearance
    assert s.lookup(USERS, pl.Series(["u2", "n2", "ghost", "n1", "u1"])).tolist() == [2, 4, 0, 3, 1]
    assert s.context is not None and s.context.n_users == 5 and s.seen.n_users == 5
    assert rows(s.context, 1) == [(3, 2, 20), (4, 1, 30), (5, 1, 40)]
    assert rows(s.context, 2) == [(4, 1, 11)]
    assert rows(s.context, 3) == [(3, 1, -5), (5, 2, 21)]
    assert rows(s.context, 4) == [(4, 1, 22)]  # zzz dropped
    assert s.seen.items_of(1).tolist() == [1, 2, 3, 4, 5]
    assert [s.seen.items_of(u).tolist() for u in (2, 3, 4)] == [[4], [3, 5], [4]]
    # Nothing stored was modified: serving never writes back.
    assert all(
        torch.equal(a, b) for a, b in zip(ctx_before, (ctx.indptr, ctx.items, ctx.types, ctx.ts_ms), strict=True)
    )
    assert seen.n_users == 3 and seen.items_of(1).tolist() == [1, 2]
    assert (len(USERS), len(ITEMS)) == (3, 6)
    # With room for every event: u1's stored events, then only the newer fresh ones.
    s = with_history(EVENTS, USERS, ITEMS, TYPES, seen, ctx, max_len=5)
    assert s.context is not None
    assert rows(s.context, 1) == [(1, 1, 0), (2, 2, 10), (3, 2, 20), (4, 1, 30), (5, 1, 40)]


def test_overlapping_history_does_not_repeat_stored_events() -> None:
    ctx, seen = stored()
    s = with_history(fresh([("u1", "a", "view", 0), ("u1", "b", "cart", 10)]), USERS, ITEMS, TYPES, seen, ctx, 3)
    assert s.extra_ids == [] and s.context is not None
    assert rows(s.context, 1) == [(1, 1, 0), (2, 2, 10)]


def test_models_without_context_only_extend_seen_items() -> None:
    _, seen = stored()
    s = with_history(EVENTS, USERS, ITEMS, TYPES, seen, None, max_len=3)
    assert s.context is None and s.extra_ids == ["n1", "n2"]
    assert s.seen.items_of(1).tolist() == [1, 2, 3, 4, 5]
    assert [s.seen.items_of(u).tolist() for u in (2, 3, 4)] == [[4], [3, 5], [4]]


def test_a_new_event_as_old_as_the_newest_stored_one_still_counts() -> None:
    ctx, seen = stored()  # u1's newest stored event: item b at 10 ms
    s = with_history(fresh([("u1", "c", "view", 10)]), USERS, ITEMS, TYPES, seen, ctx, max_len=3)
    assert s.context is not None
    assert s.seen.items_of(1).tolist() == [1, 2, 3]
    assert rows(s.context, 1) == [(1, 1, 0), (2, 2, 10), (3, 1, 10)]
