"""The databases the --db tests read: SQLite files written here, and a real MariaDB/MySQL server.

The server is the one ``.ci/run`` starts (``.ci/mariadb start``), named by
``RECINC_TEST_MYSQL_URI``. Where that is unset the server tests skip, unless
``RECINC_REQUIRE_DB_SERVER=1`` (CI sets it) makes them fail: CI never skips them.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

MYSQL_ENV = "RECINC_TEST_MYSQL_URI"
REQUIRE_ENV = "RECINC_REQUIRE_DB_SERVER"


def mysql_uri() -> str:
    """The test server's URI; skips the test (fails it under CI) when there is none."""
    uri = os.environ.get(MYSQL_ENV)
    if not uri:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {MYSQL_ENV} is unset: .ci/run starts the server and sets it")
        pytest.skip(f"{MYSQL_ENV} is unset (.ci/run starts a MariaDB server and sets it)")
    return uri


def _sql_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "BIGINT"
    if dtype.is_float():
        return "DOUBLE"
    return "TEXT"


def sqlite_table(path: Path, table: str, df: pl.DataFrame) -> str:
    """Write ``df`` as ``table`` of the SQLite file ``path``; return the ``--db`` URI."""
    con = sqlite3.connect(path)
    cols = ", ".join(f'"{c}" {_sql_type(t)}' for c, t in df.schema.items())
    con.execute(f'CREATE TABLE "{table}" ({cols})')
    marks = ", ".join("?" * df.width)
    con.executemany(f'INSERT INTO "{table}" VALUES ({marks})', df.iter_rows())
    con.commit()
    con.close()
    return f"sqlite:///{path}"


@pytest.fixture
def mysql_table() -> Iterator:
    """``make(df)`` loads ``df`` into a fresh table of the test server and returns (uri, table);
    every table made is dropped afterwards."""
    from sqlalchemy import create_engine, text

    uri = mysql_uri()
    engine = create_engine(uri)
    made: list[str] = []

    def make(df: pl.DataFrame, types: dict[str, str] | None = None) -> tuple[str, str]:
        table = f"t_{uuid.uuid4().hex[:12]}"
        kinds = {c: (types or {}).get(c) or _sql_type(t).replace("TEXT", "VARCHAR(255)") for c, t in df.schema.items()}
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {table} ({', '.join(f'`{c}` {k}' for c, k in kinds.items())})"))
            made.append(table)
            marks = ", ".join(f":{c}" for c in df.columns)
            for lo in range(0, df.height, 20_000):
                conn.execute(text(f"INSERT INTO {table} VALUES ({marks})"), df.slice(lo, 20_000).to_dicts())
        return uri, table

    yield make
    with engine.begin() as conn:
        for table in made:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
