"""Files in and out: atomic writes with normal permissions, events-file validation."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import polars as pl
import pytest
from conftest import only_files

from recinc_cli.data.io import atomic_path, read_events, write_table
from recinc_cli.errors import BadInputError, UsageError


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_atomic_output_gets_umask_permissions(tmp_path: Path, umask_027) -> None:
    with atomic_path(tmp_path / "out.bin") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.")
        tmp.write_bytes(b"data")
        assert not (tmp_path / "out.bin").exists()  # nothing visible until the rename
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o640
    assert only_files(tmp_path) == ["out.bin"]


def test_atomic_failure_keeps_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "out.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"new but unfinished")
        raise RuntimeError("crash")
    assert (tmp_path / "out.bin").read_bytes() == b"old"
    assert only_files(tmp_path) == ["out.bin"]


def test_atomic_path_creates_missing_directories(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a" / "b" / "out.txt") as tmp:
        tmp.write_text("x")
    assert (tmp_path / "a" / "b" / "out.txt").read_text() == "x"


def test_write_table_by_suffix(tmp_path: Path) -> None:
    df = pl.DataFrame({"user_id": ["007"], "rank": [1]})
    for suffix in (".csv", ".parquet", ".jsonl", ".ndjson"):
        write_table(df, tmp_path / f"t{suffix}")
    assert (tmp_path / "t.csv").read_text() == "user_id,rank\n007,1\n"
    assert pl.read_parquet(tmp_path / "t.parquet").equals(df)
    assert (tmp_path / "t.jsonl").read_text() == '{"user_id":"007","rank":1}\n'
    with pytest.raises(UsageError, match=r"t\.xlsx: unknown output format"):
        write_table(df, tmp_path / "t.xlsx")
    assert "t.xlsx" not in only_files(tmp_path)


def events_frame(n: int = 2) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": ["u1", "u2"][:n],
            "item_id": ["i1", "i2"][:n],
            "timestamp": [dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 2)][:n],
            "event_type": ["view", "cart"][:n],
            "weight": [1.0, 3.0][:n],
        }
    )


def test_read_events_casts_to_the_schema(tmp_path: Path) -> None:
    events_frame().write_parquet(tmp_path / "ev.parquet")
    df = read_events(tmp_path / "ev.parquet")
    assert df.schema["timestamp"] == pl.Datetime("ms", "UTC")
    assert df.schema["weight"] == pl.Float32
    assert df["timestamp"][0] == dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def test_read_events_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "ev.parquet"
    events_frame().drop("weight", "event_type").write_parquet(p)
    with pytest.raises(BadInputError) as e:
        read_events(p)
    assert str(e.value) == (
        f"{p}: missing column(s) event_type, weight; it is not an events file "
        "from `recinc preprocess`, run preprocess on it first"
    )
    events_frame(0).write_parquet(p)
    with pytest.raises(BadInputError, match=f"^{p}: holds no events$"):
        read_events(p)
    events_frame().with_columns(pl.lit("x").alias("timestamp")).write_parquet(p)
    with pytest.raises(BadInputError, match=r"events columns have the wrong types \("):
        read_events(p)
    p.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(BadInputError, match=r"cannot read Parquet \("):
        read_events(p)
