"""One writer at a time per output file or registry, via the ``filelock`` library.

The lock is an OS advisory lock (``flock``) on a hidden file beside the output
(``.NAME.lock``) or inside the registry (``.lock``): the kernel drops it when the holder
exits, even on SIGKILL, so a crashed run never leaves a stale lock. The empty lock file
itself stays (removing it would race with a waiting run).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with exclusive(lock_path_for(d / "m1.pt"), "m1.pt"):
...     pass
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import filelock

from recinc_cli.errors import LockedError, OutputError


def lock_path_for(target: str | Path) -> Path:
    """The lock file guarding ``target``: ``DIR/.lock`` for a registry directory, else
    ``.NAME.lock`` beside the file."""
    target = Path(target)
    if target.is_dir():
        return target / ".lock"
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold ``lock_file`` for the block; wait up to ``wait`` seconds for another holder.

    Raises :class:`LockedError` (exit 9) when it is still held after ``wait`` seconds.
    """
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{lock_file.parent}: cannot create ({e.strerror or e}); check permissions") from e
    # thread_local=False: the lock belongs to this process, whichever thread releases it.
    lock = filelock.FileLock(lock_file, thread_local=False)
    try:
        lock.acquire(timeout=max(wait, 0.0))
    except filelock.Timeout:
        waited = f" after waiting {wait:g}s" if wait > 0 else ""
        raise LockedError(
            f"{what}: another recinc run is writing it (lock {lock_file} held{waited}); "
            "nothing was done: retry later or pass --wait SECONDS"
        ) from None
    except OSError as e:
        raise OutputError(f"{lock_file}: cannot lock ({e.strerror or e}); check permissions") from e
    try:
        yield
    finally:
        lock.release()
