"""preprocess: time parsing, event weights, rejects with file and row, manifest, inputs."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLE, only_files, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recinc_cli.config import DEFAULT_EVENT_WEIGHTS, PreprocessConfig
from recinc_cli.data.io import sha256_file
from recinc_cli.data.preprocess import preprocess
from recinc_cli.errors import BadInputError, UsageError

UTC = dt.timezone.utc
T10 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)  # = unix 1772359200
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
HEADER = ("user_id", "item_id", "timestamp", "event_type")


def read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)


def times_of(path: Path) -> dict[str, dt.datetime]:
    df = read(path)
    return dict(zip(df["item_id"].to_list(), df["timestamp"].to_list(), strict=True))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01T10:00:00Z", T10),
        ("2026-03-01T10:00:00.250Z", T10 + dt.timedelta(milliseconds=250)),
        ("2026-03-01T12:30:00+02:30", T10),
        ("2026-03-01T05:00:00-0500", T10),
        ("2026-03-01T10:00:00", T10),
        ("2026-03-01 10:00:00", T10),
        ("2026-03-01 10:00", T10),
        ("2026-03-01T10:00Z", T10),
        ("2026-03-01", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        (" 2026-03-01T10:00:00Z ", T10),
        ("1772359200", T10),
        ("1772359200.25", T10 + dt.timedelta(milliseconds=250)),
        ("1772359200000", T10),
        ("1772359200123", T10 + dt.timedelta(milliseconds=123)),
        ("1772359200000000", T10),
        ("0", dt.datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_auto_time_parsing(tmp_path: Path, raw: str, expected: dt.datetime) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("u1", "i1", raw, "view")])
    m = preprocess([tmp_path / "log.csv"], tmp_path / "ev.parquet")
    assert m["rows_kept"] == 1, m["rows_rejected"]
    df = read(tmp_path / "ev.parquet")
    assert df.schema["timestamp"] == pl.Datetime("ms", "UTC")
    assert df["timestamp"][0] == expected


RAW_TIMES = [
    ("a", "1772359200"),
    ("b", "1772359200000"),
    ("c", "1772359200000000"),
    ("d", "2026-03-01T10:00:00Z"),
    ("e", "yesterday"),
    ("f", "99999999999999999999"),
]


@pytest.mark.parametrize(
    ("unit", "kept"),
    [
        ("auto", {"a": T10, "b": T10, "c": T10, "d": T10}),
        ("s", {"a": T10}),
        ("ms", {"a": dt.datetime(1970, 1, 21, 12, 19, 19, 200000, tzinfo=UTC), "b": T10}),
        (
            "us",
            {
                "a": dt.datetime(1970, 1, 1, 0, 29, 32, 359000, tzinfo=UTC),
                "b": dt.datetime(1970, 1, 21, 12, 19, 19, 200000, tzinfo=UTC),
                "c": T10,
            },
        ),
        ("iso", {"d": T10}),
    ],
)
def test_time_unit_flag(cli, tmp_path: Path, unit: str, kept: dict[str, dt.datetime]) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("u1", item, ts, "view") for item, ts in RAW_TIMES])
    r = cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "ev.parquet", "--time-unit", unit, "-q")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    assert times_of(tmp_path / "ev.parquet") == kept
    rejects = read(tmp_path / "ev.rejects.parquet")
    assert sorted(rejects["item_id"]) == sorted(set("abcdef") - set(kept))
    assert set(rejects["reason"]) == {"unparsable timestamp"}


def test_bad_time_unit_is_a_usage_error(cli, expect_error, tmp_path: Path) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("u1", "i1", "1", "view")])
    r = cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "ev.parquet", "--time-unit", "h")
    expect_error(r, 2, "--time-unit must be one of auto, s, ms, us, iso (got 'h')")
    assert only_files(tmp_path) == ["log.csv"]


# Auto-detection tells s from ms by magnitude: unix ms below 1e11 (before 1973-03-03) read as
# seconds by design, so the property holds from then on; times after 2100-01-01 are rejected.
utc_times = st.datetimes(
    min_value=dt.datetime(1973, 3, 4), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(utc_times, min_size=1, max_size=8), offset_min=st.integers(-12 * 60, 14 * 60))
def test_every_rendering_of_a_time_parses_to_it(tmp_path: Path, times: list[dt.datetime], offset_min: int) -> None:
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    rows, expected = [], {}
    for n, t in enumerate(times):
        ms = (t - EPOCH) // dt.timedelta(milliseconds=1)  # exact; t.timestamp() * 1000 is not
        renderings = {
            "z": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "offset": t.astimezone(tz).isoformat(timespec="milliseconds"),
            "naive": t.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds"),
            "ms": str(ms),
            "s": f"{ms / 1000:.3f}",
        }
        for kind, text in renderings.items():
            rows.append((f"u{n}", f"{kind}{n}", text, "view"))
            expected[f"{kind}{n}"] = t
    d = tmp_path / f"prop{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    write_csv(d / "log.csv", HEADER, rows)
    m = preprocess([d / "log.csv"], d / "ev.parquet")
    assert m["rows_rejected"] == {}
    assert times_of(d / "ev.parquet") == expected


def test_event_weights_defaults_case_and_unknown(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "log.csv",
        HEADER,
        [
            ("u1", "i1", "1", "view"),
            ("u1", "i2", "2", "Cart"),
            ("u1", "i3", "3", " purchase "),
            ("u1", "i4", "4", "weird"),
            ("u1", "i5", "5", "fav"),
            ("u1", "i6", "6", ""),
        ],
    )
    preprocess([tmp_path / "log.csv"], tmp_path / "ev.parquet")
    df = read(tmp_path / "ev.parquet")
    assert df["event_type"].to_list() == ["view", "Cart", "purchase", "weird", "fav", ""]
    assert df["weight"].to_list() == [1.0, 3.0, 5.0, 1.0, 2.0, 1.0]
    assert df.schema["weight"] == pl.Float32


def test_event_weights_flag_adds_to_the_defaults(cli, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "log.csv",
        HEADER,
        [
            ("u1", "i1", "1", "view"),
            ("u1", "i2", "2", "cart"),
            ("u1", "i3", "3", "purchase"),
            ("u1", "i4", "4", "weird"),
        ],
    )
    r = cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "ev.parquet", "--event-weights", "view=2, Purchase=10")
    assert r.exit_code == 0, r.stderr
    assert read(tmp_path / "ev.parquet")["weight"].to_list() == [2.0, 3.0, 10.0, 1.0]


def test_only_events_rejects_unnamed_types(cli, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "log.csv",
        HEADER,
        [
            ("u1", "i1", "1", "view"),
            ("u1", "i2", "2", "cart"),
            ("u1", "i3", "3", "purchase"),
            ("u1", "i4", "4", "weird"),
        ],
    )
    r = cli(
        "preprocess",
        tmp_path / "log.csv",
        "-o",
        tmp_path / "ev.parquet",
        "--event-weights",
        "view=1,cart=4",
        "--only-events",
    )
    assert r.exit_code == 0, r.stderr
    df = read(tmp_path / "ev.parquet")
    assert df["item_id"].to_list() == ["i1", "i2"] and df["weight"].to_list() == [1.0, 4.0]
    rej = read(tmp_path / "ev.rejects.parquet")
    assert rej["item_id"].to_list() == ["i3", "i4"]
    assert set(rej["reason"]) == {"event type not in --event-weights"}
    assert json.loads((tmp_path / "ev.manifest.json").read_text())["rows_rejected"] == {
        "event type not in --event-weights": 2
    }


def test_only_events_without_weights_keeps_the_default_types(tmp_path: Path) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("u1", "i1", "1", "view"), ("u1", "i2", "2", "zap")])
    cfg = PreprocessConfig(only_events=True)
    m = preprocess([tmp_path / "log.csv"], tmp_path / "ev.parquet", cfg)
    assert (m["rows_kept"], m["rows_rejected"]) == (1, {"event type not in --event-weights": 1})
    assert "view" in DEFAULT_EVENT_WEIGHTS and "zap" not in DEFAULT_EVENT_WEIGHTS


@pytest.mark.parametrize("spec", ["view", "view=x", "=3", "view=-1", "view=inf", "view=nan"])
def test_malformed_event_weights(cli, expect_error, tmp_path: Path, spec: str) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("u1", "i1", "1", "view")])
    r = cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "ev.parquet", "--event-weights", spec)
    expect_error(r, 2, f"--event-weights: cannot read {spec!r}; write NAME=WEIGHT pairs like view=1,cart=3")
    assert only_files(tmp_path) == ["log.csv"]


def test_without_event_column_every_event_is_an_interaction(cli, expect_error, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "log.csv",
        ("uid", "sku", "ts", "price"),
        [(" u1 ", "i1", "1772359200", "9.5"), ("u2", "i1", "1772359201", "3")],
    )
    r = cli(
        "preprocess",
        tmp_path / "log.csv",
        "-o",
        tmp_path / "ev.parquet",
        "--user-col",
        "uid",
        "--item-col",
        "sku",
        "--time-col",
        "ts",
    )
    assert r.exit_code == 0, r.stderr
    df = read(tmp_path / "ev.parquet")
    assert df.columns == ["user_id", "item_id", "timestamp", "event_type", "weight", "price"]
    assert df["user_id"].to_list() == ["u1", "u2"]  # ids are trimmed
    assert df["event_type"].to_list() == ["interaction"] * 2
    assert df["weight"].to_list() == [1.0, 1.0]
    # Naming an event column makes it required.
    r = cli(
        "preprocess",
        tmp_path / "log.csv",
        "-o",
        tmp_path / "ev2.parquet",
        "--user-col",
        "uid",
        "--item-col",
        "sku",
        "--time-col",
        "ts",
        "--event-col",
        "kind",
    )
    expect_error(
        r,
        3,
        f"{tmp_path / 'log.csv'}: column 'kind' not found (columns: uid, sku, ts, price); name it with --event-col",
    )


def test_ids_stay_strings_as_written(tmp_path: Path) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("007", "0042", "1", "view"), ("7", "42", "2", "view")])
    preprocess([tmp_path / "log.csv"], tmp_path / "ev.parquet")
    df = read(tmp_path / "ev.parquet")
    assert df["user_id"].to_list() == ["007", "7"] and df["item_id"].to_list() == ["0042", "42"]


def test_rejects_name_file_row_and_reason(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "a.csv",
        HEADER,
        [
            ("u1", "i1", "2026-03-01T10:00:00Z", "view"),  # row 1
            ("", "i2", "2026-03-01T10:00:00Z", "view"),  # row 2: missing user
            ("u1", "  ", "2026-03-01T10:00:00Z", "view"),  # row 3: blank item
            ("u1", "i3", "soon", "view"),  # row 4: bad time
            ("u1", "i1", "2026-03-01T10:00:00Z", "view"),  # row 5: duplicate of row 1
            ("", "", "", "view"),  # row 6: first failing check wins
        ],
    )
    write_csv(
        tmp_path / "b.csv",
        HEADER,
        [
            ("u2", "i9", "1772359300", "cart"),  # row 1
            ("u1", "i1", "2026-03-01T10:00:00Z", "view"),  # row 2: duplicate across files
        ],
    )
    m = preprocess([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "ev.parquet")
    rej = read(tmp_path / "ev.rejects.parquet")
    assert rej.columns == ["source", "row", "reason", "user_id", "item_id", "timestamp_raw", "event_type"]
    got = sorted(
        zip(rej["source"].map_elements(lambda s: Path(s).name, pl.String), rej["row"], rej["reason"], strict=True)
    )
    assert got == [
        ("a.csv", 2, "missing user_id"),
        ("a.csv", 3, "missing item_id"),
        ("a.csv", 4, "unparsable timestamp"),
        ("a.csv", 5, "exact duplicate"),
        ("a.csv", 6, "missing user_id"),
        ("b.csv", 2, "exact duplicate"),
    ]
    assert rej.filter(pl.col("row") == 4)["timestamp_raw"].to_list() == ["soon"]
    assert m["rows_read"] == 8 and m["rows_kept"] == 2
    assert m["rows_rejected"] == {
        "exact duplicate": 2,
        "missing item_id": 1,
        "missing user_id": 2,
        "unparsable timestamp": 1,
    }


def test_manifest_on_sample_base(pipeline) -> None:
    src = SAMPLE / "base.csv"
    with open(src, newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))[1:]
    out = pipeline.events["base"]
    m = json.loads(out.with_name("base.manifest.json").read_text())
    df = read(out)
    assert m["inputs"] == [str(src)]
    assert m["rows_read"] == len(lines)
    assert m["rows_rejected"] == {
        "exact duplicate": 3,
        "missing item_id": 1,
        "missing user_id": 3,
        "unparsable timestamp": 1,
    }
    assert m["rows_kept"] == df.height == len(lines) - 8
    assert m["users"] == df["user_id"].n_unique() and m["items"] == df["item_id"].n_unique()
    assert m["event_types"] == dict(df.group_by("event_type").len().iter_rows())
    assert m["time_min"] == df["timestamp"].min().isoformat() == "2026-03-01T00:00:39+00:00"
    assert m["time_max"] == df["timestamp"].max().isoformat() == "2026-03-10T23:59:59+00:00"
    assert m["sha256"] == sha256_file(out)
    assert df["timestamp"].is_sorted()
    assert df.columns == ["user_id", "item_id", "timestamp", "event_type", "weight", "category"]
    # Each reject points at its own data row of the CSV (row 1 = first line after the header).
    rej = read(out.with_name("base.rejects.parquet"))
    assert rej.height == 8
    for row in rej.iter_rows(named=True):
        assert row["source"] == str(src)
        user, item, _event, ts, _cat = lines[row["row"] - 1]
        assert (user or None, item or None, ts) == (row["user_id"], row["item_id"], row["timestamp_raw"])
    # The summary line on stderr.
    assert pipeline.results["preprocess base"].stderr.startswith(
        f"preprocess: kept {len(lines) - 8:,} of {len(lines):,} rows (rejected: 3 exact duplicate, "
        "1 missing item_id, 3 missing user_id, 1 unparsable timestamp); "
    )


def test_output_is_sorted_by_time_with_ties_in_input_order(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "log.csv",
        HEADER,
        [
            ("u1", "late", "300", "view"),
            ("u1", "tie1", "200", "view"),
            ("u2", "early", "100", "view"),
            ("u3", "tie2", "200", "view"),
        ],
    )
    preprocess([tmp_path / "log.csv"], tmp_path / "ev.parquet")
    assert read(tmp_path / "ev.parquet")["item_id"].to_list() == ["early", "tie1", "tie2", "late"]


def test_multiple_inputs_directories_and_globs(cli, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write_csv(logs / "a.csv", HEADER, [("u1", "i1", "300", "view")])
    write_csv(logs / "b.csv", HEADER, [("u2", "i2", "100", "view")])
    (logs / "notes.txt").write_text("not data")
    pl.DataFrame(
        {"user_id": [3], "item_id": [3], "timestamp": [dt.datetime(1970, 1, 1, 0, 3, 20)], "event_type": ["cart"]}
    ).write_parquet(tmp_path / "c.parquet")

    def run(*inputs: object) -> dict:
        out = tmp_path / "ev.parquet"
        r = cli("preprocess", *inputs, "-o", out, "-q")
        assert r.exit_code == 0, r.stderr
        return json.loads(out.with_name("ev.manifest.json").read_text())

    m = run(logs)  # a directory: its CSV/Parquet files, sorted; notes.txt ignored
    assert m["inputs"] == [str(logs / "a.csv"), str(logs / "b.csv")] and m["rows_kept"] == 2
    m = run(f"{logs}/*.csv", tmp_path / "c.parquet")
    assert m["inputs"] == [str(logs / "a.csv"), str(logs / "b.csv"), str(tmp_path / "c.parquet")]
    df = read(tmp_path / "ev.parquet")
    assert df["user_id"].to_list() == ["u2", "3", "u1"]  # one log, sorted by time
    assert df["weight"].to_list() == [1.0, 3.0, 1.0]
    m = run(logs / "b.csv", logs / "a.csv")  # explicit files keep the order given
    assert m["inputs"] == [str(logs / "b.csv"), str(logs / "a.csv")]


def test_days_by_glob_match_the_files_one_by_one(cli, tmp_path: Path) -> None:
    for d in (11, 12):
        shutil.copy(SAMPLE / f"day{d}.csv", tmp_path / f"day{d}.csv")
    r = cli("preprocess", f"{tmp_path}/day1*.csv", "-o", tmp_path / "both.parquet", "-q")
    assert r.exit_code == 0, r.stderr
    both = json.loads((tmp_path / "both.manifest.json").read_text())
    singles = []
    for d in (11, 12):
        r = cli("preprocess", tmp_path / f"day{d}.csv", "-o", tmp_path / f"d{d}.parquet", "-q")
        assert r.exit_code == 0, r.stderr
        singles.append(json.loads((tmp_path / f"d{d}.manifest.json").read_text()))
    assert both["rows_read"] == sum(s["rows_read"] for s in singles)
    assert both["rows_kept"] == sum(s["rows_kept"] for s in singles)
    assert both["time_min"] == singles[0]["time_min"] and both["time_max"] == singles[1]["time_max"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["missing.csv"], "{d}/missing.csv: no such file; check the path"),
        (["{d}/*.tsv"], "{d}/*.tsv: no file matches this pattern"),
        (["{d}/empty"], "{d}/empty: directory holds no .csv or .parquet files"),
    ],
)
def test_inputs_that_match_nothing(tmp_path: Path, inputs: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    paths = [i.format(d=tmp_path) if "{d}" in i else str(tmp_path / i) for i in inputs]
    with pytest.raises(BadInputError) as e:
        preprocess(paths, tmp_path / "ev.parquet")
    assert str(e.value) == message.format(d=tmp_path)
    assert only_files(tmp_path) == ["empty"]


def test_config_rejects_unknown_time_unit() -> None:
    with pytest.raises(UsageError):
        PreprocessConfig(time_unit="days")


def test_rerun_on_a_directory_ignores_its_own_outputs(tmp_path: Path) -> None:
    write_csv(tmp_path / "log.csv", HEADER, [("u1", "i1", "1", "view"), ("u2", "i2", "2", "cart")])
    first = preprocess([tmp_path], tmp_path / "events.parquet")
    second = preprocess([tmp_path], tmp_path / "events.parquet")
    assert first["inputs"] == second["inputs"] == [str(tmp_path / "log.csv")]
    assert second["rows_kept"] == 2 and second["sha256"] == first["sha256"]
