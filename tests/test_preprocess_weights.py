"""preprocess --weight-col (each event's weight from a column, e.g. a rating) and --min-weight
(keep positives only), issue 13 point 10."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, only_files, write_csv

from recinc_cli.config import PreprocessConfig
from recinc_cli.data.preprocess import preprocess

HEADER = ("user_id", "item_id", "timestamp", "rating")
RATINGS = [
    ("u1", "i1", "1", "5"),
    ("u1", "i2", "2", "3"),
    ("u2", "i1", "3", ""),  # missing weight
    ("u2", "i3", "4", "abc"),  # unparsable weight
    ("u3", "i1", "5", "-1"),  # negative weight
    ("u3", "i2", "6", " 4.5 "),
    ("u3", "i3", "7", "nan"),  # unparsable weight
    ("u4", "i2", "8", "4"),
    ("u4", "i4", "9", "0"),
]


def manifest(out: Path) -> dict:
    return json.loads(out.with_name(out.name.removesuffix(".parquet") + ".manifest.json").read_text())


def test_weight_col_is_the_weight_and_bad_values_are_rejects(cli, tmp_path: Path) -> None:
    log, out = write_csv(tmp_path / "r.csv", HEADER, RATINGS), tmp_path / "ev.parquet"
    r = cli("preprocess", log, "-o", out, "--weight-col", "rating")
    assert r.exit_code == 0, r.stderr
    df = pl.read_parquet(out)
    assert df["item_id"].to_list() == ["i1", "i2", "i2", "i2", "i4"]
    assert df["weight"].to_list() == [5.0, 3.0, 4.5, 4.0, 0.0]
    assert df.columns == ["user_id", "item_id", "timestamp", "event_type", "weight"]  # rating is the weight now
    assert df.schema["weight"] == pl.Float32 and set(df["event_type"]) == {"interaction"}
    rej = pl.read_parquet(tmp_path / "ev.rejects.parquet")
    assert rej.columns[-1] == "weight_raw"
    assert rej.select("row", "reason", "weight_raw").rows() == [
        (3, "missing weight", None),
        (4, "unparsable weight", "abc"),
        (5, "negative weight", "-1"),
        (7, "unparsable weight", "nan"),
    ]
    m = manifest(out)
    assert (m["rows_read"], m["rows_kept"], m["rows_below_min_weight"]) == (9, 5, 0)
    assert m["rows_rejected"] == {"missing weight": 1, "negative weight": 1, "unparsable weight": 2}
    assert (m["weight_col"], m["min_weight"]) == ("rating", None)
    assert r.stderr == (
        "preprocess: kept 5 of 9 rows (rejected: 1 missing weight, 1 negative weight, 2 unparsable weight); 3 users, "
        f"3 items, 1970-01-01T00:00:01+00:00 .. 1970-01-01T00:00:09+00:00 -> {out}\n"
    )


def test_min_weight_keeps_positives_and_counts_the_rest(cli, tmp_path: Path) -> None:
    log, out = write_csv(tmp_path / "r.csv", HEADER, RATINGS), tmp_path / "ev.parquet"
    r = cli("preprocess", log, "-o", out, "--weight-col", "rating", "--min-weight", "4")
    assert r.exit_code == 0, r.stderr
    df = pl.read_parquet(out)
    assert df.select("user_id", "item_id", "weight").rows() == [("u1", "i1", 5.0), ("u3", "i2", 4.5), ("u4", "i2", 4.0)]
    m = manifest(out)
    # Read = kept + rejected + below --min-weight; the two light rows are not rejects.
    assert (m["rows_read"], m["rows_kept"], m["rows_below_min_weight"], m["min_weight"]) == (9, 3, 2, 4.0)
    assert sum(m["rows_rejected"].values()) == 4
    assert pl.read_parquet(tmp_path / "ev.rejects.parquet").height == 4
    assert r.stderr == (
        "preprocess: kept 3 of 9 rows (rejected: 1 missing weight, 1 negative weight, 2 unparsable weight; "
        f"2 below --min-weight 4); 3 users, 2 items, 1970-01-01T00:00:01+00:00 .. 1970-01-01T00:00:08+00:00 -> {out}\n"
    )


def test_min_weight_applies_to_event_type_weights_too(tmp_path: Path) -> None:
    log = write_csv(
        tmp_path / "log.csv",
        ("user_id", "item_id", "timestamp", "event_type"),
        [("u1", "i1", "1", "view"), ("u1", "i2", "2", "cart"), ("u1", "i3", "3", "purchase"), ("u1", "i4", "4", "fav")],
    )
    m = preprocess([log], tmp_path / "ev.parquet", PreprocessConfig(min_weight=3))
    assert pl.read_parquet(tmp_path / "ev.parquet")["item_id"].to_list() == ["i2", "i3"]
    assert (m["rows_kept"], m["rows_below_min_weight"], m["rows_rejected"], m["weight_col"]) == (2, 2, {}, None)


def test_parquet_weight_columns(tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    src = tmp_path / "ratings.parquet"
    pl.DataFrame(
        {
            "user_id": [1, 2, 3],
            "item_id": [7, 8, 9],
            "timestamp": [t0, t0, t0],
            "rating": pl.Series([4, None, 2], dtype=pl.Int8),
            "score": ["1.5", "x", "2"],
            "when": [t0, t0, t0],
        }
    ).write_parquet(src)
    m = preprocess([src], tmp_path / "a.parquet", PreprocessConfig(weight_col="rating"))
    assert pl.read_parquet(tmp_path / "a.parquet")["weight"].to_list() == [4.0, 2.0]
    assert m["rows_rejected"] == {"missing weight": 1}
    m = preprocess([src], tmp_path / "b.parquet", PreprocessConfig(weight_col="score", min_weight=2))
    assert pl.read_parquet(tmp_path / "b.parquet")["weight"].to_list() == [2.0]
    assert (m["rows_rejected"], m["rows_below_min_weight"]) == ({"unparsable weight": 1}, 1)
    assert "rating" in pl.read_parquet(tmp_path / "b.parquet").columns  # only the weight column is used up


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--weight-col", "stars"], 3,
         "{log}: column 'stars' not found (columns: user_id, item_id, timestamp, rating); name it with --weight-col"),
        (["--weight-col", "rating", "--event-weights", "view=1"], 2,
         "--weight-col takes each event's weight from a column; drop --event-weights and --only-events"),
        (["--weight-col", "rating", "--only-events"], 2,
         "--weight-col takes each event's weight from a column; drop --event-weights and --only-events"),
        (["--min-weight", "-1"], 2, "--min-weight must be a number from 0 up (got -1)"),
        (["--min-weight", "inf"], 2, "--min-weight must be a number from 0 up (got inf)"),
        (["--weight-col", "rating", "--min-weight", "6"], 3,
         "{log}: no usable rows (9 read, rejected: {{'missing weight': 1, 'negative weight': 1, "
         "'unparsable weight': 2}}; 5 below --min-weight 6)"),
    ],
)  # fmt: skip
def test_weight_errors_write_nothing(
    cli, expect_error, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    log = write_csv(tmp_path / "r.csv", HEADER, RATINGS)
    expect_error(cli("preprocess", log, "-o", tmp_path / "ev.parquet", *args), code, message.format(log=log))
    assert only_files(tmp_path) == ["r.csv"]


def test_a_weight_column_that_holds_no_numbers(cli, expect_error, tmp_path: Path) -> None:
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    src = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": [t0], "when": [t0]}).write_parquet(src)
    r = cli("preprocess", src, "-o", tmp_path / "ev.parquet", "--weight-col", "when")
    expect_error(
        r,
        3,
        f"{src}: column 'when' holds Datetime(time_unit='us', time_zone='UTC'); --weight-col needs a column of numbers",
    )
    assert only_files(tmp_path) == ["log.parquet"]


def test_movielens_100k_positives(cli, tmp_path: Path) -> None:
    src = REPO.parent / "shared" / "data" / "ml-100k.parquet"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    out = tmp_path / "pos.parquet"
    r = cli("preprocess", src, "-o", out, "--time-unit", "s", "--weight-col", "rating", "--min-weight", "4", "-q")
    assert (r.exit_code, r.stderr) == (0, "")
    m = manifest(out)
    # shared/data/README.md: 34,174 ratings of 4 and 21,201 of 5.
    assert (m["rows_read"], m["rows_kept"], m["rows_below_min_weight"]) == (100_000, 55_375, 44_625)
    assert m["rows_rejected"] == {}
    assert pl.read_parquet(out)["weight"].value_counts().sort("weight").rows() == [(4.0, 34_174), (5.0, 21_201)]
