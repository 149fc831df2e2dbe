"""The memory model ``sknn``: hand-computed neighbour and rule votes, its own session left out,
absorbing at once or slice by slice, growth, and the checkpoint round trip through ``init``.

The store of :func:`four_sessions` and the scores below are worked out by hand from the rules in
``recinc_cli/models/sknn.py``: the newest click weighs 1 and the one ``L`` clicks back ``1/L``;
a stored session's similarity is the summed weight of the items it shares; each item gets the
summed similarity of the neighbours holding it; items following the newest click get 1/steps per
occurrence (up to 3 steps); both parts are divided by their row maximum and added, plus 1e-3 x
(sessions holding the item / the most sessions any item is in).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from synthetic import write_events

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.errors import UsageError
from recinc_cli.models import build_model
from recinc_cli.models.base import TrainInput
from recinc_cli.models.sknn import SKNN
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.store.format import load_bundle, save_bundle
from recinc_cli.training.train import seeded_generator


def events(users: list[int], items: list[int]) -> TrainData:
    """Time-ordered events (in list order) with weight 1."""
    n = len(users)
    return TrainData(np.array(users), np.array(items), np.ones(n, np.float32), np.arange(n, dtype=np.int64))


def make(n_users: int, n_items: int, **changes: object) -> SKNN:
    m = build_model(ModelConfig(name="sknn", **changes), {"user": n_users, "item": n_items})  # type: ignore[arg-type]
    assert isinstance(m, SKNN)
    return m


def four_sessions(**changes: object) -> SKNN:
    """Sessions 1: [1, 2, 3], 2: [1, 2, 4], 3: [5, 6], 4: [2, 4] over items 1..6."""
    m = make(5, 7, **changes)
    m.absorb(events([1, 1, 1, 2, 2, 2, 3, 3, 4, 4], [1, 2, 3, 1, 2, 4, 5, 6, 2, 4]), Context.empty(5), 0)
    return m


def score(m: SKNN, users: list[int], sessions: list[list[int]]) -> torch.Tensor:
    return m.score({"user": torch.tensor(users), "seq_item": torch.tensor(sessions)})


#: 1e-3 x popularity among stored sessions: items 1..6 are in 2, 3, 1, 2, 1, 1 sessions (max 3).
POP = [0.0, 2e-3 / 3, 1e-3, 1e-3 / 3, 2e-3 / 3, 1e-3 / 3, 1e-3 / 3]


def test_store_holds_each_users_clicks_in_order() -> None:
    m = four_sessions()
    assert m.mem_indptr.tolist() == [0, 0, 3, 6, 8, 10]
    assert m.mem_items.tolist() == [1, 2, 3, 1, 2, 4, 5, 6, 2, 4]
    assert m.mem_indptr.dtype == m.mem_items.dtype == torch.int64
    assert m.tables() == {}


def test_neighbour_and_rule_votes_by_hand() -> None:
    m = four_sessions()
    s = score(m, [9], [[1, 2]])[0]
    # Weights: item 2 (newest) 1, item 1 0.5. Similarities: s1 1.5, s2 1.5, s4 1, s3 0.
    # Neighbour votes 1: 3, 2: 4, 3: 1.5, 4: 2.5 -> /4. Rules after 2: 3 (s1) 1, 4 (s2, s4) 2 -> /2.
    knn = [0, 3 / 4, 1, 1.5 / 4, 2.5 / 4, 0, 0]
    rule = [0, 0, 0, 0.5, 1, 0, 0]
    expected = torch.tensor([k + r + p for k, r, p in zip(knn, rule, POP, strict=True)])
    torch.testing.assert_close(s, expected, rtol=0, atol=1e-6)
    # The right next item is 4: both the neighbours and the rules point at it.
    assert s[1:].argsort(descending=True)[:3].add(1).tolist() == [4, 2, 3]


def test_rules_look_up_to_three_steps_ahead_weighted_one_over_steps() -> None:
    m = make(3, 6)
    m.absorb(events([1, 1, 1, 1, 1], [1, 2, 3, 4, 5]), Context.empty(3), 0)
    # A session of item 1 alone: the one stored session is its neighbour (similarity 1), so
    # every stored item gets a neighbour vote of 1; the rules give 2: 1, 3: 1/2, 4: 1/3, 5: 0.
    s = score(m, [2], [[1]])[0]
    expected = torch.tensor([0.0, 1, 2, 1.5, 1 + 1 / 3, 1]) + 1e-3 * torch.tensor([0.0, 1, 1, 1, 1, 1])
    torch.testing.assert_close(s, expected, rtol=0, atol=1e-6)


def test_neighbors_keeps_only_the_most_similar_sessions() -> None:
    # Session [2, 3]: weights 3: 1, 2: 0.5; similarities s1 1.5, s2 0.5, s4 0.5; nothing follows 3.
    wide = score(four_sessions(), [9], [[2, 3]])[0]
    votes = torch.tensor([0.0, 2, 2.5, 1.5, 1, 0, 0]) / 2.5
    torch.testing.assert_close(wide, votes + torch.tensor(POP), rtol=0, atol=1e-6)
    # One neighbour: s1 alone votes 1.5 for each of 1, 2, 3; popularity orders them.
    narrow = score(four_sessions(neighbors=1), [9], [[2, 3]])[0]
    torch.testing.assert_close(narrow, torch.tensor([0.0, 1, 1, 1, 0, 0, 0]) + torch.tensor(POP), rtol=0, atol=1e-6)
    assert narrow[1:].argsort(descending=True)[:3].add(1).tolist() == [2, 1, 3]


def test_a_session_is_never_its_own_neighbour() -> None:
    m = make(4, 8)
    # s1: [7, 1, 2, 3] (item 7 is nowhere else), s2: [1, 2, 4], s3: [5, 6].
    m.absorb(events([1, 1, 1, 1, 2, 2, 2, 3, 3], [7, 1, 2, 3, 1, 2, 4, 5, 6]), Context.empty(4), 0)
    seq = [[1, 2, 3]]
    as_itself, as_stranger = score(m, [1], seq)[0], score(m, [3], seq)[0]
    # Weights 1: 1/3, 2: 2/3, 3: 1; s1 would share all three (similarity 2), s2 shares 1.
    # As session 1 only s2 votes (1, 2, 4: 1 each); nothing follows 3 anywhere.
    pop = 1e-3 * torch.tensor([0.0, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5])
    torch.testing.assert_close(as_itself, torch.tensor([0.0, 1, 1, 0, 1, 0, 0, 0]) + pop, rtol=0, atol=1e-6)
    assert float(as_itself[7]) == pytest.approx(5e-4)  # its own item 7 only gets the popularity tie-break
    # Any other session (s3 does not overlap) has s1 as a neighbour: 1, 2 get 3, 3 and 7 get 2, 4 gets 1.
    torch.testing.assert_close(as_stranger, torch.tensor([0.0, 3, 3, 2, 1, 0, 0, 2]) / 3 + pop, rtol=0, atol=1e-6)
    # A user beyond the store (a new session being served) is nobody's own session either.
    torch.testing.assert_close(score(m, [99], seq)[0], as_stranger, rtol=0, atol=0)


def test_a_session_with_no_clicks_gets_popularity_order() -> None:
    m = four_sessions()
    s = m.score({"user": torch.tensor([9, 9]), "seq_item": torch.zeros(2, 0, dtype=torch.int64)})
    torch.testing.assert_close(s, torch.tensor([POP, POP]), rtol=0, atol=1e-7)
    s = score(m, [9], [[0, 0, 0]])
    torch.testing.assert_close(s[0], torch.tensor(POP), rtol=0, atol=1e-7)


def test_left_padding_changes_nothing() -> None:
    m = four_sessions()
    torch.testing.assert_close(score(m, [9], [[0, 0, 1, 2]]), score(m, [9], [[1, 2]]), rtol=0, atol=0)


def log(seed: int = 0, n_users: int = 12, n: int = 80, n_items: int = 9) -> TrainData:
    rng = np.random.default_rng(seed)
    return events(rng.integers(1, n_users, n).tolist(), rng.integers(1, n_items, n).tolist())


@pytest.mark.parametrize("max_len", [3, 200])
def test_absorbing_at_once_or_in_slices_gives_the_same_store_and_scores(max_len: int) -> None:
    data = log()
    whole = make(12, 9, max_len=max_len)
    whole.absorb(data, Context.empty(12), 0)
    parts = make(12, 9, max_len=max_len)
    for lo, hi in itertools.pairwise([0, 17, 18, 50, 80]):
        parts.absorb(data.subset(np.arange(lo, hi)), Context.empty(12), 0)
    assert torch.equal(whole.mem_indptr, parts.mem_indptr) and torch.equal(whole.mem_items, parts.mem_items)
    lengths = np.diff(whole.mem_indptr.numpy())
    assert lengths.max() == min(max_len, np.bincount(data.user_idx).max())
    # Each user's newest max_len clicks, oldest first.
    for u in range(1, 12):
        mine = data.item_idx[data.user_idx == u]
        assert whole.mem_items[whole.mem_indptr[u] : whole.mem_indptr[u + 1]].tolist() == mine[-max_len:].tolist()
    users = torch.arange(12)
    seq = torch.tensor([[1, 2, 3]] * 12)
    torch.testing.assert_close(
        score(whole, users.tolist(), seq.tolist()), score(parts, users.tolist(), seq.tolist()), rtol=0, atol=0
    )


def test_grow_keeps_old_sessions_and_old_scores() -> None:
    m = four_sessions()
    seq = [[1, 2], [2, 3], [5, 6]]
    before = score(m, [1, 9, 3], seq)
    m.grow({"user": 8, "item": 10}, "random", seeded_generator(0))
    assert (m.n_users, m.n_items) == (8, 10)
    assert m.mem_indptr.tolist() == [0, 0, 3, 6, 8, 10, 10, 10, 10]
    assert m.mem_items.tolist() == [1, 2, 3, 1, 2, 4, 5, 6, 2, 4]
    after = score(m, [1, 9, 3], seq)
    torch.testing.assert_close(after[:, :7], before, rtol=0, atol=0)
    assert not after[:, 7:].any()  # new items: no votes, no popularity yet
    # A new user's clicks on a new item join the store behind the old sessions.
    m.absorb(events([6, 6], [2, 9]), Context.empty(8), 0)
    assert m.mem_indptr.tolist() == [0, 0, 3, 6, 8, 10, 10, 12, 12]
    assert m.mem_items.tolist()[-2:] == [2, 9]
    assert float(score(m, [9], [[2]])[0, 9]) > 0
    with pytest.raises(ValueError, match=r"^cannot shrink the session store$"):
        m.grow({"user": 3}, "random", seeded_generator(0))
    with pytest.raises(ValueError, match=r"^cannot shrink the session store$"):
        m.grow({"item": 4}, "random", seeded_generator(0))


def test_it_has_no_gradient_path() -> None:
    m = four_sessions()
    with pytest.raises(NotImplementedError, match="sknn stores sessions"):
        m.loss({})
    with pytest.raises(NotImplementedError, match="sknn stores sessions"):
        m.batches(TrainInput(None, None, TrainConfig()), seeded_generator(0))
    assert list(m.parameters()) == []


def test_neighbors_must_be_positive() -> None:
    with pytest.raises(UsageError, match=r"^--neighbors must be a positive integer \(got 0\)$"):
        ModelConfig(name="sknn", neighbors=0)


# -- through init and the checkpoint -----------------------------------------------------------------


def session_log(path: Path, n_sessions: int = 30, seed: int = 0) -> Path:
    """Sessions s000.. (one visit each) walking 2..5 steps along the cycle i1 -> i2 -> .. -> i8."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 0.0
    for s in range(n_sessions):
        start, length = int(rng.integers(0, 8)), int(rng.integers(2, 6))
        for k in range(length):
            t += 0.01
            rows.append((f"s{s:03d}", f"i{(start + k) % 8 + 1}", t))
    return write_events(path, rows)


