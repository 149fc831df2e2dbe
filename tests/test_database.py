"""``preprocess --db``: a table or query of SQLite or a real MariaDB server gives the events
``preprocess`` gives for the same rows in a file; --since, rejects and every bad-input path."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, SAMPLE, only_files
from db_servers import sqlite_table

from recinc_cli.data.database import DbSource, export

ML100K = REPO.parent / "shared" / "data" / "ml-100k.parquet"


def content_sha256(path: Path) -> str:
    """sha256 of the rows sorted on every column, written as CSV: equal for equal rows whatever
    integer width a database gave an extra column."""
    df = pl.read_parquet(path)
    return hashlib.sha256(df.sort(df.columns).write_csv().encode()).hexdigest()


def manifest(out: Path) -> dict:
    return json.loads(out.with_name(out.name.removesuffix(".parquet") + ".manifest.json").read_text())


def sample_log() -> pl.DataFrame:
    return pl.read_csv(SAMPLE / "base.csv", infer_schema=False)  # every column as the text it is


def test_a_sqlite_table_gives_the_file_s_events(cli, tmp_path: Path) -> None:
    log = sample_log()
    log.write_csv(tmp_path / "log.csv")
    uri = sqlite_table(tmp_path / "shop.db", "events", log)
    assert cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "file.parquet", "-q").exit_code == 0
    r = cli("preprocess", "--db", uri, "--table", "events", "--batch-rows", "5000", "-o", tmp_path / "db.parquet")
    assert r.exit_code == 0, r.stderr
    assert content_sha256(tmp_path / "db.parquet") == content_sha256(tmp_path / "file.parquet")
    # Time order (ties in row order) is the same too, not just the set of rows.
    assert pl.read_parquet(tmp_path / "db.parquet").equals(pl.read_parquet(tmp_path / "file.parquet"))
    m, f = manifest(tmp_path / "db.parquet"), manifest(tmp_path / "file.parquet")
    assert m["inputs"] == [f"{uri} table events"] and m["rows_read"] == f["rows_read"] == log.height
    assert m["rows_rejected"] == f["rows_rejected"] and sum(m["rows_rejected"].values()) > 0
    rejects = [pl.read_parquet(tmp_path / f"{x}.rejects.parquet").drop("source") for x in ("db", "file")]
    assert rejects[0].equals(rejects[1])  # the same rows, reasons and row numbers
    assert only_files(tmp_path) == sorted(
        [
            "log.csv",
            "shop.db",
            *(f"{s}{x}" for s in ("file", "db") for x in (".parquet", ".rejects.parquet", ".manifest.json")),
        ]
    )


def test_a_query_reads_what_it_selects_and_a_colon_in_it_is_no_parameter(cli, tmp_path: Path) -> None:
    log = sample_log()
    uri = sqlite_table(tmp_path / "shop.db", "events", log)
    query = (
        "SELECT user_id, item_id, timestamp FROM events "
        "WHERE event_type = 'cart' AND timestamp >= '2026-03-05T12:00:00Z';"
    )
    r = cli("preprocess", "--db", uri, "--query", query, "-o", tmp_path / "carts.parquet", "-q")
    assert r.exit_code == 0, r.stderr
    want = log.filter((pl.col("event_type") == "cart") & (pl.col("timestamp") >= "2026-03-05T12:00:00Z"))
    got, m = pl.read_parquet(tmp_path / "carts.parquet"), manifest(tmp_path / "carts.parquet")
    assert m["rows_read"] == want.height > 0 and got.height == m["rows_kept"] > 0
    assert set(got["event_type"]) == {"interaction"} and m["inputs"] == [f"{uri} query"]


def test_rows_that_fail_cleaning_are_rejects_named_by_source_and_result_row(cli, tmp_path: Path) -> None:
    rows = pl.DataFrame(
        {
            "user_id": ["u1", None, "u2", "u3", "u1"],
            "item_id": ["i1", "i1", "i2", "i3", "i1"],
            "timestamp": [
                "2026-03-01T10:00:00Z",
                "2026-03-01T10:01:00Z",
                "soon",
                "2026-03-01T10:02:00Z",
                "2026-03-01T10:00:00Z",
            ],
        }
    )
    uri = sqlite_table(tmp_path / "shop.db", "ev", rows)
    r = cli("preprocess", "--db", uri, "--table", "ev", "--batch-rows", "2", "-o", tmp_path / "out.parquet", "-q")
    assert r.exit_code == 0, r.stderr
    assert pl.read_parquet(tmp_path / "out.parquet")["user_id"].to_list() == ["u1", "u3"]
    rej = pl.read_parquet(tmp_path / "out.rejects.parquet")
    assert rej.select("source", "row", "reason").rows() == [
        (f"{uri} table ev", 2, "missing user_id"),
        (f"{uri} table ev", 3, "unparsable timestamp"),
        (f"{uri} table ev", 5, "exact duplicate"),
    ]


def test_a_column_null_in_the_first_batch_and_numbers_later_is_read_as_text(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "a.db")
    con.execute("CREATE TABLE ev (user_id TEXT, item_id TEXT, timestamp INTEGER, price REAL)")
    rows = [(f"u{i}", "i1", 1772359200 + i, None if i < 3 else i * 1.5) for i in range(7)]
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    n = export(
        DbSource(f"sqlite:///{tmp_path / 'a.db'}", table="ev", batch_rows=3),
        "timestamp",
        None,
        tmp_path / "o.parquet",
        tmp_path / "p",
    )
    df = pl.read_parquet(tmp_path / "o.parquet")
    assert n == df.height == 7 and df["user_id"].to_list() == [f"u{i}" for i in range(7)]
    assert df["price"].dtype == pl.Float64 and df["price"].null_count() == 3


@pytest.mark.parametrize("kind", ["iso-text", "unix-seconds"])
def test_since_a_checkpoint_pulls_only_newer_rows(cli, pipeline, tmp_path: Path, kind: str) -> None:
    """The nightly job: --since the registry/checkpoint gives what is newer than its watermark."""
    log = pl.concat([pl.read_csv(SAMPLE / f, infer_schema=False) for f in ("base.csv", "day11.csv", "day12.csv")])
    if kind == "unix-seconds":
        log = log.with_columns(
            pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).dt.epoch("s").alias("timestamp")
        )
    uri = sqlite_table(tmp_path / "shop.db", "events", log)
    model = pipeline.ckpt[11]  # folded base and day 11
    r = cli("preprocess", "--db", uri, "--table", "events", "--since", model, "-o", tmp_path / "new.parquet")
    assert r.exit_code == 0, r.stderr
    new = pl.read_parquet(tmp_path / "new.parquet")
    day12 = pl.read_parquet(pipeline.events["day12"])
    assert (
        new.height == day12.height
        and new["timestamp"].min() > pl.read_parquet(pipeline.events["day11"])["timestamp"].max()
    )
    m = manifest(tmp_path / "new.parquet")
    # Pushed into the query: the older rows never left the database (text: from a day early).
    rejected = sum(m["rows_rejected"].values())
    assert m["rows_read"] - m["rows_not_after_since"] - rejected == m["rows_kept"] == day12.height
    day12_rows = pl.read_csv(SAMPLE / "day12.csv", infer_schema=False).height
    if kind == "unix-seconds":  # exact: every row read is day 12's (its unparsable times are NULL)
        assert m["rows_not_after_since"] == 0 and m["rows_read"] == day12_rows - 1
    else:  # ISO text from the day before the watermark's date: not the whole history
        since_day10 = log.filter(pl.col("timestamp").str.slice(0, 10) >= "2026-03-10").height
        assert 0 < m["rows_not_after_since"] <= since_day10 - day12_rows < log.height - day12_rows


def test_since_a_time_applies_to_files_too(cli, tmp_path: Path) -> None:
    r = cli("preprocess", SAMPLE / "day11.csv", "--since", "2026-03-11T12:00:00Z", "-o", tmp_path / "o.parquet")
    assert r.exit_code == 0, r.stderr
    df = pl.read_parquet(tmp_path / "o.parquet")
    m = manifest(tmp_path / "o.parquet")
    assert df["timestamp"].min().isoformat() > "2026-03-11T12:00:00+00:00"
    rejected = sum(m["rows_rejected"].values())
    assert m["rows_not_after_since"] > 0 and m["rows_read"] == m["rows_kept"] + m["rows_not_after_since"] + rejected
    assert f"{m['rows_not_after_since']:,} not after --since 2026-03-11T12:00:00+00:00" in r.stderr


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (
            ["--db", "sqlite:///{d}/none.db", "--table", "ev"],
            3,
            r"sqlite:///.*/none\.db table ev: no such database file; .*",
        ),
        (
            ["--db", "sqlite:///{d}/shop.db", "--table", "nope"],
            3,
            r".* table nope: the database refused the query \(no such table: nope\); .*",
        ),
        (
            ["--db", "sqlite:///{d}/shop.db", "--query", "SELECT user_id, timestamp FROM events"],
            3,
            r".* query: column 'item_id' not found \(columns: user_id, timestamp\); name it with --item-col",
        ),
        (["--db", "sqlite:///{d}/shop.db", "--query", "SELEC * FROM events"], 2, r"--query must be a SELECT .*"),
        (["--db", "sqlite:///{d}/shop.db", "--query", "DELETE FROM events"], 2, r"--query must be a SELECT .*"),
        (["--db", "sqlite:///{d}/shop.db"], 2, r"--db needs one of --table NAME or --query SQL"),
        (["--db", "sqlite:///{d}/shop.db", "--table", "events", "{d}/log.csv"], 2, r"give INPUTS \(files\) or --db.*"),
        (["--table", "events"], 2, r"--table and --query read from a database: give --db URI too"),
        (["--db", "nonsense:pw@", "--table", "ev"], 2, r"--db .*: not a database URI; .*"),
        (["--db", "oracle+nodriver://u@h/db", "--table", "ev"], 2, r".*: no driver for this URI .*"),
        (["--db", "sqlite:///{d}/shop.db", "--table", "events", "--since", "yesterday"], 2, r"--since 'yesterday': .*"),
    ],
)
def test_bad_sources_are_one_line_and_write_nothing(cli, expect_error, tmp_path: Path, args, code, pattern) -> None:
    sqlite_table(tmp_path / "shop.db", "events", sample_log().head(50))
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\nu,i,1\n")
    before = only_files(tmp_path)
    r = cli("preprocess", *[a.format(d=tmp_path) for a in args], "-o", tmp_path / "out.parquet")
    expect_error(r, code, pattern=pattern)
    assert only_files(tmp_path) == before


@pytest.mark.parametrize(
    ("uri", "env", "secret"),
    [
        ("mysql+pymysql://ana:s3cr3t-pw@127.0.0.1:1/shop", None, "s3cr3t-pw"),  # in the URI
        ("mysql+pymysql://ana@127.0.0.1:1/shop", {"RECINC_DB_PASSWORD": "from-env-pw"}, "from-env-pw"),
    ],
)
def test_an_unreachable_server_exits_10_without_the_password(
    cli, expect_error, tmp_path: Path, uri, env, secret
) -> None:
    r = cli("preprocess", "--db", uri, "--table", "ev", "-o", tmp_path / "o.parquet", env=env)
    text = expect_error(r, 10, pattern=r"mysql\+pymysql://ana:\*\*\*@127\.0\.0\.1:1/shop table ev: cannot connect .*")
    assert secret not in text and not list(tmp_path.iterdir())


# -- a real MariaDB/MySQL server (.ci/run starts one) --------------------------------------------


def test_a_mariadb_table_gives_the_file_s_events(cli, mysql_table, tmp_path: Path) -> None:
    log = sample_log()
    log.write_csv(tmp_path / "log.csv")
    uri, table = mysql_table(log)
    assert cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "file.parquet", "-q").exit_code == 0
    r = cli("preprocess", "--db", uri, "--table", table, "--batch-rows", "7000", "-o", tmp_path / "db.parquet", "-q")
    assert r.exit_code == 0, r.stderr
    assert pl.read_parquet(tmp_path / "db.parquet").equals(pl.read_parquet(tmp_path / "file.parquet"))
    masked = uri.replace(uri.split(":")[2].split("@")[0], "***")
    assert manifest(tmp_path / "db.parquet")["inputs"] == [f"{masked} table {table}"]


def test_mariadb_since_is_pushed_into_the_query_on_a_datetime_column(cli, mysql_table, tmp_path: Path) -> None:
    log = sample_log().with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).dt.replace_time_zone(None)
    )
    uri, table = mysql_table(log, types={"timestamp": "DATETIME"})
    r = cli(
        "preprocess",
        "--db",
        uri,
        "--table",
        table,
        "--since",
        "2026-03-09T00:00:00Z",
        "-o",
        tmp_path / "o.parquet",
        "-q",
    )
    assert r.exit_code == 0, r.stderr
    m = manifest(tmp_path / "o.parquet")
    newer = log.filter(pl.col("timestamp") > pl.datetime(2026, 3, 9)).height
    rejected = sum(m["rows_rejected"].values())
    assert m["rows_read"] == newer > 0 and m["rows_kept"] == newer - rejected and m["rows_not_after_since"] == 0


def test_mariadb_bad_login_missing_table_and_query_error(cli, expect_error, mysql_table, tmp_path: Path) -> None:
    uri, table = mysql_table(sample_log().head(10))
    user, host = uri.split("//")[1].split(":")[0], uri.split("@")[1]
    bad = f"mysql+pymysql://{user}:wrong-pw-123@{host}"
    text = expect_error(cli("preprocess", "--db", bad, "--table", table, "-o", tmp_path / "o.parquet"), 10)
    assert "cannot connect" in text and "Access denied" in text and "wrong-pw-123" not in text
    text = expect_error(cli("preprocess", "--db", uri, "--table", "no_such_table", "-o", tmp_path / "o.parquet"), 3)
    assert "the database refused the query" in text and "no_such_table" in text
    text = expect_error(
        cli("preprocess", "--db", uri, "--query", f"SELECT nope FROM {table}", "-o", tmp_path / "o.parquet"), 3
    )
    assert "Unknown column" in text
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not ML100K.is_file(), reason=f"{ML100K} is absent")
@pytest.mark.parametrize("where", ["sqlite", "mariadb"])
def test_movielens_100k_from_a_database_equals_the_parquet_file(cli, request, tmp_path: Path, where: str) -> None:
    """Acceptance: ml-100k loaded into each database gives the same events Parquet (same rows,
    same sha256 of the sorted content) as preprocess of the Parquet file."""
    src = pl.read_parquet(ML100K)
    if where == "sqlite":
        uri, table = sqlite_table(tmp_path / "ml.db", "ratings", src), "ratings"
    else:
        uri, table = request.getfixturevalue("mysql_table")(src)
    assert cli("preprocess", ML100K, "--time-unit", "s", "-o", tmp_path / "file.parquet", "-q").exit_code == 0
    r = cli("preprocess", "--db", uri, "--table", table, "--time-unit", "s", "-o", tmp_path / "db.parquet", "-q")
    assert r.exit_code == 0, r.stderr
    assert manifest(tmp_path / "db.parquet")["rows_kept"] == 100_000
    assert content_sha256(tmp_path / "db.parquet") == content_sha256(tmp_path / "file.parquet")
