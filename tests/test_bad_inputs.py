"""preprocess on the bad-input corpus (tests/data/bad/): every file has one exact outcome.

Either exit 3 with one line naming the file and what to do, and nothing written; or the sound
rows kept and every other record in OUT.rejects.parquet with its reason. The table below is the
single source; README.md beside the corpus documents the same outcomes for people and is
checked to list every file.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import polars as pl
import pytest
from conftest import REPO, only_files

BAD = REPO / "tests" / "data" / "bad"


def _load_corpus_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", BAD / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus_module()


class Case(NamedTuple):
    """One run of ``recinc preprocess FILE -o OUT ARGS``.

    ``error``: exit 3 with exactly this message (``{path}`` = FILE); a trailing ``...`` makes it
    a prefix. Otherwise exit 0 with ``kept`` rows kept and ``rejected`` by reason, out of the
    ``rows`` data records the file holds.
    """

    file: str
    error: str | None = None
    kept: int = 0
    rejected: dict[str, int] = {}  # noqa: RUF012  (never mutated)
    rows: int = 0
    args: tuple[str, ...] = ()


SEP_HINT = "{path}: column 'user_id' not found (columns: %s); the file looks %s-separated: pass --separator %s"
CASES = [
    Case("empty.csv", "{path}: cannot read (the file is empty; it needs a header line like user_id,item_id,timestamp)"),
    Case("header_only.csv", "{path}: no usable rows (0 read, rejected: none)"),
    Case(
        "blank_first_line.csv", "{path}: the first line is blank; it must be the header, e.g. user_id,item_id,timestamp"
    ),
    Case("semicolon.csv", SEP_HINT % ("user_id;item_id;timestamp;event_type", "';'", "';'")),
    Case("semicolon.csv", kept=3, rows=3, args=("--separator", ";")),
    Case("tab.csv", SEP_HINT % ("user_id item_id timestamp event_type", "tab", "tab")),
    Case("tab.csv", kept=3, rows=3, args=("--separator", "tab")),
    Case(
        "missing_item_col.csv",
        "{path}: column 'item_id' not found (columns: user_id, timestamp, event_type); name it with --item-col",
    ),
    Case("renamed_cols.csv", "{path}: column 'user_id' not found (columns: uid, iid, ts); name it with --user-col"),
    Case(
        "renamed_cols.csv",
        kept=3,
        rows=3,
        args=("--user-col", "uid", "--item-col", "iid", "--time-col", "ts"),
    ),
    Case(
        "duplicate_header.csv",
        "{path}: column 'item_id' appears 2 times in the header; rename or drop the extra one",
    ),
    Case(
        "latin1_header.csv",
        "{path}: the header line is not UTF-8; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
    ),
    Case("latin1_ids.csv", kept=3, rejected={"not valid UTF-8": 2}, rows=5),
    Case("utf16.csv", "{path}: is UTF-16 text; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"),
    Case("bom.csv", kept=3, rows=3),
    Case("crlf.csv", kept=3, rows=3),
    Case("cr_only.csv", "{path}: lines end in a bare CR (old Mac style); convert them to LF, e.g. tr '\\r' '\\n'"),
    Case("trailing_separator.csv", kept=3, rows=3),
    Case("blank_lines.csv", kept=3, rejected={"empty row": 3}, rows=6),
    Case("whitespace_ids.csv", kept=3, rejected={"missing user_id": 1}, rows=4),
    Case("mixed_id_types.csv", kept=5, rows=5),
    Case("quoted_newlines.csv", kept=3, rejected={"control character in id": 1}, rows=4),
    Case("nul_bytes.csv", kept=2, rejected={"control character in id": 2}, rows=4),
    Case("header_repeated.csv", kept=4, rejected={"header line repeated": 1}, rows=5),
    Case("ragged.csv", kept=4, rejected={"wrong number of fields": 2, "missing timestamp": 1}, rows=7),
    Case("unterminated_quote.csv", kept=3, rejected={"bad quoting": 1}, rows=4),
    Case("stray_quote.csv", kept=4, rejected={"bad quoting": 1}, rows=5),
    Case("exact_duplicates.csv", kept=3, rejected={"exact duplicate": 2}, rows=5),
    Case("nan_inf_times.csv", kept=2, rejected={"unparsable timestamp": 6}, rows=8),
    Case("negative_time.csv", kept=3, rejected={"timestamp before 1970-01-01": 4}, rows=7),
    Case(
        "far_future.csv",
        kept=3,
        rejected={"timestamp after 2100-01-01": 4, "unparsable timestamp": 1},
        rows=8,
    ),
    Case("long_id.csv", kept=3, rejected={"id longer than 1024 characters": 2}, rows=5),
    Case(
        "all_invalid.csv",
        "{path}: no usable rows (3 read, rejected: {{'missing item_id': 1, 'missing user_id': 1, "
        "'unparsable timestamp': 1}})",
    ),
    Case("gzip_named_csv.csv", kept=3, rows=3),
    Case("gzip_truncated.csv", "{path}: cannot read (damaged gzip: ..."),
    Case(
        "zip_named.csv",
        "{path}: is a zip archive (an .xlsx workbook is one), not CSV; unzip it or export the sheet as CSV",
    ),
    Case("png_named.csv", "{path}: is not CSV text (binary data in the first line); check the file"),
    Case(
        "csv_named.parquet",
        "{path}: named .parquet but is not a Parquet file (no PAR1 header); if it holds CSV text, rename it to .csv",
    ),
    Case("truncated.parquet", "{path}: cannot read Parquet (..."),
    Case(
        "wrong_schema.parquet",
        "{path}: column 'user_id' not found (columns: user, item_id, timestamp); name it with --user-col",
    ),
    Case(
        "struct_time.parquet",
        "{path}: column 'timestamp' holds Struct({{'s': Int64, 'tz': String}}); the event time must be a datetime, "
        "a unix time number or ISO 8601 text",
    ),
    Case("list_ids.parquet", "{path}: column 'item_id' holds List(String); ids must be text or integers"),
    Case(
        "float_ids.parquet",
        "{path}: column 'user_id' holds Float64; ids must be text or integers (floats often come from an integer "
        "column with missing values); write them as integers or text",
    ),
    Case("no_csv_dir", "{path}: directory holds no .csv or .parquet files"),
    Case("does_not_exist.csv", "{path}: no such file; check the path"),
]


def _case_id(case: Case) -> str:
    return case.file + ("[" + " ".join(case.args) + "]" if case.args else "")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the corpus files too big to commit (the 1 MiB field)."""
    d = tmp_path_factory.mktemp("generated")
    corpus.write(d, corpus.GENERATED)
    return d