def test_init_save_and_load_score_identically(tmp_path: Path) -> None:
    events_path = session_log(tmp_path / "ev.parquet")
    ck = tmp_path / "m.pt"
    info = api.init(events_path, ck, ModelConfig(name="sknn", max_len=4, neighbors=5), TrainConfig.for_model("sknn"))
    assert info["model"] == "sknn" and info["epochs"] == 1
    raw = torch.load(ck, weights_only=True)
    assert set(raw["weights"]) == {"mem_indptr", "mem_items"} and raw["optimizer"] == []
    loaded = load_bundle(ck)
    assert isinstance(loaded.model, SKNN) and loaded.model_cfg.neighbors == 5
    # The store is every event of the log (held-out ones too), each session's newest 4 clicks.
    df = pl.read_parquet(events_path)
    fresh = make(len(loaded.users), len(loaded.items), max_len=4, neighbors=5)
    fresh.absorb(TrainData.from_events(df, loaded.users, loaded.items, loaded.types), Context.empty(0), 0)
    assert torch.equal(loaded.model.mem_indptr, fresh.mem_indptr)
    assert torch.equal(loaded.model.mem_items, fresh.mem_items)
    assert len(loaded.model.mem_items) == sum(min(4, n) for n in df["user_id"].value_counts()["count"])
    users = torch.arange(len(loaded.users))
    q = {"user": users, "seq_item": loaded.context.padded(users)[0]}  # type: ignore[union-attr]
    torch.testing.assert_close(loaded.model.score(q), fresh.score(q), rtol=0, atol=0)
    # Saved again and reloaded: the same scores, bit for bit, through the served scorer too.
    save_bundle(loaded, tmp_path / "again.pt")
    again = load_bundle(tmp_path / "again.pt")
    assert torch.equal(bundle_scorer(again)(users), bundle_scorer(loaded)(users))
    assert torch.equal(again.model.score(q), loaded.model.score(q))


