"""Events from a SQL database: a table or a query, read in batches into a Parquet file that
:func:`~recinc_cli.data.preprocess.preprocess` then cleans like any other input.

URIs are SQLAlchemy's, ``dialect+driver://user:password@host:port/database``:

- ``sqlite:///events.db`` (Python's own sqlite3: nothing to install, no server);
- ``mysql+pymysql://recinc@db.internal:3306/shop`` (MySQL and MariaDB; ``pip install 'recinc[mysql]'``);
- ``postgresql+psycopg://recinc@db.internal/shop`` (``pip install 'recinc[postgres]'``).

A password left out of the URI is read from :data:`PASSWORD_ENV`. Messages name the source
with its password masked, and any text a driver returns has the password scrubbed too.

Rows come through a server-side cursor (SQLAlchemy's ``stream_results``) ``batch_rows`` at a
time, and each batch is written to a Parquet part before the next is fetched: the table is never
whole in memory. A streaming polars sink then joins the parts into one file, whose row ``n``
is the result's row ``n`` (what ``OUT.rejects.parquet`` reports).

``since`` keeps only rows whose time column is after it, in the query itself where the
column's values allow (a datetime, a date, a number of unix seconds/ms/us, or ISO text), so a
nightly pull reads one day, not the whole table; ``preprocess`` applies the exact cut again after
parsing the times.

>>> import sqlite3, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> con = sqlite3.connect(d / "log.db")
>>> _ = con.execute("CREATE TABLE ev (user_id TEXT, item_id TEXT, timestamp INTEGER)")
>>> _ = con.executemany("INSERT INTO ev VALUES (?, ?, ?)", [("u1", "i1", 1772359200), ("u2", "i1", 1772359300)])
>>> con.commit(); con.close()
>>> since = dt.datetime(2026, 3, 1, 10, 0, 50, tzinfo=dt.timezone.utc)
>>> export(DbSource(f"sqlite:///{d / 'log.db'}", table="ev"), "timestamp", since, d / "ev.parquet", d / "parts")
1
>>> pl.read_parquet(d / "ev.parquet")["user_id"].to_list()
['u2']
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from recinc_cli.errors import BadInputError, DatabaseError, UsageError

if TYPE_CHECKING:  # sqlalchemy is imported when a database is read: start-up time of every other command
    from sqlalchemy.engine import URL, Connection

#: Where a password left out of ``--db``'s URI is read from.
PASSWORD_ENV = "RECINC_DB_PASSWORD"
#: Rows fetched and written at once: about 20 MB of events in Python objects.
BATCH_ROWS = 100_000
#: The drivers recinc's extras install, by the URI's dialect.
_EXTRAS = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgres"}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class DbSource:
    """Where ``preprocess --db`` reads: ``uri`` and either ``table`` (``schema.table`` allowed)
    or ``query`` (a SELECT), read ``batch_rows`` rows at a time."""

    uri: str
    table: str | None = None
    query: str | None = None
    batch_rows: int = BATCH_ROWS

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise UsageError("--db needs one of --table NAME or --query SQL")
        if self.batch_rows < 1:
            raise UsageError(f"--batch-rows must be at least 1 (got {self.batch_rows})")
        if self.query is not None:
            _query_text(self.query)  # a statement that is no SELECT: refused before connecting


def describe(src: DbSource) -> str:
    """The source as messages and the rejects' ``source`` column name it, password masked.

    >>> describe(DbSource("mysql+pymysql://ana:s3cret@db:3306/shop", table="events"))
    'mysql+pymysql://ana:***@db:3306/shop table events'
    """
    what = f"table {src.table}" if src.table is not None else "query"
    return f"{_url(src.uri).render_as_string(hide_password=True)} {what}"


def export(src: DbSource, time_col: str, since: dt.datetime | None, dest: Path, scratch: Path) -> int:
    """Write the rows of ``src`` to the Parquet file ``dest``; return how many.

    ``since`` (aware): rows of ``time_col`` after it only, as far as the query can tell (see
    the module's docstring); ``scratch`` (created) holds the parts.
    Raises :class:`DatabaseError` (exit 10) when the server cannot be reached or refuses the
    login, :class:`BadInputError` (exit 3) for a missing database file, table or column or a
    failing query, :class:`UsageError` (exit 2) for a URI that is none or a driver not installed.
    """
    url = _url(src.uri)
    name = describe(src)
    in_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if in_file and not Path(str(url.database)).is_file():  # sqlite3 would create an empty database
        raise BadInputError(f"{name}: no such database file; check the path in --db")
    from sqlalchemy.exc import SQLAlchemyError

    engine = _engine(url, name)
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        try:
            conn = engine.connect()
        except (SQLAlchemyError, OSError) as e:
            raise DatabaseError(
                f"{name}: cannot connect ({_said(e, url)}); check the server, the URI and the password"
            ) from e
        with conn:
            parts = list(_write_parts(conn, src, time_col, since, scratch, name, url))
    finally:
        engine.dispose()
    return _join(parts, dest, name)


def _url(uri: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except ArgumentError:
        masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", uri)
        raise UsageError(
            f"--db {masked}: not a database URI; give one like sqlite:///events.db or mysql+pymysql://user@host/db"
        ) from None
    if url.password is None and url.username and os.environ.get(PASSWORD_ENV):
        url = url.set(password=os.environ[PASSWORD_ENV])
    return url


def _engine(url: URL, name: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import NoSuchModuleError

    try:
        return create_engine(url)
    except (NoSuchModuleError, ModuleNotFoundError) as e:
        extra = _EXTRAS.get(url.get_backend_name())
        hint = f"pip install 'recinc[{extra}]'" if extra else "install the driver the URI names"
        raise UsageError(f"{name}: no driver for this URI ({_said(e, url)}); {hint}") from e


def _said(e: BaseException, url: URL) -> str:
    """A driver's message, first line only, without the password whatever the driver quoted."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    if url.password:
        line = line.replace(str(url.password), "***")
    return line


def _write_parts(
    conn: Connection, src: DbSource, time_col: str, since: dt.datetime | None, scratch: Path, name: str, url: URL
) -> Iterator[Path]:
    """Run the query and write each batch of rows to a Parquet part in ``scratch``."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    try:
        sql, params = _select(conn, src, time_col, since)
        result = conn.execution_options(stream_results=True, max_row_buffer=src.batch_rows).execute(text(sql), params)
        columns = list(result.keys())
        for k, rows in enumerate(result.partitions(src.batch_rows)):
            part = scratch / f"part_{k:06d}.parquet"
            _frame(rows, columns).write_parquet(part)
            yield part
        if not columns:
            raise BadInputError(f"{name}: the query returns no columns; select the event columns")
    except DBAPIError as e:
        if e.connection_invalidated:
            raise DatabaseError(f"{name}: the connection was lost ({_said(e, url)}); run again") from e
        raise BadInputError(f"{name}: the database refused the query ({_said(e, url)}); check --table/--query") from e
    except SQLAlchemyError as e:
        raise BadInputError(f"{name}: cannot read ({_said(e, url)}); check --table/--query") from e


def _select(conn: Connection, src: DbSource, time_col: str, since: dt.datetime | None) -> tuple[str, dict[str, Any]]:
    """The SELECT to run and its parameters: with ``since``, a WHERE on ``time_col`` of the
    type its values have (from one non-null value)."""
    from sqlalchemy import text

    quote = conn.dialect.identifier_preparer.quote
    if src.table is not None:
        base = "SELECT * FROM " + ".".join(quote(part) for part in src.table.split("."))
    else:
        # A colon would start a bind parameter of text() ('10:00:00', PostgreSQL's ::date).
        base = _query_text(src.query or "").replace(":", "\\:")
    if since is None:
        return base, {}
    col = quote(time_col)
    probe = f"SELECT {col} FROM ({base}) AS recinc_probe WHERE {col} IS NOT NULL LIMIT 1"
    row = conn.execute(text(probe)).first()
    bound = _since_bound(row[0] if row else None, since)
    if bound is None:  # text that is not ISO, or no value yet: preprocess makes the cut
        return base, {}
    op, value = bound
    return f"SELECT * FROM ({base}) AS recinc_source WHERE {col} {op} :since", {"since": value}


def _query_text(query: str) -> str:
    """``query`` without a trailing semicolon; raises :class:`UsageError` unless it reads
    (SELECT or WITH): preprocess must never change the database it reads.

    >>> _query_text("  select * from ev; ")
    'select * from ev'
    """
    text = query.strip().rstrip(";").strip()
    if not re.match(r"(?is)^(\(\s*)*(select|with)\b", text):
        raise UsageError(f"--query must be a SELECT (or WITH ... SELECT) statement (got {text[:40]!r})")
    return text


def _since_bound(sample: Any, since: dt.datetime) -> tuple[str, Any] | None:
    """The comparison (operator, value) that keeps every row after ``since`` (aware) for a
    column holding values like ``sample``, or None when there is none to push into the query:
    it may keep a few more rows (text dates, a day early), never fewer.

    >>> t = dt.datetime(2026, 3, 1, 10, 0, 50, tzinfo=dt.timezone.utc)
    >>> _since_bound(1772359200, t), _since_bound(1772359200123, t)
    (('>', 1772359250.0), ('>', 1772359250000))
    >>> _since_bound("2026-03-01T10:00:00Z", t)
    ('>=', '2026-02-28')
    """
    since_ms = round(since.timestamp() * 1000)
    if isinstance(sample, dt.datetime):
        # A naive column holds UTC, as preprocess reads it.
        return ">", since if sample.tzinfo is not None else since.replace(tzinfo=None)
    if isinstance(sample, dt.date):
        return ">=", since.date()
    if isinstance(sample, int | float | decimal.Decimal) and not isinstance(sample, bool):
        # preprocess's rule for a unix time's unit: seconds below 1e11, ms below 1e14, else us.
        mag = abs(float(sample))
        return (">", since_ms / 1000) if mag < 1e11 else (">", since_ms) if mag < 1e14 else (">", since_ms * 1000)
    if isinstance(sample, str) and _ISO_DATE.match(sample.strip()):
        # ISO text sorts as time within one format and zone; a day early covers any offset.
        return ">=", (since - dt.timedelta(days=1)).date().isoformat()
    return None


def _frame(rows: Sequence[Any], columns: list[str]) -> pl.DataFrame:
    """One batch as a frame; decimals become floats (preprocess reads numbers as floats)."""
    data = {name: [row[j] for row in rows] for j, name in enumerate(columns)}
    df = pl.DataFrame(data, strict=False, infer_schema_length=None)
    return df.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def _join(parts: list[Path], dest: Path, name: str) -> int:
    """Concatenate ``parts`` into ``dest`` (streaming): a column typed differently in two
    batches (all null in one, say) is read as text; return the row count."""
    if not parts:
        raise BadInputError(f"{name}: no rows; nothing to preprocess")
    schemas = [pl.read_parquet_schema(p) for p in parts]
    names = list(schemas[0])
    target: dict[str, pl.DataType] = {}
    for col in names:
        kinds = {s[col] for s in schemas if s[col] != pl.Null}
        target[col] = kinds.pop() if len(kinds) == 1 else pl.String()
    frames = [pl.scan_parquet(p).cast(target) for p in parts]  # type: ignore[arg-type]
    pl.concat(frames, how="vertical").sink_parquet(dest)
    return sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in parts)