def _listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input(
    cli, expect_error, generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    src = (generated if case.file in corpus.GENERATED else BAD) / case.file
    out = tmp_path / "out" / "ev.parquet"
    out.parent.mkdir()
    scratch = tmp_path / "scratch"  # where the Python csv fallback puts its temp files
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = _listing(src.parent)
    r = cli("preprocess", src, "-o", out, *case.args)
    assert _listing(src.parent) == before  # nothing written beside the input
    assert list(scratch.iterdir()) == []
    if case.error is not None:
        message = case.error.format(path=src)
        if message.endswith("..."):
            expect_error(r, 3, pattern=re.escape(message[:-3]) + ".+")
        else:
            expect_error(r, 3, message)
        assert only_files(out.parent) == []  # no OUT, no sidecars, no temp files
        return
    assert r.exit_code == 0, r.stderr
    assert only_files(out.parent) == ["ev.manifest.json", "ev.parquet", "ev.rejects.parquet"]
    manifest = json.loads(out.with_name("ev.manifest.json").read_text())
    kept, rejects = pl.read_parquet(out), pl.read_parquet(out.with_name("ev.rejects.parquet"))
    assert (manifest["rows_kept"], manifest["rows_rejected"]) == (case.kept, case.rejected)
    assert kept.height == case.kept and rejects.height == sum(case.rejected.values())
    assert manifest["rows_read"] == case.kept + sum(case.rejected.values()) == case.rows
    assert kept.columns[:5] == ["user_id", "item_id", "timestamp", "event_type", "weight"]
    for col in ("user_id", "item_id", "event_type"):
        # BOM, CR of CRLF and padding never leak into values.
        assert not kept[col].str.contains("[\ufeff\r\x00]|^\\s|\\s$").any(), kept[col].to_list()
    assert sorted(rejects["row"].to_list()) == sorted(set(rejects["row"].to_list()))


def test_kept_values_of_the_lenient_cases(cli, tmp_path: Path) -> None:
    def kept(name: str) -> pl.DataFrame:
        out = tmp_path / f"{name}.parquet"
        assert cli("preprocess", BAD / name, "-o", out, "-q").exit_code == 0
        return pl.read_parquet(out)

    assert kept("whitespace_ids.csv")["user_id"].to_list() == ["u1", "u2", "u4"]
    assert kept("mixed_id_types.csv")["user_id"].to_list() == ["1", "abc", "007", "2.5", "1e3"]
    notes = kept("quoted_newlines.csv")["note"].to_list()
    assert notes == ["line one\nline two", 'a, b "quoted" \r\n c', "\n"]
    ragged = kept("ragged.csv")
    assert ragged["user_id"].to_list() == ["u1", "u2", "u6", "u7"]
    assert ragged["event_type"].to_list() == ["view", "view", "", "view"]
    assert kept("trailing_separator.csv").columns == ["user_id", "item_id", "timestamp", "event_type", "weight"]


def test_readme_lists_every_corpus_file() -> None:
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE)
    assert len(listed) == len(set(listed))
    on_disk = {p.name + ("/" if p.is_dir() else "") for p in BAD.iterdir() if p.name != "__pycache__"}
    on_disk -= {"README.md", "make_corpus.py"}
    assert set(listed) == on_disk | corpus.GENERATED | corpus.MISSING
    assert {c.file + ("/" if (BAD / c.file).is_dir() else "") for c in CASES} == set(listed)
    assert len(listed) >= 28


def test_committed_files_match_the_generator() -> None:
    for name, data in corpus.build().items():
        path = BAD / name
        if name in corpus.GENERATED:
            assert not path.exists(), f"{name} is generated at test time; do not commit it"
            continue
        assert path.is_file(), f"{name} missing; run python tests/data/bad/make_corpus.py"
        if data[:4] != b"PAR1":  # Parquet bytes carry the writer's version; the rest must match
            assert path.read_bytes() == data, f"{name} differs; run python tests/data/bad/make_corpus.py"


@pytest.mark.parametrize("sep", ["ab", '"', "", "é"])
def test_separator_must_be_one_ascii_character(cli, expect_error, tmp_path: Path, sep: str) -> None:
    r = cli("preprocess", BAD / "semicolon.csv", "-o", tmp_path / "ev.parquet", "--separator", sep)
    expect_error(
        r, 2, f"--separator must be one ASCII character other than a quote or line break, or 'tab' (got {sep!r})"
    )
    assert only_files(tmp_path) == []
