"""The benchmark log generator (bench/synth.py) gives the structure it promises, reproducibly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recinc_cli import api

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth():  # the module under test, loaded from its file
    spec = importlib.util.spec_from_file_location("synth", REPO / "bench" / "synth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(synth, tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    out = tmp_path_factory.mktemp("tiny")
    synth.generate(synth.SIZES["tiny"], out, seed=0)
    days = sorted(out.glob("day_*.parquet"))
    return out, pl.concat([pl.read_parquet(p).with_columns(pl.lit(i).alias("day")) for i, p in enumerate(days)])


def test_same_seed_same_log_other_seed_other_log(synth, tiny, tmp_path) -> None:
    out, log = tiny
    synth.generate(synth.SIZES["tiny"], tmp_path / "again", seed=0)
    synth.generate(synth.SIZES["tiny"], tmp_path / "other", seed=1)
    assert pl.read_parquet(tmp_path / "again" / "day_03.parquet").equals(pl.read_parquet(out / "day_03.parquet"))
    assert not pl.read_parquet(tmp_path / "other" / "day_03.parquet").equals(pl.read_parquet(out / "day_03.parquet"))
    assert log.height == synth.SIZES["tiny"].events and log["day"].n_unique() == synth.SIZES["tiny"].days


def test_each_day_is_in_time_order_within_that_day(tiny) -> None:
    _, log = tiny
    for (day,), part in log.group_by("day"):
        ts = part["timestamp"]
        assert ts.is_sorted()
        assert ts.dt.date().n_unique() == 1 and ts.dt.day()[0] == int(day) + 1  # type: ignore[call-overload]


def test_new_items_and_new_users_arrive_every_day(tiny) -> None:
    _, log = tiny
    for column in ("item_id", "user_id"):
        first = log.group_by(column).agg(pl.col("day").min())
        per_day = first["day"].value_counts()
        assert set(per_day["day"].to_list()) == set(range(log["day"].max() + 1)), column  # type: ignore[operator]


def test_popularity_is_heavy_tailed_and_users_keep_to_their_tastes(tiny) -> None:
    _, log = tiny
    counts = np.sort(log["item_id"].value_counts()["count"].to_numpy())[::-1]
    assert counts[: len(counts) // 100].sum() / counts.sum() > 0.15  # top 1% of items: 21% of events
    per_user = log.group_by("user_id").agg(pl.len().alias("n"), pl.col("category").value_counts(sort=True).alias("c"))
    heavy = per_user.filter(pl.col("n") >= 20)
    top2 = [
        sum(c["count"] for c in cats[:2]) / n
        for cats, n in zip(heavy["c"].to_list(), heavy["n"].to_list(), strict=True)
    ]
    assert len(top2) > 100 and np.mean(top2) > 0.75  # 0.86 measured; 8 categories spread evenly would give 0.25
    assert per_user["n"].max() > 50 * per_user["n"].median()  # a few users make many events


def test_the_funnel_shares_and_preprocess_reads_a_partition(tiny, tmp_path) -> None:
    out, log = tiny
    shares = dict(log["event_type"].value_counts(normalize=True).iter_rows())
    assert abs(shares["view"] - 0.82) < 0.02 and abs(shares["cart"] - 0.12) < 0.02
    manifest = api.preprocess([out / "day_02.parquet"], tmp_path / "day2.parquet")
    assert manifest["rows_read"] == 4_000
    assert manifest["rows_kept"] + sum(manifest["rows_rejected"].values()) == 4_000
    assert set(manifest["rows_rejected"]) <= {"exact duplicate"}