def test_update_appends_the_slice_to_the_store(tmp_path: Path) -> None:
    first = session_log(tmp_path / "a.parquet", n_sessions=20, seed=1)
    rows = [("s900", "i3", 10.0), ("s900", "i4", 10.01), ("s000", "i9", 10.02)]
    second = write_events(tmp_path / "b.parquet", rows)
    m0, m1 = tmp_path / "m0.pt", tmp_path / "m1.pt"
    api.init(first, m0, ModelConfig(name="sknn"), TrainConfig.for_model("sknn"))
    api.update(m0, second, m1)
    a, b = load_bundle(m0), load_bundle(m1)
    n_old = len(a.users)
    assert b.users.ids[:n_old] == a.users.ids and b.users.ids[n_old:] == ["s900"]
    old, new = a.model.mem_indptr, b.model.mem_indptr
    s0 = a.users.lookup(pl.Series(["s000"]))[0]
    # Session s000 gained item i9 at its end; every other old session is unchanged; s900 is new.
    lengths_old, lengths_new = np.diff(old.numpy()), np.diff(new.numpy())
    assert lengths_new[s0] == lengths_old[s0] + 1
    assert np.array_equal(np.delete(lengths_new[:n_old], s0), np.delete(lengths_old, s0))
    assert lengths_new[n_old:].tolist() == [2]
    assert b.items.ids[b.model.mem_items[new[s0 + 1] - 1]] == "i9"
    assert [b.items.ids[i] for i in b.model.mem_items[new[-2] : new[-1]]] == ["i3", "i4"]
