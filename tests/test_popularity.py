"""Time-decayed popularity: halves per half-life, incremental equals one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recinc_cli.data.popularity import decayed_popularity

DAY_MS = 86_400_000
HALF_LIFE_S = 14 * 86_400.0


def fold(
    prev: torch.Tensor, t0: int, items: list[int], weights: list[float], ts: list[int], n_items: int
) -> tuple[torch.Tensor, int]:
    return decayed_popularity(
        prev, t0, np.array(items), np.array(weights, np.float32), np.array(ts, np.int64), n_items, HALF_LIFE_S
    )


def test_one_half_life_halves_the_score() -> None:
    pop, t = fold(torch.zeros(3), 0, [1], [4.0], [5 * DAY_MS], 3)
    assert pop.tolist() == [0.0, 4.0, 0.0] and t == 5 * DAY_MS
    pop, t = fold(pop, t, [2], [1.0], [19 * DAY_MS], 3)  # 14 days later
    assert t == 19 * DAY_MS
    assert pop.tolist() == pytest.approx([0.0, 2.0, 1.0])
    pop, t = fold(pop, t, [2], [0.0], [47 * DAY_MS], 3)  # two more half-lives
    assert pop.tolist() == pytest.approx([0.0, 0.5, 0.25])
    assert pop.dtype == torch.float32


def test_events_within_a_batch_decay_to_its_newest_time() -> None:
    pop, t = fold(torch.zeros(2), 0, [1, 1], [1.0, 1.0], [0, 14 * DAY_MS], 2)
    assert t == 14 * DAY_MS
    assert pop.tolist() == pytest.approx([0.0, 1.5])


def test_incremental_equals_one_pass_and_grows_the_catalogue() -> None:
    rng = np.random.default_rng(0)
    items = rng.integers(1, 6, 40).tolist()
    weights = rng.choice([1.0, 3.0, 5.0], 40).tolist()
    ts = np.sort(rng.integers(0, 30 * DAY_MS, 40)).tolist()
    whole, t_whole = fold(torch.zeros(6), 0, items, weights, ts, 6)
    # The first fold knows items 1..3 only (a table of 4 rows); the second brings items 4, 5.
    first = [i for i in range(20) if items[i] < 4]
    rest = [i for i in range(40) if i not in first]
    part, t_part = fold(
        torch.zeros(4), 0, [items[i] for i in first], [weights[i] for i in first], [ts[i] for i in first], 4
    )
    part, t_part = fold(part, t_part, [items[i] for i in rest], [weights[i] for i in rest], [ts[i] for i in rest], 6)
    assert t_part == t_whole == max(ts)
    assert part.shape == (6,)
    assert part.tolist() == pytest.approx(whole.tolist(), rel=1e-5)
    # Brute force: sum of w * 2^(-(T - t) / half-life).
    brute = np.zeros(6)
    for i, w, t in zip(items, weights, ts, strict=True):
        brute[i] += w * 2.0 ** (-(max(ts) - t) / (HALF_LIFE_S * 1000))
    assert whole.tolist() == pytest.approx(brute.tolist(), rel=1e-5)


def test_clock_never_runs_backwards() -> None:
    pop, t = fold(torch.tensor([0.0, 8.0]), 10 * DAY_MS, [1], [2.0], [10 * DAY_MS - 14 * DAY_MS], 2)
    assert t == 10 * DAY_MS
    assert pop.tolist() == pytest.approx([0.0, 9.0])
