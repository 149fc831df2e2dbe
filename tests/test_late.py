"""The watermark: events older than it minus --allowed-lateness are kept, dropped or refused (exit 8)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import torch
from conftest import only_files
from synthetic import TINY, ids, random_rows, write_events

from recinc_cli.store.format import read_payload

USERS, ITEMS = ids("u", 10), ids("i", 10)
#: Three late events of a user and an item nobody else has: whether they trained is plain to see.
LATE = [("lateuser", "lateitem", 8.0), ("lateuser", "lateitem", 8.5), ("lateuser", "lateitem", 9.0)]
N_FRESH = 40


@dataclass
class Base:
    ckpt: Path
    watermark_ms: int


def utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    from conftest import run_cli

    d = tmp_path_factory.mktemp("late")
    events = write_events(d / "base.parquet", random_rows(USERS, ITEMS, 200, 0, 10, seed=1))
    r = run_cli("init", events, "-o", d / "m0.pt", *TINY, "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    wm = read_payload(d / "m0.pt")["pop_time_ms"]
    assert wm == int(pl.read_parquet(events)["timestamp"].dt.epoch("ms").max())
    return Base(d / "m0.pt", wm)


def late_slice(tmp_path: Path, late=LATE) -> Path:
    return write_events(tmp_path / "slice.parquet", random_rows(USERS, ITEMS, N_FRESH, 10, 11, seed=2) + list(late))


def update(cli, base: Base, events: Path, out: Path, *args: str):
    return cli("update", base.ckpt, events, "-o", out, *args)


def test_late_fail_exits_8_naming_the_file_and_row_and_writes_nothing(cli, expect_error, base, tmp_path) -> None:
    events = late_slice(tmp_path)
    r = update(cli, base, events, tmp_path / "m1.pt", "--late", "fail")
    wm = utc(base.watermark_ms).isoformat(timespec="seconds")
    expect_error(
        r,
        8,
        f"{events}: 3 events are older than the model's watermark {wm} minus --allowed-lateness (0s), "
        "first at row 0 (2026-01-09 00:00:00+00:00); pass --late keep or --late drop, or raise --allowed-lateness",
    )
    assert only_files(tmp_path) == ["slice.parquet"]


def test_exit_code_8_is_documented_in_help(cli) -> None:
    r = cli("--help")
    assert r.exit_code == 0
    assert "8 late events refused (--late fail)" in " ".join(r.stdout.split())
    assert re.search(r"--late\b", cli("update", "--help").stdout)


def test_late_drop_skips_the_late_events_and_counts_them(cli, base, tmp_path) -> None:
    out = tmp_path / "m1.pt"
    r = update(cli, base, late_slice(tmp_path), out, "--late", "drop")
    assert r.exit_code == 0, r.stderr
    assert "3 late (dropped)" in r.stderr
    raw = read_payload(out)
    entry = raw["lineage"][-1]
    assert (entry["late_events"], entry["late_policy"]) == (3, "drop")
    assert (entry["events_in"], entry["events"]) == (N_FRESH + 3, N_FRESH)
    assert "lateitem" not in raw["items"] and "lateuser" not in raw["users"]
    assert raw["train_config"]["late"] == "drop"


@pytest.mark.parametrize("flags", [("--late", "keep"), ()], ids=["keep", "default"])
def test_late_keep_trains_on_the_late_events_and_counts_them(cli, base, tmp_path, flags) -> None:
    out = tmp_path / "m1.pt"
    events = late_slice(tmp_path)
    r = update(cli, base, events, out, *flags)
    assert r.exit_code == 0, r.stderr
    assert "3 late (kept)" in r.stderr
    raw = read_payload(out)
    entry = raw["lineage"][-1]
    assert (entry["late_events"], entry["late_policy"]) == (3, "keep")
    assert entry["events_in"] == entry["events"] == N_FRESH + 3
    u, i = raw["users"].index("lateuser"), raw["items"].index("lateitem")
    lo, hi = int(raw["seen_indptr"][u]), int(raw["seen_indptr"][u + 1])
    assert raw["seen_indices"][lo:hi].tolist() == [i]
    # Late events never move the watermark back.
    assert raw["pop_time_ms"] == int(pl.read_parquet(events)["timestamp"].dt.epoch("ms").max()) > base.watermark_ms
    assert entry["watermark"] == utc(raw["pop_time_ms"]).isoformat(timespec="seconds")


def test_allowed_lateness_large_enough_means_not_late(cli, base, tmp_path) -> None:
    out = tmp_path / "m1.pt"
    r = update(cli, base, late_slice(tmp_path), out, "--late", "fail", "--allowed-lateness", "3d", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    raw = read_payload(out)
    assert raw["lineage"][-1]["late_events"] == 0
    assert "lateitem" in raw["items"]
    assert raw["train_config"]["allowed_lateness_s"] == 3 * 86400


def test_lateness_boundary_is_exclusive(cli, expect_error, base, tmp_path) -> None:
    """An event exactly at watermark - lateness is on time; one millisecond earlier is late."""
    edge = utc(base.watermark_ms) - dt.timedelta(days=1)
    on_time = late_slice(tmp_path, [("lateuser", "lateitem", edge)])
    r = update(cli, base, on_time, tmp_path / "m1.pt", "--late", "fail", "--allowed-lateness", "1d", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    (tmp_path / "m1.pt").unlink()
    late = late_slice(tmp_path, [("lateuser", "lateitem", edge - dt.timedelta(milliseconds=1))])
    r = update(cli, base, late, tmp_path / "m1.pt", "--late", "fail", "--allowed-lateness", "1d")
    expect_error(r, 8, pattern=r".*: 1 events are older than .* minus --allowed-lateness \(86400s\), first at row 0 .*")
    assert not (tmp_path / "m1.pt").exists()


def test_a_stored_fail_policy_refuses_later_late_slices(cli, expect_error, base, tmp_path) -> None:
    clean = write_events(tmp_path / "clean.parquet", random_rows(USERS, ITEMS, N_FRESH, 10, 11, seed=3))
    r = update(cli, base, clean, tmp_path / "m1.pt", "--late", "fail", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    assert read_payload(tmp_path / "m1.pt")["train_config"]["late"] == "fail"
    # The next slice has events from before day 11 (the new watermark): refused with no flag given.
    late = write_events(tmp_path / "next.parquet", random_rows(USERS, ITEMS, N_FRESH, 10.5, 12, seed=4))
    r = cli("update", tmp_path / "m1.pt", late, "-o", tmp_path / "m2.pt")
    expect_error(r, 8, pattern=rf"{re.escape(str(late))}: \d+ events are older than .*")
    assert not (tmp_path / "m2.pt").exists()
    r = cli("update", tmp_path / "m1.pt", late, "-o", tmp_path / "m2.pt", "--late", "drop", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    entry = read_payload(tmp_path / "m2.pt")["lineage"][-1]
    watermark = utc(read_payload(tmp_path / "m1.pt")["pop_time_ms"])
    late_n = int((pl.read_parquet(late)["timestamp"] < watermark).sum())
    assert entry["late_events"] == late_n > 0
    assert entry["events"] == N_FRESH - late_n


def test_a_slice_of_late_events_only_is_recorded_but_changes_no_weight(cli, base, tmp_path) -> None:
    out = tmp_path / "m1.pt"
    r = update(cli, base, write_events(tmp_path / "old.parquet", LATE), out, "--late", "drop", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    raw, parent = read_payload(out), read_payload(base.ckpt)
    entry = raw["lineage"][-1]
    assert (entry["events_in"], entry["late_events"], entry["events"], entry["epochs"]) == (3, 3, 0, 0)
    assert raw["pop_time_ms"] == parent["pop_time_ms"] and raw["items"] == parent["items"]
    assert all(torch.equal(w, parent["weights"][k]) for k, w in raw["weights"].items())
    # Applied all the same: the same file again is skipped.
    r = cli("update", out, tmp_path / "old.parquet", "-o", tmp_path / "m2.pt")
    assert r.exit_code == 0 and "already applied" in r.stderr and not (tmp_path / "m2.pt").exists()


def test_unknown_late_policy_is_a_usage_error(cli, expect_error, base, tmp_path) -> None:
    r = update(cli, base, late_slice(tmp_path), tmp_path / "m1.pt", "--late", "ignore")
    expect_error(r, 2, "--late must be one of keep, drop, fail (got 'ignore')")


def test_readme_exit_code_table_lists_every_exit_code() -> None:
    from conftest import REPO

    from recinc_cli.errors import EXIT_CODES

    table = REPO.joinpath("README.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert set(EXIT_CODES) <= listed
