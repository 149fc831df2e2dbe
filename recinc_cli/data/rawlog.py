"""Open one raw input of ``preprocess``: check what the file is, read its header, scan its rows.

A CSV is scanned by polars (streaming), every field as text. Its first bytes are checked first,
so that a wrong file gets a message saying what it is and what to do: empty, zip/zstd/UTF-16,
binary, bare-CR line endings, a header that is not UTF-8, a duplicated column name. gzip is
read as is, whatever the file's name. Rows polars reads but that are malformed get a reject
reason in ``_flag``: a non-empty field past the header's last column ("wrong number of
fields"), a blank line ("empty row"), bytes that are not UTF-8 ("not valid UTF-8"). A row with
fewer fields than the header is padded with empty fields and judged on what it holds.

A file polars cannot parse at all (a stray or unterminated quote) is read again by
:func:`read_csv_python`, Python's csv module in a loop: slower, so only for such files. It marks
the broken records "bad quoting" and keeps the rest.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "log.csv").write_text("user_id,item_id,timestamp\\nu1,i1,1,extra\\n\\nu2,i2,2\\n")
>>> scan_raw(d / "log.csv", PreprocessConfig()).collect()["_flag"].to_list()
['wrong number of fields', 'empty row', None]
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import inspect
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from recinc_cli.config import PreprocessConfig
from recinc_cli.data.io import _first_line, is_parquet
from recinc_cli.errors import BadInputError

#: Column of the scanned frame holding a structural reject reason (null for a sound row).
FLAG = "_flag"
#: Polars errors that mean "cannot parse"; a panic on hostile bytes is one too.
POLARS_ERRORS: tuple[type[BaseException], ...] = (pl.exceptions.PolarsError, pl.exceptions.PanicException)

_EXTRA = "__recinc_extra__"  # the first field past the header's last column
_HEAD_BYTES = 1 << 20
_BATCH_ROWS = 100_000
_BOM = b"\xef\xbb\xbf"
_GZIP = b"\x1f\x8b"
_GZIP_ERRORS = (OSError, EOFError, zlib.error)  # what a damaged gzip stream raises
_UTF16 = "is UTF-16 text; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"
#: Start of a file -> what it is and what to do; gzip is read as is and is not listed.
_NOT_CSV = (
    (b"PK\x03\x04", "is a zip archive (an .xlsx workbook is one), not CSV; unzip it or export the sheet as CSV"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed; decompress it first (zstd -d)"),
    (b"\xff\xfe", _UTF16),
    (b"\xfe\xff", _UTF16),
)
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: Recent polars refuses a schema wider than the first row unless told to fill the missing
#: columns with nulls; older releases (no such option) fill them anyway.
_PAD_SHORT_ROWS: dict[str, Any] = (
    {"missing_columns": "insert"} if "missing_columns" in inspect.signature(pl.scan_csv).parameters else {}
)


def scan_raw(path: Path, cfg: PreprocessConfig) -> pl.LazyFrame:
    """Lazy frame of one input: its own columns plus ``_flag`` (String, null for sound rows).

    CSV columns are all String. Raises :class:`BadInputError` naming the file, and the column
    where one is at fault, when the file cannot be used at all; nothing is read past the header.
    """
    if is_parquet(path):
        try:
            lf = pl.scan_parquet(path)
            schema = lf.collect_schema()
        except POLARS_ERRORS as e:
            raise BadInputError(f"{path}: cannot read Parquet ({_first_line(e)})") from e
        _check_columns(path, schema.names(), cfg)
        _check_types(path, schema, cfg)
        return lf.with_columns(pl.lit(None, pl.String).alias(FLAG))
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        raise BadInputError(
            f"{path}: named {path.suffix} but is not a Parquet file (no PAR1 header); "
            "if it holds CSV text, rename it to .csv"
        )
    sep = separator_of(path, cfg)
    names = read_header(path, sep)
    _check_columns(path, names, cfg, sep)
    lf = pl.scan_csv(
        path,
        has_header=False,
        skip_rows=1,
        separator=sep,
        schema=_csv_schema(names),
        truncate_ragged_lines=True,  # the first extra field lands in _EXTRA, the rest is cut
        encoding="utf8-lossy",  # bad bytes become U+FFFD and that row a reject, not a dead run
        raise_if_empty=False,
        **_PAD_SHORT_ROWS,
    )
    return lf.with_columns(_flag_expr(names, None)).drop(_EXTRA)


def separator_of(path: Path, cfg: PreprocessConfig) -> str:
    """``--separator`` if given, else a tab for ``.tsv`` (``.tsv.gz``) files and a comma."""
    if cfg.separator is not None:
        return cfg.separator
    return "\t" if ".tsv" in (s.lower() for s in path.suffixes) else ","


def csv_parses(path: Path, cfg: PreprocessConfig) -> bool:
    """Whether polars parses every field of ``path`` (a full read; Parquet counts as parsing)."""
    if is_parquet(path):
        return True
    try:
        scan_raw(path, cfg).select(pl.all().null_count()).collect()
    except POLARS_ERRORS:
        return False
    return True


def read_header(path: Path, sep: str) -> list[str]:
    """Column names of a CSV's first line, stripped; raises :class:`BadInputError` saying why
    the file is no CSV, or the header unusable. A trailing separator adds no column.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = p.write_bytes(b"\\xef\\xbb\\xbf user_id ,item_id,,ts,\\r\\n")
    >>> read_header(p, ",")
    ['user_id', 'item_id', 'column_3', 'ts']
    """
    head = _read_head(path)
    if not head:
        raise BadInputError(
            f"{path}: cannot read (the file is empty; it needs a header line like user_id,item_id,timestamp)"
        )
    for magic, what in _NOT_CSV:
        if head.startswith(magic):
            raise BadInputError(f"{path}: {what}")
    if b"\n" not in head and len(head) == _HEAD_BYTES:
        raise BadInputError(f"{path}: no line break in the first MiB; is this a CSV file?")
    line = _first_record(head).removeprefix(_BOM)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        if not _printable(line.decode("latin-1")):
            raise BadInputError(f"{path}: is not CSV text (binary data in the first line); check the file") from None
        raise BadInputError(
            f"{path}: the header line is not UTF-8; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if not _printable(text):
        raise BadInputError(f"{path}: is not CSV text (binary data in the first line); check the file")
    if "\r" in text.rstrip("\r\n"):
        raise BadInputError(f"{path}: lines end in a bare CR (old Mac style); convert them to LF, e.g. tr '\\r' '\\n'")
    try:
        fields = next(csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True), [])
    except csv.Error as e:
        raise BadInputError(f"{path}: cannot read the header line ({e}); check its quotes") from None
    names = [f.strip() for f in fields]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise BadInputError(f"{path}: the first line is blank; it must be the header, e.g. user_id,item_id,timestamp")
    names = [n or f"column_{i}" for i, n in enumerate(names, 1)]
    for n in names:
        if names.count(n) > 1:
            raise BadInputError(
                f"{path}: column {n!r} appears {names.count(n)} times in the header; rename or drop the extra one"
            )
    return names


def read_csv_python(path: Path, cfg: PreprocessConfig, scratch: Path) -> pl.LazyFrame:
    """:func:`scan_raw` for a CSV polars cannot parse, read by Python's csv module.

    A record the strict csv parser refuses (a quote inside an unquoted field, an unterminated
    quote) becomes one all-null row flagged "bad quoting"; parsing goes on at the next line.
    Rows are written in batches to Parquet files in the directory ``scratch``, so memory stays bounded.
    """
    sep = separator_of(path, cfg)
    names = read_header(path, sep)
    width = len(names)
    parts = Path(scratch) / f"{len(list(Path(scratch).iterdir()))}"
    parts.mkdir()
    try:
        _read_csv_parts(path, sep, width, names, parts)
    except _GZIP_ERRORS as e:
        raise BadInputError(f"{path}: cannot read ({e})") from e
    lf = pl.scan_parquet(parts / "*.parquet")
    return lf.with_columns(_flag_expr(names, pl.col(FLAG))).drop(_EXTRA)


def _read_csv_parts(path: Path, sep: str, width: int, names: list[str], parts: Path) -> None:
    rows: list[list[str | None]] = []
    bad: list[str | None] = []
    with _open_text(path) as fh, _no_field_limit():
        records = csv.reader(fh, delimiter=sep, strict=True)
        next(records, None)  # the header, already checked
        while True:
            flag: str | None = None
            try:
                fields = next(records)
            except StopIteration:
                break
            except csv.Error:
                fields, flag = [], "bad quoting"
            cells: list[str | None] = [f or None for f in fields[: width + 1]]
            rows.append(cells + [None] * (width + 1 - len(cells)))
            bad.append(flag)
            if len(rows) == _BATCH_ROWS:
                _write_part(parts, names, rows, bad)
                rows, bad = [], []
    _write_part(parts, names, rows, bad)


def _csv_schema(names: list[str]) -> dict[str, pl.DataType]:
    return {**{n: pl.String() for n in names}, _EXTRA: pl.String()}


def _write_part(parts: Path, names: list[str], rows: list[list[str | None]], bad: list[str | None]) -> None:
    df = pl.DataFrame(rows, schema=_csv_schema(names), orient="row").with_columns(pl.Series(FLAG, bad, dtype=pl.String))
    df.write_parquet(parts / f"{len(list(parts.iterdir())):06d}.parquet")


def _flag_expr(names: list[str], first: pl.Expr | None) -> pl.Expr:
    """``_flag``: ``first`` if set, else the first structural fault of the row."""
    cols = [pl.col(n) for n in names]
    fault = (
        pl.when(pl.col(_EXTRA).is_not_null())
        .then(pl.lit("wrong number of fields"))
        .when(pl.all_horizontal(c.is_null() for c in cols))
        .then(pl.lit("empty row"))
        .when(pl.any_horizontal(c.str.contains("\ufffd", literal=True) for c in cols))
        .then(pl.lit("not valid UTF-8"))
        .otherwise(pl.lit(None, pl.String))
    )
    return (fault if first is None else pl.coalesce(first, fault)).alias(FLAG)


def _check_columns(path: Path, names: list[str], cfg: PreprocessConfig, sep: str | None = None) -> None:
    required = [("--user-col", cfg.user_col), ("--item-col", cfg.item_col), ("--time-col", cfg.time_col)]
    if cfg.event_col_required:
        required.append(("--event-col", cfg.event_col))
    if cfg.weight_col:
        required.append(("--weight-col", cfg.weight_col))
    for flag, col in required:
        if col in names:
            continue
        listed = f"{path}: column {col!r} not found (columns: {', '.join(names)})"
        other = [c for c in (",", ";", "\t", "|") if c != sep and len(names) == 1 and c in names[0]]
        if sep is not None and other:
            arg = "tab" if other[0] == "\t" else f"'{other[0]}'"
            raise BadInputError(f"{listed}; the file looks {arg}-separated: pass --separator {arg}")
        raise BadInputError(f"{listed}; name it with {flag}")


def _check_types(path: Path, schema: pl.Schema, cfg: PreprocessConfig) -> None:
    """Parquet columns must hold what they name: ids as text or integers, time as a time. An
    all-null column (type Null) passes; its rows are rejected one by one."""
    labels = [(cfg.user_col, True), (cfg.item_col, True), (cfg.event_col, False)]
    for col, is_id in labels:
        dtype = schema.get(col)
        if dtype in (None, pl.Null, pl.String) or isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_integer():
            continue
        hint = ""
        if dtype.is_float():
            hint = " (floats often come from an integer column with missing values); write them as integers or text"
        what = "ids" if is_id else "event types"
        raise BadInputError(f"{path}: column {col!r} holds {dtype}; {what} must be text or integers{hint}")
    dtype = schema[cfg.time_col]
    if not (isinstance(dtype, pl.Datetime) or dtype in (pl.Date, pl.String, pl.Null) or dtype.is_numeric()):
        raise BadInputError(
            f"{path}: column {cfg.time_col!r} holds {dtype}; the event time must be a datetime, "
            "a unix time number or ISO 8601 text"
        )
    dtype = schema.get(cfg.weight_col) if cfg.weight_col else None
    if dtype is not None and not (dtype in (pl.String, pl.Null) or dtype.is_numeric()):
        raise BadInputError(f"{path}: column {cfg.weight_col!r} holds {dtype}; --weight-col needs a column of numbers")


def _read_head(path: Path) -> bytes:
    """Up to 1 MiB from the start of the file, decompressed when it is gzip."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror or e})") from e
    if head[:2] == _GZIP:
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(_HEAD_BYTES)
        except _GZIP_ERRORS as e:
            raise BadInputError(f"{path}: cannot read (damaged gzip: {e})") from e
    return head


def _first_record(head: bytes) -> bytes:
    """The bytes of the first CSV record: up to the first newline outside quotes."""
    end, quotes = 0, 0
    while (nl := head.find(b"\n", end)) >= 0:
        quotes += head.count(b'"', end, nl)
        end = nl + 1
        if quotes % 2 == 0:
            return head[:end]
    return head


def _printable(text: str) -> bool:
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _open_text(path: Path) -> IO[str]:
    # Same as polars' reading: BOM dropped, bad bytes as U+FFFD, line ends kept for the csv module.
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == _GZIP
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


@contextlib.contextmanager
def _no_field_limit() -> Iterator[None]:
    # The csv module refuses fields over 128 KiB; polars has no such limit, and a long field
    # is judged by the rules (an id over max_id_len is rejected), not by the parser.
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)
