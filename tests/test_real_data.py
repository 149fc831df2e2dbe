"""Real logs from ../shared/data (read in place, never copied); skipped where it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO

DATA = REPO.parent / "shared" / "data"


def need(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def manifest(out: Path) -> dict:
    return json.loads(out.with_name(out.name.removesuffix(".parquet") + ".manifest.json").read_text())


def test_movielens_100k_preprocess_init_evaluate(cli, tmp_path: Path) -> None:
    src = need("ml-100k.parquet")
    events = tmp_path / "ml.parquet"
    r = cli("preprocess", src, "-o", events, "--time-unit", "s", "-q")
    assert r.exit_code == 0, r.stderr
    m = manifest(events)
    # Figures from shared/data/README.md.
    assert (m["rows_read"], m["rows_kept"], m["users"], m["items"]) == (100_000, 100_000, 943, 1682)
    assert (m["time_min"], m["time_max"]) == ("1997-09-20T03:05:10+00:00", "1998-04-22T23:10:38+00:00")
    assert m["event_types"] == {"interaction": 100_000}
    df = pl.read_parquet(events)
    assert "rating" in df.columns and df["user_id"].dtype == pl.String
    # Test-then-train on the last tenth, by time.
    cut = int(df.height * 0.9)
    df.head(cut).write_parquet(tmp_path / "base.parquet")
    df.tail(df.height - cut).write_parquet(tmp_path / "next.parquet")
    r = cli(
        "init",
        tmp_path / "base.parquet",
        "-o",
        tmp_path / "m.pt",
        "--dim",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "8192",
        "-q",
    )
    assert r.exit_code == 0, r.stderr
    r = cli("evaluate", tmp_path / "m.pt", tmp_path / "next.parquet", "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["users"] > 50
    assert 0 < result["popular"]["ndcg"] < 1 and 0 <= result["model"]["ndcg"] < 1


def test_taobao_event_types_get_their_weights(cli, tmp_path: Path) -> None:
    src = need("taobao-userbehavior-84k.parquet")
    events = tmp_path / "tb.parquet"
    r = cli("preprocess", src, "-o", events, "-q")
    assert r.exit_code == 0, r.stderr
    m = manifest(events)
    assert m["rows_read"] == 84_287
    assert m["rows_kept"] + sum(m["rows_rejected"].values()) == 84_287
    assert set(m["rows_rejected"]) <= {"exact duplicate"}
    weights = dict(pl.read_parquet(events).group_by("event_type").agg(pl.col("weight").first()).iter_rows())
    assert weights == {"pv": 1.0, "fav": 2.0, "cart": 3.0, "buy": 5.0}
