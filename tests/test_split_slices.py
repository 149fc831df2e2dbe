"""`split --slices N`: a log cut by time into N files of about equal event counts, events of one
timestamp never parted (issue 13, point 10)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import only_files
from hypothesis import given
from hypothesis import strategies as st

from recinc_cli.data.io import EVENTS_SCHEMA
from recinc_cli.data.split import slice_bounds

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def events_file(path: Path, minutes: list[int]) -> Path:
    """An events Parquet with one event per entry of ``minutes`` (time-sorted); item ``i{k}`` is row k."""
    n = len(minutes)
    df = pl.DataFrame(
        {
            "user_id": [f"u{k % 3}" for k in range(n)],
            "item_id": [f"i{k}" for k in range(n)],
            "timestamp": [T0 + dt.timedelta(minutes=m) for m in minutes],
            "event_type": ["view"] * n,
            "weight": [1.0] * n,
        },
        schema=EVENTS_SCHEMA,
    )
    df.write_parquet(path)
    return path


def items(path: Path) -> list[str]:
    return pl.read_parquet(path)["item_id"].to_list()


@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(2, 8))
def test_cuts_fall_where_the_time_changes_and_leave_no_slice_empty(steps: list[int], n: int) -> None:
    times = np.cumsum(steps)  # sorted, with runs of equal times where a step is 0
    if len(np.unique(times)) < n:
        with pytest.raises(ValueError, match="distinct times cannot make"):
            slice_bounds(times, n)
        return
    bounds = slice_bounds(times, n)
    assert bounds[0] == 0 and bounds[-1] == len(times) and len(bounds) == n + 1
    assert (np.diff(bounds) > 0).all()
    assert all(times[c - 1] < times[c] for c in bounds[1:-1])


@given(st.integers(2, 200), st.integers(2, 12))
def test_distinct_times_give_counts_within_one(rows: int, n: int) -> None:
    sizes = np.diff(slice_bounds(np.arange(rows), min(n, rows)))
    assert sizes.max() - sizes.min() <= 1


def test_cuts_by_example() -> None:
    assert slice_bounds(np.arange(10), 3).tolist() == [0, 3, 7, 10]
    assert slice_bounds(np.arange(9), 3).tolist() == [0, 3, 6, 9]
    # One time holds most events: the cuts squeeze past it so that every slice has a time.
    assert slice_bounds(np.array([0, 1, 2, 2, 2]), 3).tolist() == [0, 1, 2, 5]
    assert slice_bounds(np.array([0] * 8 + [1, 2, 3, 4]), 4).tolist() == [0, 8, 9, 10, 12]


def test_slices_by_cli(cli, tmp_path: Path) -> None:
    # Nine events; minutes 2 and 3 are shared by two events each.
    ev = events_file(tmp_path / "ev.parquet", [0, 1, 2, 2, 3, 3, 4, 5, 6])
    r = cli("split", ev, "--slices", "3", "--prefix", tmp_path / "out" / "part")
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out"
    assert only_files(out) == ["part1.parquet", "part2.parquet", "part3.parquet"]
    # The ideal cut at row 3 falls inside minute 2 (rows 2-3): the time changes at rows 2 and 4,
    # as near as each other, and the earlier wins. Row 6 (minute 4 starts) is a change already.
    assert [items(out / f"part{k}.parquet") for k in (1, 2, 3)] == [
        ["i0", "i1"],
        ["i2", "i3", "i4", "i5"],
        ["i6", "i7", "i8"],
    ]
    assert pl.read_parquet(out / "part1.parquet").schema == pl.read_parquet(ev).schema
    assert r.stderr == (
        f"split: 9 events -> 2 in {out / 'part1.parquet'} (2026-03-01T00:00:00+00:00 .. 2026-03-01T00:01:00+00:00), "
        f"4 in {out / 'part2.parquet'} (2026-03-01T00:02:00+00:00 .. 2026-03-01T00:03:00+00:00), "
        f"3 in {out / 'part3.parquet'} (2026-03-01T00:04:00+00:00 .. 2026-03-01T00:06:00+00:00)\n"
    )


def test_slices_json_and_zero_padded_names(cli, tmp_path: Path) -> None:
    ev = events_file(tmp_path / "ev.parquet", list(range(24)))
    r = cli("split", ev, "--slices", "12", "--prefix", f"{tmp_path}/s-", "--json")
    assert (r.exit_code, r.stderr) == (0, "")
    obj = json.loads(r.stdout)
    assert obj["events"] == 24
    assert [s["path"] for s in obj["slices"]] == [f"{tmp_path}/s-{k:02d}.parquet" for k in range(1, 13)]
    assert [s["events"] for s in obj["slices"]] == [2] * 12
    assert obj["slices"][0] == {
        "path": f"{tmp_path}/s-01.parquet",
        "events": 2,
        "users": 2,
        "items": 2,
        "time_min": "2026-03-01T00:00:00+00:00",
        "time_max": "2026-03-01T00:01:00+00:00",
    }
    # Glob order is time order, and the slices together are the log.
    parts = sorted(tmp_path.glob("s-*.parquet"))
    assert pl.concat([pl.read_parquet(p) for p in parts]).equals(pl.read_parquet(ev))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--slices", "1", "--prefix", "p"], 2, "--slices must be at least 2 (got 1)"),
        (["--slices", "4", "--prefix", "p"], 3, "{ev}: 5 events at 3 distinct times cannot make 4 slices "
         "(events of one time stay together); use fewer --slices"),
        (["--slices", "2"], 2, "--slices writes --prefix PREFIX1.parquet ...; give --prefix, not --train/--test"),
        (["--slices", "2", "--prefix", "p", "--train", "t.parquet"], 2,
         "--slices writes --prefix PREFIX1.parquet ...; give --prefix, not --train/--test"),
        (["--slices", "2", "--last", "1", "--prefix", "p"], 2, "give exactly one of --last, --at or --slices"),
        ([], 2, "give exactly one of --last, --at or --slices"),
        (["--last", "1", "--train", "t.parquet"], 2,
         "--last and --at write --train and --test; give both, and --prefix only with --slices"),
        (["--at", "2026-03-01", "--train", "a.parquet", "--test", "b.parquet", "--prefix", "p"], 2,
         "--last and --at write --train and --test; give both, and --prefix only with --slices"),
    ],
)  # fmt: skip
def test_slice_errors_write_nothing(
    cli, expect_error, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    ev = events_file(tmp_path / "ev.parquet", [0, 0, 0, 1, 2])  # three distinct times
    out = tmp_path / "out"
    out.mkdir()
    args = [str(out / a) if a in ("p", "t.parquet", "a.parquet", "b.parquet") else a for a in args]
    expect_error(cli("split", ev, *args), code, message.format(ev=ev))
    assert only_files(out) == []
