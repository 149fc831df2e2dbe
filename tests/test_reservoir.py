"""The replay reservoir: uniform (Algorithm R) over slices, reproducible, bounded, kept in the checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recinc_cli.data.reservoir import Reservoir
from recinc_cli.store.format import read_payload

SIZE, SLICES, PER_SLICE, SEEDS = 100, 10, 200, 300
#: Upper 0.001 quantile of chi-square with 9 degrees of freedom (tables).
CHI2_9DF_P001 = 27.877


def chi2_critical(df: int, p: float = 0.001) -> float:
    """Upper ``p`` quantile of chi-square (Wilson-Hilferty; within 0.1% for df > 100)."""
    z = {0.001: 3.090232}[p]
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2(observed: np.ndarray, expected: float) -> float:
    return float(((observed - expected) ** 2 / expected).sum())


def offer(r: Reservoir, start: int, n: int, gen: torch.Generator) -> Reservoir:
    """Offer events start..start+n-1 (event j: user j, item j % 7, time j)."""
    j = np.arange(start, start + n)
    return r.add(j, j % 7, np.zeros(n, np.int64), np.full(n, 2.0, np.float32), j * 1000, gen)


def stream(seed: int, size: int = SIZE, slices: int = SLICES, per_slice: int = PER_SLICE) -> Reservoir:
    gen = torch.Generator().manual_seed(seed)
    r = Reservoir.empty(size)
    for s in range(slices):
        r = offer(r, s * per_slice, per_slice, gen)
    return r


@pytest.fixture(scope="module")
def kept() -> np.ndarray:
    """(SEEDS, SIZE) event numbers kept after 10 slices of 200 offered to a size-100 reservoir."""
    return np.stack([np.sort(stream(seed).user) for seed in range(SEEDS)])


def test_every_slice_is_equally_represented(kept: np.ndarray) -> None:
    per_slice = np.bincount(kept.ravel() // PER_SLICE, minlength=SLICES)
    assert per_slice.sum() == SEEDS * SIZE
    # Expected SEEDS * SIZE / SLICES = 3000 per slice whatever its age.
    assert chi2(per_slice, SEEDS * SIZE / SLICES) < CHI2_9DF_P001, per_slice
    # The oldest and the newest slice alike: within 10% of the expected 3000.
    assert np.abs(per_slice - 3000).max() < 300


def test_every_event_position_is_equally_likely(kept: np.ndarray) -> None:
    n = SLICES * PER_SLICE
    per_event = np.bincount(kept.ravel(), minlength=n)
    assert len(per_event) == n
    assert chi2(per_event, SEEDS * SIZE / n) < chi2_critical(n - 1)


def test_the_statistic_rejects_a_sample_biased_towards_new_events(kept: np.ndarray) -> None:
    # The same test on "the newest half of the stream, half as often" fails by far: it has power.
    n = SLICES * PER_SLICE
    biased = np.where(kept < n // 2, kept + n // 2, kept)
    assert chi2(np.bincount(biased.ravel() // PER_SLICE, minlength=SLICES), 3000) > 100 * CHI2_9DF_P001
    assert chi2(np.bincount(biased.ravel(), minlength=n), SEEDS * SIZE / n) > chi2_critical(n - 1)


def test_vectorised_add_matches_the_sequential_algorithm_r() -> None:
    """Slot collisions inside one call: the later event wins, as in the one-at-a-time loop."""
    size, per_slice = 5, 50
    got = stream(11, size=size, slices=4, per_slice=per_slice)
    gen = torch.Generator().manual_seed(11)
    res: list[int] = []
    seen = 0
    for s in range(4):
        fill = min(max(size - len(res), 0), per_slice)
        u = torch.rand(per_slice - fill, generator=gen, dtype=torch.float64).numpy()
        for j in range(per_slice):
            if len(res) < size:
                res.append(s * per_slice + j)
            else:
                slot = math.floor(u[j - fill] * (seen + 1))
                if slot < size:
                    res[slot] = s * per_slice + j
            seen += 1
    assert got.user.tolist() == res
    # The other columns travel with the user column.
    assert got.item.tolist() == [j % 7 for j in res] and got.ts_ms.tolist() == [j * 1000 for j in res]
    assert got.weight.tolist() == [2.0] * size and got.type.tolist() == [0] * size


def test_same_seed_same_sample_and_another_seed_another() -> None:
    a, b, c = stream(5), stream(5), stream(6)
    for x, y in zip(a.arrays(), b.arrays(), strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.user, c.user)


def test_capacity_and_offer_count() -> None:
    gen = torch.Generator().manual_seed(0)
    r = offer(Reservoir.empty(10), 0, 4, gen)
    # Not full yet: every event offered is kept, in order.
    assert (len(r), r.n_seen, r.user.tolist()) == (4, 4, [0, 1, 2, 3])
    r = offer(r, 4, 6, gen)
    assert (len(r), r.n_seen, r.user.tolist()) == (10, 10, list(range(10)))
    r = offer(r, 10, 1000, gen)
    assert (len(r), r.size, r.n_seen) == (10, 10, 1010)
    assert len(set(r.user.tolist())) == 10 and r.user.max() < 1010
    assert all(a.dtype == d for a, d in zip(r.arrays(), (np.int64,) * 3 + (np.float32, np.int64), strict=True))
    empty = offer(Reservoir.empty(0), 0, 50, gen)
    assert (len(empty), empty.n_seen) == (0, 50)
    assert offer(r, 0, 0, gen).n_seen == 1010


def test_sample_is_distinct_time_ordered_and_bounded() -> None:
    r = stream(1)
    gen = torch.Generator().manual_seed(0)
    d = r.sample(30, gen)
    assert len(d) == 30 and len(set(d.user_idx.tolist())) == 30
    assert set(d.user_idx.tolist()) <= set(r.user.tolist())
    assert np.all(np.diff(d.ts_ms) >= 0)
    assert np.array_equal(d.item_idx, d.user_idx % 7) and np.array_equal(d.ts_ms, d.user_idx * 1000)
    assert sorted(r.sample(10_000, gen).user_idx.tolist()) == sorted(r.user.tolist())  # at most all
    # Uniform over the reservoir: 2000 draws of 10 from 100 hit each slot about 200 times.
    hits = np.bincount(
        np.concatenate([np.searchsorted(np.sort(r.user), r.sample(10, gen).user_idx) for _ in range(2000)]),
        minlength=SIZE,
    )
    assert chi2(hits, 200) < chi2_critical(SIZE - 1)


def test_shrinking_keeps_a_uniform_subset_and_growing_keeps_everything() -> None:
    r = stream(2)
    gen = torch.Generator().manual_seed(0)
    small = r.resized(10, gen)
    assert (len(small), small.size, small.n_seen) == (10, 10, r.n_seen)
    assert set(small.user.tolist()) < set(r.user.tolist())
    assert np.array_equal(small.item, small.user % 7)  # rows stay whole
    counts = np.zeros(SIZE)
    order = {u: j for j, u in enumerate(r.user.tolist())}
    for _ in range(1000):
        for u in r.resized(10, gen).user.tolist():
            counts[order[u]] += 1
    assert chi2(counts, 1000 * 10 / SIZE) < chi2_critical(SIZE - 1)
    big = r.resized(500, gen)
    assert (big.size, big.n_seen, big.user.tolist()) == (500, r.n_seen, r.user.tolist())


# -- in the checkpoint, through the CLI ------------------------------------------------------


def test_checkpoints_carry_the_reservoir_across_updates(pipeline) -> None:
    raws = {d: read_payload(pipeline.ckpt[d]) for d in (10, 11, 12, 13)}
    heights = {n: pl.read_parquet(p).height for n, p in pipeline.events.items()}
    assert raws[10]["replay_seen"] == heights["base"]
    for d in (11, 12, 13):
        assert raws[d]["replay_seen"] == raws[d - 1]["replay_seen"] + heights[f"day{d}"]
    for raw in raws.values():
        assert raw["replay_size"] == 20_000 == raw["train_config"]["replay_size"]  # the default
        n = min(raw["replay_size"], raw["replay_seen"])
        assert all(len(raw[k]) == n for k in ("replay_user", "replay_item", "replay_type", "replay_weight"))
        assert raw["replay_ts_ms"].dtype == torch.int64 and raw["replay_weight"].dtype == torch.float32


def test_reservoir_events_are_real_events_in_uniform_proportion(pipeline) -> None:
    raw = read_payload(pipeline.ckpt[11])
    held = pl.DataFrame(
        {
            "user_id": [raw["users"][j] for j in raw["replay_user"].tolist()],
            "item_id": [raw["items"][j] for j in raw["replay_item"].tolist()],
            "event_type": [raw["event_types"][j] for j in raw["replay_type"].tolist()],
            "ms": raw["replay_ts_ms"].numpy(),
        }
    )
    logged = pl.concat([pl.read_parquet(pipeline.events[n]) for n in ("base", "day11")]).select(
        "user_id", "item_id", "event_type", pl.col("timestamp").dt.epoch("ms").alias("ms")
    )
    assert held.join(logged.unique(), on=held.columns, how="anti").height == 0
    # Each of the n events offered is kept with probability 20000 / n: day11's share is its size's.
    n_day11 = pl.read_parquet(pipeline.events["day11"]).height
    day11_start = int(pl.read_parquet(pipeline.events["day11"])["timestamp"].dt.epoch("ms").min())
    assert int(pl.read_parquet(pipeline.events["base"])["timestamp"].dt.epoch("ms").max()) < day11_start
    from_day11 = int((held["ms"] >= day11_start).sum())
    expected = 20_000 * n_day11 / raw["replay_seen"]
    assert abs(from_day11 - expected) < 5 * math.sqrt(expected)


def test_update_replay_size_resizes_and_is_stored(cli, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    r = cli("update", pipeline.ckpt[11], pipeline.events["day12"], "-o", out, "--replay-size", "50", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    raw = read_payload(out)
    parent = read_payload(pipeline.ckpt[11])
    assert raw["replay_size"] == 50 == raw["train_config"]["replay_size"]
    assert len(raw["replay_user"]) == 50
    assert raw["replay_seen"] == parent["replay_seen"] + pl.read_parquet(pipeline.events["day12"]).height
