"""Vocab: append-only raw id -> dense index, index 0 reserved for padding/unknown."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recinc_cli.data.vocab import PAD, Vocab


def series(ids: list[str | None]) -> pl.Series:
    return pl.Series(ids, dtype=pl.String)


def test_empty_vocab_holds_only_the_padding_row() -> None:
    v = Vocab.empty()
    assert len(v) == 1
    assert v.ids == [PAD]
    assert v.lookup(series(["a", PAD])).tolist() == [0, 0]


def test_extend_appends_new_ids_in_first_seen_order_and_counts_them() -> None:
    v = Vocab.empty()
    assert v.extend(series(["b", "a", "b", None, PAD])) == 2
    assert v.ids == [PAD, "b", "a"]
    assert v.extend(series(["a", "c", "d", "c"])) == 2
    assert v.ids == [PAD, "b", "a", "c", "d"]
    assert v.extend(series(["d", "b"])) == 0
    assert len(v) == 5
    assert v.lookup(series(["d", "a", "zzz", None, "b"])).tolist() == [4, 2, 0, 0, 1]


def test_a_vocabulary_must_start_with_the_padding_id() -> None:
    with pytest.raises(ValueError, match="reserved padding id"):
        Vocab(["a", "b"])
    assert Vocab([PAD, "x"]).lookup(series(["x"])).tolist() == [1]


def test_lookup_casts_non_string_ids() -> None:
    v = Vocab.empty()
    v.extend(pl.Series([10, 20]))
    assert v.ids == [PAD, "10", "20"]
    assert v.lookup(pl.Series([20, 30, 10])).tolist() == [2, 0, 1]


ids = st.one_of(st.none(), st.just(PAD), st.text(alphabet="abcdé1", min_size=1, max_size=3))


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(ids, max_size=12), min_size=1, max_size=5), probes=st.lists(ids, max_size=10))
def test_extend_never_moves_old_indices(batches: list[list[str | None]], probes: list[str | None]) -> None:
    v = Vocab.empty()
    ref: dict[str, int] = {}
    for batch in batches:
        before = dict(ref)
        for raw in batch:
            if raw is not None and raw != PAD and raw not in ref:
                ref[raw] = len(ref) + 1
        added = v.extend(series(batch))
        assert added == len(ref) - len(before)
        assert v.ids == [PAD, *ref]
        # Every id known before this batch keeps its index.
        old = list(before)
        assert v.lookup(series(old)).tolist() == [before[r] for r in old]
    expected = [ref.get(p, 0) if p is not None else 0 for p in probes]
    assert v.lookup(series(probes)).tolist() == expected
    assert v.lookup(series([PAD])).tolist() == [0]


def test_point_lookups_answer_as_the_join_does() -> None:
    ids = [f"u{j}" for j in range(5000)]
    v = Vocab(["", *ids])
    probe = pl.Series([*ids[::7], "nope", "", "u4999", "u0"])
    want = v.lookup(probe)
    assert v.point_lookups().lookup(probe).tolist() == want.tolist()
    assert v.lookup(pl.Series([None, "u3"], dtype=pl.String)).tolist() == [0, 4]
    v.extend(pl.Series(["late"]))  # growing drops the index: the new id is found
    assert v.lookup(pl.Series(["late"])).tolist() == [5001]


def test_point_lookups_tell_apart_ids_whose_hashes_collide() -> None:
    v = Vocab(["", "a", "b", "c"]).point_lookups()
    # Give "a" the hash of "b", as two ids may share one: "b" finds "a" first, and only the
    # id itself tells them apart ("a" is then unknown, as its own hash is in no slot).
    same, other = hash("b"), hash("c")
    hashes = np.array([hash(""), same, same, other], dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    v._points = (hashes[order], order)
    assert v.lookup(pl.Series(["b", "a", "c", "zzz"])).tolist() == [2, 0, 3, 0]
