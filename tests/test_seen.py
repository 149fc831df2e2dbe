"""SeenItems (CSR of each user's seen items) against a brute-force set of pairs."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recinc_cli.data.seen import SeenItems


def test_empty_contains_nothing() -> None:
    s = SeenItems.empty(3)
    assert s.n_users == 3
    assert s.contains(np.array([0, 1, 2, 5]), np.array([0, 1, 2, 3])).tolist() == [False] * 4
    scores = torch.zeros(2, 4)
    assert torch.equal(s.mask_(scores, torch.tensor([1, 2])), torch.zeros(2, 4))


def test_merge_deduplicates_sorts_and_grows_rows() -> None:
    s = SeenItems.empty(2).merge(np.array([1, 1, 1]), np.array([5, 2, 5]), n_users=2)
    s = s.merge(np.array([3, 1]), np.array([1, 3]), n_users=4)
    assert s.n_users == 4
    assert s.indptr.tolist() == [0, 0, 3, 3, 4]
    assert s.indices.tolist() == [2, 3, 5, 1]
    assert s.indptr.dtype == torch.int64 and s.indices.dtype == torch.int64
    users, items = s.pairs()
    assert list(zip(users.tolist(), items.tolist(), strict=True)) == [(1, 2), (1, 3), (1, 5), (3, 1)]


pair = st.tuples(st.integers(1, 5), st.integers(1, 15))


@settings(max_examples=80, deadline=None)
@given(
    first=st.lists(pair, max_size=25),
    second=st.lists(pair, max_size=25),
    grow=st.integers(0, 3),
    rows=st.lists(st.integers(0, 8), min_size=1, max_size=6),
    probes=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 20)), max_size=30),
)
def test_merge_contains_mask_match_a_set_of_pairs(
    first: list[tuple[int, int]],
    second: list[tuple[int, int]],
    grow: int,
    rows: list[int],
    probes: list[tuple[int, int]],
) -> None:
    n1 = 6
    n2 = n1 + grow
    s = SeenItems.empty(n1)
    for batch, n in ((first, n1), (second, n2)):
        u = np.array([p[0] for p in batch], dtype=np.int64)
        i = np.array([p[1] for p in batch], dtype=np.int64)
        s = s.merge(u, i, n_users=n)
    ref = set(first) | set(second)

    assert s.n_users == n2
    for user in range(n2):
        assert s.items_of(user).tolist() == sorted(i for u, i in ref if u == user)

    pu = np.array([p[0] for p in probes], dtype=np.int64)
    pi = np.array([p[1] for p in probes], dtype=np.int64)
    assert s.contains(pu, pi).tolist() == [p in ref for p in probes]

    # Any order, repeats allowed: row b is masked for user users[b].
    users = [r % n2 for r in rows]
    scores = torch.rand(len(users), 17)
    before = scores.clone()
    out = s.mask_(scores, torch.tensor(users))
    assert out is scores
    for b, user in enumerate(users):
        for item in range(17):
            expected = float("-inf") if (user, item) in ref else before[b, item].item()
            assert scores[b, item].item() == expected
