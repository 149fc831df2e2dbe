"""Each user's newest events (Context) and the training windows built from them, checked
against plain-Python references on generated data."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.sequences import build_windows, length_batches

Event = tuple[int, int, int, int]  # user, item, type, ts_ms


@st.composite
def extend_calls(draw: st.DrawFn) -> tuple[int, list[tuple[int, list[Event]]]]:
    """``max_len`` and a list of (n_users, events) calls with growing ``n_users`` and time."""
    max_len = draw(st.integers(1, 5))
    n_users = draw(st.integers(0, 3))
    calls, clock = [], 0
    for _ in range(draw(st.integers(1, 4))):
        n_users += draw(st.integers(0, 3))
        evs = []
        if n_users:
            for user, item, etype in draw(
                st.lists(st.tuples(st.integers(0, n_users - 1), st.integers(1, 40), st.integers(0, 4)), max_size=15)
            ):
                clock += draw(st.integers(0, 2))  # ties in time happen
                evs.append((user, item, etype, clock))
        calls.append((n_users, evs))
    return max_len, calls


def apply(ctx: Context, n_users: int, evs: list[Event], max_len: int) -> Context:
    cols = [np.array([e[k] for e in evs], dtype=np.int64) for k in range(4)]
    return ctx.extend(*cols, n_users=n_users, max_len=max_len)


def reference(calls: list[tuple[int, list[Event]]], max_len: int) -> dict[int, list[Event]]:
    rows: dict[int, list[Event]] = {}
    for _, evs in calls:
        for e in evs:
            rows[e[0]] = [*rows.get(e[0], []), e][-max_len:]
    return rows


def row(ctx: Context, user: int) -> list[Event]:
    lo, hi = int(ctx.indptr[user]), int(ctx.indptr[user + 1])
    return [
        (user, int(i), int(t), int(ts))
        for i, t, ts in zip(ctx.items[lo:hi], ctx.types[lo:hi], ctx.ts_ms[lo:hi], strict=True)
    ]


@given(extend_calls())
def test_extend_keeps_each_users_newest_max_len_events(case: tuple[int, list[tuple[int, list[Event]]]]) -> None:
    max_len, calls = case
    ctx = Context.empty(0)
    for k, (n_users, evs) in enumerate(calls):
        before = [t.clone() for t in (ctx.indptr, ctx.items, ctx.types, ctx.ts_ms)]
        new = apply(ctx, n_users, evs, max_len)
        # extend returns a new store; the old one is left as it was
        assert all(
            torch.equal(a, b) for a, b in zip(before, (ctx.indptr, ctx.items, ctx.types, ctx.ts_ms), strict=True)
        )
        ctx = new
        expected = reference(calls[: k + 1], max_len)
        assert ctx.n_users == n_users
        assert (ctx.indptr.dtype, ctx.items.dtype, ctx.types.dtype, ctx.ts_ms.dtype) == (
            torch.int64,
            torch.int32,
            torch.int16,
            torch.int64,
        )
        assert int(ctx.indptr[0]) == 0 and int(ctx.indptr[-1]) == len(ctx.items) == len(ctx.ts_ms)
        for u in range(n_users):
            assert row(ctx, u) == expected.get(u, []), u
            assert ctx.items_of(u).tolist() == [e[1] for e in expected.get(u, [])]
        assert ctx.lengths().tolist() == [len(expected.get(u, [])) for u in range(n_users)]


@given(extend_calls(), st.lists(st.integers(0, 12), max_size=8), st.one_of(st.none(), st.integers(0, 7)))
def test_padded_rows_are_the_newest_events_left_padded(
    case: tuple[int, list[tuple[int, list[Event]]]], users: list[int], width: int | None
) -> None:
    max_len, calls = case
    ctx = Context.empty(1)  # a store of 0 users fails: test_padded_on_a_store_without_users
    for n_users, evs in calls:
        ctx = apply(ctx, max(n_users, 1), evs, max_len)
    expected = reference(calls, max_len)  # users beyond the store have no events
    items, types = ctx.padded(torch.tensor(users, dtype=torch.int64), width)
    w = max((len(expected.get(u, [])) for u in users), default=0) if width is None else width
    assert items.shape == types.shape == (len(users), w)
    assert items.dtype == types.dtype == torch.int64
    for b, u in enumerate(users):
        evs = expected.get(u, [])[-w:] if w else []
        pad = [0] * (w - len(evs))
        assert items[b].tolist() == pad + [e[1] for e in evs]
        assert types[b].tolist() == pad + [e[2] for e in evs]


def test_padded_on_a_store_without_users() -> None:
    items, types = Context.empty(0).padded(torch.tensor([0, 3]))
    assert items.shape == types.shape == (2, 0)


# --- training windows ----------------------------------------------------------------------------


@st.composite
def prior_and_data(draw: st.DrawFn) -> tuple[Context, dict[int, list[tuple[int, int]]], TrainData, int]:
    """A stored context and new events; every event has its own item, so a target names its event.

    Returns the context, each user's stored (item, type) pairs, the new events and ``max_len``.
    """
    max_len = draw(st.integers(1, 6))
    n_users = draw(st.integers(2, 6))
    n_prior = draw(st.integers(0, 20))
    prior_users = draw(st.lists(st.integers(1, n_users - 1), min_size=n_prior, max_size=n_prior))
    prior_types = draw(st.lists(st.integers(1, 3), min_size=n_prior, max_size=n_prior))
    stored_len = draw(st.integers(1, 8))  # the store may keep more or fewer events than a window
    ctx = Context.empty(n_users).extend(
        np.array(prior_users, dtype=np.int64),
        np.arange(1, n_prior + 1),
        np.array(prior_types, dtype=np.int64),
        np.arange(n_prior),
        n_users,
        stored_len,
    )
    stored = {
        u: list(zip(ctx.items_of(u).tolist(), ctx.types[ctx.indptr[u] : ctx.indptr[u + 1]].tolist(), strict=True))
        for u in range(n_users)
    }
    n_new = draw(st.integers(0, 25))
    # New events may come from users beyond the store (new users of this slice).
    users = np.array(draw(st.lists(st.integers(1, n_users + 2), min_size=n_new, max_size=n_new)), dtype=np.int64)
    types = np.array(draw(st.lists(st.integers(1, 3), min_size=n_new, max_size=n_new)), dtype=np.int64)
    data = TrainData(
        users,
        np.arange(1000, 1000 + n_new),
        (np.arange(n_new) + 1).astype(np.float32) / 4,
        np.arange(n_prior, n_prior + n_new),
        types,
    )
    return ctx, stored, data, max_len


@given(prior_and_data())
def test_windows_target_every_new_event_but_a_users_first_from_the_events_before_it(
    case: tuple[Context, dict[int, list[tuple[int, int]]], TrainData, int],
) -> None:
    ctx, stored, data, max_len = case
    win = build_windows(ctx, data, max_len)
    n = len(win)
    assert win.items.shape == win.types.shape == win.targets.shape == win.weight.shape == (n, max_len)
    assert win.weight.dtype == torch.float32 and win.items.dtype == win.targets.dtype == torch.int64

    # Each user's whole sequence: stored events, then the new ones.
    seq: dict[int, list[tuple[int, int, float]]] = {u: [(i, t, 0.0) for i, t in evs] for u, evs in stored.items()}
    for u, i, t, w in zip(data.user_idx, data.item_idx, data.type_idx, data.weight, strict=True):  # type: ignore[arg-type]
        seq.setdefault(int(u), []).append((int(i), int(t), float(w)))
    position = {ev[0]: (u, k) for u, evs in seq.items() for k, ev in enumerate(evs)}
    first_ever = {int(u) for u in data.user_idx if not stored.get(int(u))}
    expected = {int(i) for i in data.item_idx} - {seq[u][0][0] for u in first_ever}

    targets = win.targets[win.targets > 0].tolist()
    assert sorted(targets) == sorted(expected)  # every new event but a user's first ever, once
    assert torch.equal(win.targets > 0, win.weight > 0)
    assert win.lengths.tolist() == (win.items > 0).sum(1).tolist()
    for r, c in (win.targets > 0).nonzero().tolist():
        u, t = position[int(win.targets[r, c])]
        assert float(win.weight[r, c]) == seq[u][t][2]
        # Inputs: the events right before the target, as many as the columns up to it hold.
        m = min(c + 1, t)
        assert win.items[r, : c + 1].tolist() == [0] * (c + 1 - m) + [e[0] for e in seq[u][t - m : t]]
        assert win.types[r, c + 1 - m : c + 1].tolist() == [e[1] for e in seq[u][t - m : t]]


@given(st.lists(st.integers(0, 6), max_size=30), st.integers(1, 12), st.integers(0, 3))
def test_length_batches_cover_every_window_once(lengths: list[int], tokens: int, seed: int) -> None:
    lens = torch.tensor(lengths, dtype=torch.int64)
    batches = length_batches(lens, tokens, torch.Generator().manual_seed(seed))
    got = torch.cat(batches).tolist() if batches else []
    assert sorted(got) == list(range(len(lengths)))
    for b in batches:
        assert len(b) > 0 and int(lens[b].clamp(min=1).sum()) <= tokens + 6  # about `tokens` events
    again = length_batches(lens, tokens, torch.Generator().manual_seed(seed))
    assert [b.tolist() for b in again] == [b.tolist() for b in batches]
