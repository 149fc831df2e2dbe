"""The bounded-memory dedupe-and-sort behind preprocess gives what one in-memory sort gives."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recinc_cli.data import external_sort
from recinc_cli.data.external_sort import Layout, sink_sorted
from recinc_cli.data.preprocess import preprocess

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
SINCE = T0 + dt.timedelta(hours=30)  # a cut on the second day


def _tagged(n: int, seed: int) -> pl.DataFrame:
    """``n`` rows from 3 files in (file, row) order: times over 4 days, one day crowded into
    one hour, many ties; about 10% exact copies of an earlier row; some rejects."""
    rng = np.random.default_rng(seed)
    minutes = np.where(rng.random(n) < 0.5, rng.integers(0, 4 * 24 * 60, n), 24 * 60 + rng.integers(0, 60, n) // 10)
    df = pl.DataFrame(
        {
            "_file": np.sort(rng.integers(0, 3, n)).astype(np.int32),
            "user_id": [f"u{u}" for u in rng.integers(0, 30, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, 5, n)],
            "timestamp": [T0 + dt.timedelta(minutes=int(m)) for m in minutes],
            "weight": rng.choice([0.5, 1.0, 3.0], n).astype(np.float32),
        }
    )
    copies = rng.random(n) < 0.1
    source = np.maximum(np.arange(n) - rng.integers(1, 50, n), 0)
    df = pl.concat([df.filter(~pl.Series(copies)), df[source[copies]].with_columns(pl.col("_file").max())])
    df = df.sort("_file", maintain_order=True).with_columns(pl.int_range(1, pl.len() + 1).over("_file").alias("_row"))
    reason = pl.when(pl.int_range(pl.len()) % 17 == 0).then(pl.lit("missing item_id"))
    return df.with_columns(reason.alias("_reason")).with_columns(
        pl.when(pl.col("_reason").is_null()).then(pl.col("timestamp")).alias("timestamp")
    )


LAYOUT = Layout(
    kept=["user_id", "item_id", "timestamp", "weight"],
    rejects=[pl.col("_file"), pl.col("_row"), pl.col("_reason"), pl.col("user_id")],
    content=["user_id", "item_id", "timestamp", "weight"],
    left_out={"light": pl.col("weight") < 1.0, "old": pl.col("timestamp") <= SINCE},
)


@pytest.mark.parametrize(("group_rows", "rows_hint"), [(40, None), (300, None), (10**9, None), (10**9, 3000)])
def test_matches_one_in_memory_sort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group_rows: int, rows_hint: int | None
) -> None:
    """Runs of days, a day split by hour, one run, and no scratch at all (``rows_hint``)."""
    monkeypatch.setattr(external_sort, "GROUP_ROWS", group_rows)
    df = _tagged(3000, seed=group_rows)
    kept, rej, scratch = tmp_path / "kept.parquet", tmp_path / "rej.parquet", tmp_path / "s"
    left = sink_sorted(df.lazy(), LAYOUT, kept, rej, scratch, rows_hint=rows_hint)
    assert scratch.exists() == (rows_hint is None)

    sound = df.filter(pl.col("_reason").is_null()).sort("timestamp", "_file", "_row")
    first = sound.filter(pl.struct(LAYOUT.content).is_first_distinct())
    light, old = pl.col("weight") < 1.0, pl.col("timestamp") <= SINCE
    assert pl.read_parquet(kept).equals(first.filter(~light & ~old).select(LAYOUT.kept))
    # A row both light and old counts once, under the first reason.
    assert left == {"light": first.filter(light).height, "old": first.filter(~light & old).height}
    assert left["light"] > 0 and left["old"] > 0 and first.filter(light & old).height > 0
    dups = sound.filter(~pl.struct(LAYOUT.content).is_first_distinct()).with_columns(_reason=pl.lit("exact duplicate"))
    want_rej = pl.concat([df.filter(pl.col("_reason").is_not_null()), dups]).sort("_file", "_row")
    got_rej = pl.read_parquet(rej)
    assert got_rej.equals(want_rej.select(LAYOUT.rejects))
    assert {"missing item_id", "exact duplicate"} == set(got_rej["_reason"])
    if group_rows == 40:  # the crowded day was split by hour
        assert list(scratch.glob("hours_*"))


def test_no_sound_row_writes_empty_outputs_with_the_columns(tmp_path: Path) -> None:
    df = _tagged(50, seed=1).with_columns(pl.lit("missing user_id").alias("_reason"), pl.lit(None).alias("timestamp"))
    df = df.with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    assert sink_sorted(df.lazy(), LAYOUT, tmp_path / "k.parquet", tmp_path / "r.parquet", tmp_path / "s") == {
        "light": 0,
        "old": 0,
    }
    kept = pl.read_parquet(tmp_path / "k.parquet")
    assert kept.height == 0 and kept.columns == LAYOUT.kept
    assert pl.read_parquet(tmp_path / "r.parquet").height == 50


def test_preprocess_across_files_and_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties across files, duplicates across files and days spread over several runs."""
    monkeypatch.setattr(external_sort, "GROUP_ROWS", 3)
    rows = {
        "a.csv": ["u1,i1,2026-03-02T10:00:00Z", "u2,i2,2026-03-01T09:00:00Z", "u3,i3,2026-03-03T00:00:00Z"],
        "b.csv": ["u4,i4,2026-03-02T10:00:00Z", "u1,i1,2026-03-02T10:00:00Z", "u5,i5,2026-03-01T09:00:00Z"],
        "c.csv": ["u6,i6,2026-03-01T09:00:00Z", "u7,i7,2026-03-02T10:00:00Z", "u2,i2,2026-03-01T09:00:00Z"],
    }
    for name, lines in rows.items():
        (tmp_path / name).write_text("user_id,item_id,timestamp\n" + "\n".join(lines) + "\n")
    out = tmp_path / "out" / "ev.parquet"
    m = preprocess([tmp_path / n for n in rows], out)
    assert pl.read_parquet(out)["user_id"].to_list() == ["u2", "u5", "u6", "u1", "u4", "u7", "u3"]
    rej = pl.read_parquet(out.with_name("ev.rejects.parquet"))
    assert [(Path(s).name, r) for s, r in rej.select("source", "row").iter_rows()] == [("b.csv", 2), ("c.csv", 3)]
    assert m["rows_rejected"] == {"exact duplicate": 2}
    assert sorted(p.name for p in out.parent.iterdir()) == ["ev.manifest.json", "ev.parquet", "ev.rejects.parquet"]


def test_a_killed_runs_scratch_is_removed_by_the_next_write(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,item_id,timestamp\nu1,i1,1772359200\n")
    dead = 2**22 + 7  # above the default pid_max: no process has it
    while True:
        try:
            os.kill(dead, 0)
        except ProcessLookupError:
            break
        dead += 1
    stale = tmp_path / f".ev.parquet.{dead}.abcd1234.tmp"
    (stale / "sort" / "days").mkdir(parents=True)
    (stale / "sort" / "days" / "x.parquet").write_bytes(b"partial")
    preprocess([tmp_path / "a.csv"], tmp_path / "ev.parquet")
    assert not stale.exists()
