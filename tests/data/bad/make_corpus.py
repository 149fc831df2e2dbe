"""Build the bad-input corpus of ``recinc preprocess``: malformed files, one case each.

``README.md`` beside this script says what each file is and what preprocess does with it;
``tests/test_bad_inputs.py`` checks every one. Run ``python tests/data/bad/make_corpus.py`` to
rewrite the files after changing a case; a test checks the committed files match :func:`build`.
Files in :data:`GENERATED` (the 1 MiB field) are not committed: tests build them in a temp dir.

>>> sorted(build())[:3]
['all_invalid.csv', 'blank_first_line.csv', 'blank_lines.csv']
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
HEADER = "user_id,item_id,timestamp,event_type"
T0 = 1772359200  # 2026-03-01T10:00:00Z
#: Built at test time only (too big to commit).
GENERATED = frozenset({"long_id.csv"})
#: Named by a case but never created: the input that does not exist.
MISSING = frozenset({"does_not_exist.csv"})


def good(first: int, n: int, sep: str = ",") -> list[str]:
    """``n`` sound rows ``u{k},i{k},T0+k,view`` from ``k = first``."""
    return [sep.join((f"u{k}", f"i{k}", str(T0 + k), "view")) for k in range(first, first + n)]


def text(*lines: str, eol: str = "\n") -> bytes:
    return "".join(line + eol for line in lines).encode("utf-8")


def parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo(name, date_time=(2026, 3, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _events(**cols: object) -> pl.DataFrame:
    return pl.DataFrame(cols)


def build() -> dict[str, bytes]:
    """File name (relative to this directory) -> bytes, for every corpus file."""
    csv3 = text(HEADER, *good(1, 3))
    files = {
        "empty.csv": b"",
        "header_only.csv": text(HEADER),
        "blank_first_line.csv": b"\n" + csv3,
        "semicolon.csv": text(HEADER.replace(",", ";"), *good(1, 3, ";")),
        "tab.csv": text(HEADER.replace(",", "\t"), *good(1, 3, "\t")),
        "missing_item_col.csv": text("user_id,timestamp,event_type", *(f"u{k},{T0 + k},view" for k in (1, 2, 3))),
        "renamed_cols.csv": text("uid,iid,ts", *(f"u{k},i{k},{T0 + k}" for k in (1, 2, 3))),
        "duplicate_header.csv": text("user_id,item_id,timestamp,item_id", *(f"{r},x" for r in good(1, 3))),
        "latin1_header.csv": (HEADER + ",cat\xe9gorie\n").encode("latin-1") + text(*(f"{r},c1" for r in good(1, 3))),
        "latin1_ids.csv": text(HEADER, *good(1, 3))
        + f"u4,caf\xe9,{T0 + 4},view\nus\xe9r,i5,{T0 + 5},view\n".encode("latin-1"),
        "utf16.csv": ("\ufeff" + "\n".join([HEADER, *good(1, 3)]) + "\n").encode("utf-16-le"),
        "bom.csv": b"\xef\xbb\xbf" + csv3,
        "crlf.csv": text(HEADER, *good(1, 3), eol="\r\n"),
        "cr_only.csv": text(HEADER, *good(1, 3), eol="\r"),
        "trailing_separator.csv": text(HEADER + ",", *(r + "," for r in good(1, 3))),
        "blank_lines.csv": text(HEADER, *good(1, 1), "", *good(2, 1), "", "", *good(3, 1)),
        "whitespace_ids.csv": text(
            HEADER,
            f" u1 ,  i1,{T0 + 1},view",
            f"\tu2\t,i2 ,{T0 + 2},view",
            f"   ,i3,{T0 + 3},view",
            f"u4,i4, {T0 + 4} , view ",
        ),
        "mixed_id_types.csv": text(
            HEADER,
            *(
                f"{u},{i},{T0 + k},view"
                for k, (u, i) in enumerate([(1, 10), ("abc", 7), ("007", "x"), (2.5, -3), ("1e3", 0)])
            ),
        ),
        "quoted_newlines.csv": text(
            HEADER + ",note",
            f'u1,i1,{T0 + 1},view,"line one\nline two"',
            f'u2,i2,{T0 + 2},view,"a, b ""quoted"" \r\n c"',
            f'u3,i3,{T0 + 3},view,"\n"',
            f'u4,"i\n4",{T0 + 4},view,id with a newline',
        ),
        "nul_bytes.csv": text(HEADER, *good(1, 2), f"u\x003,i3,{T0 + 3},view", f"u4,i4\x00,{T0 + 4},view"),
        "header_repeated.csv": text(HEADER, *good(1, 2), HEADER, *good(3, 2)),
        "ragged.csv": text(
            HEADER,
            *good(1, 2),
            f"u3,i3,{T0 + 3},view,extra",
            f"u4,i4,{T0 + 4},view,extra,more",
            "u5,i5",
            f"u6,i6,{T0 + 6}",
            f"u7,i7,{T0 + 7},view,",
        ),
        "unterminated_quote.csv": text(HEADER, *good(1, 3), f'u4,"i4,{T0 + 4},view'),
        "stray_quote.csv": text(HEADER, *good(1, 2), f'u3,"i3"x,{T0 + 3},view', *good(4, 2)),
        "exact_duplicates.csv": text(HEADER, *good(1, 3), *good(1, 1), *good(1, 1)),
        "nan_inf_times.csv": text(
            HEADER,
            *good(1, 2),
            *(f"u{k},i{k},{t},view" for k, t in enumerate(["NaN", "nan", "inf", "-inf", "Infinity", "1e400"], 3)),
        ),
        "negative_time.csv": text(
            HEADER,
            *good(1, 2),
            "u3,i3,0,view",
            *(f"u{k},i{k},{t},view" for k, t in enumerate(["-1", "-86400", "1969-12-31T23:59:59Z", "1900-01-01"], 4)),
        ),
        "far_future.csv": text(
            HEADER,
            *good(1, 2),
            "u3,i3,2100-01-01T00:00:00Z,view",
            *(
                f"u{k},i{k},{t},view"
                for k, t in enumerate(["2100-01-01T00:00:01Z", "4102444801", "9999-12-31", "2150-06-01 12:00"], 4)
            ),
            "u8,i8,99999999999999999999,view",
        ),
        "all_invalid.csv": text(HEADER, f",i1,{T0 + 1},view", f"u2,,{T0 + 2},view", "u3,i3,soon,view"),
        "long_id.csv": text(
            HEADER,
            *good(1, 2),
            f"u{'x' * 1023},i3,{T0 + 3},view",
            f"u{'x' * (1 << 20)},i4,{T0 + 4},view",
            f"u5,i{'y' * 1024},{T0 + 5},view",
        ),
        "gzip_named_csv.csv": gzip.compress(csv3, mtime=0),
        "gzip_truncated.csv": gzip.compress(text(HEADER, *good(1, 200)), mtime=0)[:60],
        "zip_named.csv": _zip("events.csv", csv3),
        "png_named.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00",
        "csv_named.parquet": csv3,
        "wrong_schema.parquet": parquet(_events(user=["u1", "u2"], item_id=["i1", "i2"], timestamp=[T0, T0 + 1])),
        "struct_time.parquet": parquet(
            _events(user_id=["u1", "u2"], item_id=["i1", "i2"], timestamp=[{"s": T0, "tz": "UTC"}] * 2)
        ),
        "list_ids.parquet": parquet(_events(user_id=["u1", "u2"], item_id=[["i1"], ["i2", "i3"]], timestamp=[T0, T0])),
        "float_ids.parquet": parquet(
            _events(user_id=[1.0, float("nan"), 3.0], item_id=["i1", "i2", "i3"], timestamp=[T0, T0 + 1, T0 + 2])
        ),
        "no_csv_dir/notes.txt": b"a directory with no CSV or Parquet file in it\n",
    }
    files["truncated.parquet"] = parquet(_events(user_id=["u1"] * 50, item_id=["i1"] * 50, timestamp=[T0] * 50))[:200]
    return files


def write(directory: Path = HERE, names: set[str] | frozenset[str] | None = None) -> list[Path]:
    """Write the corpus files (all but :data:`GENERATED`, or just ``names``) into ``directory``."""
    written = []
    for name, data in build().items():
        if (name in GENERATED) if names is None else (name not in names):
            continue
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write():
        print(p.relative_to(HERE))
