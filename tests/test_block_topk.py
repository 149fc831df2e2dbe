"""block_topk gives torch.topk's values on wide rows, ties, -inf and odd widths included."""

from __future__ import annotations

import pytest
import torch

from recinc_cli.serving.recommend import BLOCK_TOPK_MIN_ITEMS, block_topk


@pytest.mark.parametrize("seed", range(40))
def test_same_values_as_topk_and_valid_distinct_indices(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = BLOCK_TOPK_MIN_ITEMS + int(torch.randint(0, 20_000, (), generator=g))  # rarely a multiple of 64
    k = int(torch.randint(1, 31, (), generator=g))
    levels = int(torch.randint(2, 1000, (), generator=g))  # few levels: many ties
    s = torch.randint(0, levels, (5, n), generator=g).float()
    s[torch.rand(5, n, generator=g) < 0.3] = float("-inf")  # seen items
    s[0, -1] = 1e9  # the best item past the last whole block
    s[1] = float("-inf")  # a user with nothing left
    want = torch.topk(s, k, dim=1)
    vals, idx = block_topk(s, k)
    assert torch.equal(vals, want.values)
    assert torch.equal(torch.gather(s, 1, idx), vals)
    assert all(len(set(row)) == k for row in idx.tolist())
    assert idx[0, 0] == n - 1


def test_narrow_rows_are_plain_topk() -> None:
    s = torch.rand(3, BLOCK_TOPK_MIN_ITEMS - 1)
    vals, idx = block_topk(s, 10)
    want = torch.topk(s, 10, dim=1)
    assert torch.equal(vals, want.values) and torch.equal(idx, want.indices)
