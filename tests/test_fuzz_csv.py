"""Fuzzing preprocess's CSV path: whatever the input, exit 0 or 3, never a traceback, and on
success every data row is either kept or in the rejects file.

Two generators: well-formed CSV (Python's csv.writer) with hostile values (ids with commas,
quotes, newlines, NUL, unicode, empty; times in mixed formats and garbage; extra columns), and
raw bytes mutated into a valid CSV (stray quotes, separators, line breaks, invalid UTF-8, NUL,
truncation, gzip). The "ci" hypothesis profile (conftest) makes the examples the same each run.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import tempfile
from pathlib import Path

import polars as pl
from conftest import only_files, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

HEADER = ["user_id", "item_id", "timestamp", "event_type"]
T0 = 1772359200  # 2026-03-01T10:00:00Z

TRICKY = [
    "",
    " ",
    ",",
    '"',
    '""',
    "a,b",
    'x"y',
    "\n",
    "a\nb",
    "\r\n",
    "\t",
    "\x00",
    "é",
    "\U0001d518ser",
    "\ufeffu",
    "007",
    "1e3",
]
ids = st.one_of(
    st.integers(0, 30).map(lambda n: f"u{n}"),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),  # lone surrogates cannot be UTF-8
    st.sampled_from(TRICKY),
    st.integers(-3, 30).map(str),
)
instants = st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(2150, 1, 1), timezones=st.just(dt.timezone.utc))
times = st.one_of(
    st.integers(T0, T0 + 10**6).map(str),
    st.integers(-(10**10), 10**11).map(str),  # unix s, before 1970 and after 2100 included
    st.integers(T0 * 1000, T0 * 1000 + 10**9).map(str),  # unix ms
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    instants.map(lambda t: t.isoformat()),
    instants.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
    instants.map(lambda t: t.strftime("%Y-%m-%d %H:%M")),
    instants.map(lambda t: t.strftime("%Y-%m-%d")),
    st.sampled_from(["", "nan", "inf", "-inf", "1e400", "timestamp", "soon", "99999999999999999999", "0", "-1"]),
    st.text(max_size=6),
)
events = st.sampled_from(["view", "cart", "purchase", "", " View ", "weird", "\x00"])
EXTRA_NAMES = ["price", "note", "category", "_hidden", "x y", "émoji"]


@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    extras = draw(st.lists(st.sampled_from(EXTRA_NAMES), unique=True, max_size=3))
    row = st.tuples(ids, ids, times, events, st.lists(ids, min_size=len(extras), max_size=len(extras)))
    rows = draw(st.lists(row, min_size=1, max_size=12))
    return HEADER + extras, [[u, i, t, e, *x] for u, i, t, e, x in rows]


def run_preprocess(data: bytes) -> tuple[int, dict | None]:
    """Run ``recinc preprocess`` on ``data`` as a .csv file; check the run's shape and return
    (exit code, manifest or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "log.csv").write_bytes(data)
        r = run_cli("preprocess", d / "log.csv", "-o", d / "ev.parquet", "-q")
        assert r.exit_code in (0, 3), (r.exit_code, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        if r.exit_code == 3:
            assert r.stderr.startswith("recinc: error: ") and r.stderr.count("\n") == 1, r.stderr
            assert only_files(d) == ["log.csv"]
            return 3, None
        manifest = json.loads((d / "ev.manifest.json").read_text())
        kept = pl.scan_parquet(d / "ev.parquet").select(pl.len()).collect().item()
        rejected = pl.scan_parquet(d / "ev.rejects.parquet").select(pl.len()).collect().item()
        assert manifest["rows_kept"] == kept and sum(manifest["rows_rejected"].values()) == rejected
        assert manifest["rows_read"] == kept + rejected
        return 0, manifest


@settings(max_examples=100, deadline=None)
@given(table=csv_tables())
def test_any_csv_rows_are_kept_or_rejected(table: tuple[list[str], list[list[str]]]) -> None:
    header, rows = table
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    _, manifest = run_preprocess(buf.getvalue().encode("utf-8"))
    if manifest is not None:
        assert manifest["rows_kept"] + sum(manifest["rows_rejected"].values()) == len(rows)


VALID = (
    "\n".join([",".join([*HEADER, "note"]), *(f'u{k},i{k},{T0 + k},view,"n, ""{k}"""' for k in range(8))]) + "\n"
).encode()
NOISE = st.one_of(
    st.sampled_from([b'"', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xe9", b"\xef\xbb\xbf", b";"]),
    st.binary(max_size=4),
)
mutations = st.lists(
    # Most edits land past the header (the first ~12% of the bytes), so rows get hit too.
    st.tuples(
        st.sampled_from(["insert", "replace", "delete", "truncate"]), st.floats(0.12, 1) | st.floats(0, 1), NOISE
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(edits=mutations, gzipped=st.booleans())
def test_mutated_bytes_never_crash(edits: list[tuple[str, float, bytes]], gzipped: bool) -> None:
    data = bytearray(VALID)
    for op, where, noise in edits:
        at = int(where * len(data))
        if op == "insert":
            data[at:at] = noise
        elif op == "replace":
            data[at : at + len(noise)] = noise
        elif op == "delete":
            del data[at : at + max(1, len(noise))]
        else:
            del data[at:]
    run_preprocess(gzip.compress(bytes(data), mtime=0) if gzipped else bytes(data))
