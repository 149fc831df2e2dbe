"""Files in and out: input discovery, the events schema, atomic writes, content hashes.

Every file recinc writes goes through :func:`atomic_path`: the data is written to a temp file
in the target directory, fsynced and renamed over the target, then the directory is fsynced,
so a crash leaves either the old file or the new one, never half of one. A temp file is named
``.NAME.PID.XXXXXXXX.tmp``; one left by a killed run (its pid is gone) is removed by the next
successful write into the same directory.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_path(d / "x.txt") as tmp:
...     _ = tmp.write_text("hello")
>>> (d / "x.txt").read_text()
'hello'
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import polars as pl

from recinc_cli.errors import BadInputError, OutputError, UsageError

#: Columns of the events Parquet written by ``preprocess`` and read by every other command.
EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "timestamp": pl.Datetime("ms", "UTC"),
    "event_type": pl.String(),
    "weight": pl.Float32(),
}
DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success fsync it and rename it over ``target``.

    On an exception the temp file is removed and ``target`` is left untouched. After the
    rename, temp files of killed runs in the same directory are removed (:func:`remove_stale_temps`).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _cannot_write(target, e) from e
    os.close(fd)
    tmp = Path(name)
    # mkstemp creates 0600; give the result the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(target, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_temps(target.parent)


#: ``.NAME.PID.XXXXXXXX.tmp``: mkstemp's random part is 8 characters.
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the temp files :func:`atomic_path` runs left in ``directory`` when killed
    (SIGKILL, power loss): those whose writer pid no longer runs. Returns what was removed.

    A live pid's temp may be a concurrent write in progress, so it is kept.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            m = _TEMP_NAME.match(entry.name)
            if m and not _pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)  # preprocess's scratch directory
                    else:
                        os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _cannot_write(target: Path, e: OSError) -> OutputError:
    return OutputError(f"{target}: cannot write ({e.strerror or e}); check free space and permissions")


def _fsync_dir(path: Path) -> None:
    # A rename is only durable once the directory entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Resolve files, directories (their CSV/Parquet files) and glob patterns, in sorted order.

    Raises :class:`BadInputError` when an input matches nothing.
    """
    files: list[Path] = []
    for raw in inputs:
        text = str(raw)
        p = Path(text)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise BadInputError(f"{p}: directory holds no .csv or .parquet files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(text):
            found = sorted(Path(f) for f in glob.glob(text) if Path(f).is_file())
            if not found:
                raise BadInputError(f"{text}: no file matches this pattern")
            files.extend(found)
        else:
            raise BadInputError(f"{p}: no such file; check the path")
    return files


def is_parquet(path: Path) -> bool:
    """True when the file starts with the Parquet magic bytes (whatever its name)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from e


def read_events(path: str | Path) -> pl.DataFrame:
    """Read an events Parquet written by ``recinc preprocess``.

    Returns a DataFrame with at least the :data:`EVENTS_SCHEMA` columns, sorted by time (file
    order among equal times; preprocess writes it sorted already). Raises :class:`BadInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file; check the path")
    if not is_parquet(path):
        raise BadInputError(f"{path}: not a Parquet file; run `recinc preprocess {path} -o events.parquet` first")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several error types for a damaged file
        raise BadInputError(f"{path}: cannot read Parquet ({_first_line(e)})") from e
    missing = [c for c in EVENTS_SCHEMA if c not in df.columns]
    if missing:
        raise BadInputError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            "it is not an events file from `recinc preprocess`, run preprocess on it first"
        )
    try:
        df = df.with_columns(pl.col(c).cast(t) for c, t in EVENTS_SCHEMA.items())
    except Exception as e:
        raise BadInputError(f"{path}: events columns have the wrong types ({_first_line(e)})") from e
    if df.height == 0:
        raise BadInputError(f"{path}: holds no events")
    if not df["timestamp"].is_sorted():
        # Sequences and "newest" depend on time order; a file not from preprocess may lack it.
        df = df.sort("timestamp", maintain_order=True)
    return df


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def write_table(df: pl.DataFrame, path: str | Path) -> None:
    """Write ``df`` atomically as CSV, Parquet or JSON lines, chosen by the file suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    writers: dict[str, Callable[[Path], object]] = {
        ".csv": df.write_csv,
        ".parquet": df.write_parquet,
        ".jsonl": df.write_ndjson,
        ".ndjson": df.write_ndjson,
    }
    if suffix not in writers:
        raise UsageError(f"{path}: unknown output format; end the name in .csv, .parquet or .jsonl")
    with atomic_path(path) as tmp:
        writers[suffix](tmp)


def read_user_ids(path: str | Path) -> list[str]:
    """User ids for ``recommend --users-file``, in file order.

    Accepts a Parquet file or a CSV with a ``user_id`` column (e.g. an earlier recommendations
    file), or plain text with one id per line (a ``user_id`` header line is skipped).
    Raises :class:`BadInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file; check the path")
    try:
        if is_parquet(path):
            frame = pl.read_parquet(path)
        else:
            with path.open(encoding="utf-8") as fh:
                first = fh.readline()
            fields = [f.strip() for f in first.split(",")]
            if len(fields) < 2:
                lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
                return [x for x in lines if x][1 if lines[:1] == ["user_id"] else 0 :]
            frame = pl.read_csv(path, infer_schema=False)
    except (OSError, UnicodeDecodeError, pl.exceptions.PolarsError) as e:
        raise BadInputError(f"{path}: cannot read user ids ({_first_line(e)})") from e
    if "user_id" not in frame.columns:
        raise BadInputError(f"{path}: no user_id column (columns: {', '.join(frame.columns)})")
    return frame["user_id"].cast(pl.String).drop_nulls().unique(maintain_order=True).to_list()
