"""The model a server serves, and its hot reload.

:class:`ModelHolder` keeps one :class:`Served` snapshot: a loaded checkpoint with everything a
request reads (its serving state, score function, ids). A request takes the snapshot once, at
its start, and reads only it, so no request ever mixes two versions. A background thread
checks every ``interval`` seconds whether the target moved (a registry's ``LATEST`` switched by
``update --registry`` or ``rollback``, or a checkpoint file replaced), loads the new version
beside the old one, scores one user with it (filling what its model keeps between calls), and
only then swaps the reference: one assignment, atomic in Python. A version that fails to load
(damaged, truncated, a newer format) is refused: the old one keeps serving, the failure is
counted and logged once, and the same file is not tried again until it changes.

>>> holder = ModelHolder("models/", interval=2.0)  # doctest: +SKIP
>>> holder.current().version  # doctest: +SKIP
'000003.pt'
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recinc_cli.data.io import sha256_file
from recinc_cli.errors import CheckpointError
from recinc_cli.serving.history import ServingState
from recinc_cli.serving.views import serving_state
from recinc_cli.store.bundle import Bundle
from recinc_cli.store.format import load_bundle
from recinc_cli.store.registry import resolve_checkpoint


@dataclass(frozen=True)
class Served:
    """One loaded version: what every request reads, never changed after it is built.

    ``key`` identifies the file (path, size, mtime in ns, inode): a change means a new version.
    """

    bundle: Bundle
    state: ServingState
    path: Path
    key: tuple[Any, ...]
    version: str
    sha256: str
    loaded_at: float
    item_ids: pl.Series = field(repr=False)


def file_key(path: Path) -> tuple[Any, ...]:
    """What tells two files at ``path`` apart: a rename over it changes inode and mtime."""
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino)


def load_served(path: Path) -> Served:
    """Load the checkpoint ``path`` and build its snapshot. Raises :class:`CheckpointError`."""
    from recinc_cli.serving.serve import serve_top

    key = file_key(path)
    bundle = load_bundle(path)
    bundle.users.point_lookups()  # each request looks up one id: microseconds, not a join
    bundle.items.point_lookups()
    state = serving_state(bundle)
    if len(bundle.users) > 1:  # warm up: fill what the model keeps between calls (sasrec's vectors)
        serve_top(bundle, state, pl.Series([bundle.users.ids[1]]), 1)
    return Served(
        bundle=bundle,
        state=state,
        path=path,
        key=key,
        version=path.name,
        sha256=sha256_file(path),
        loaded_at=time.time(),
        item_ids=pl.Series(bundle.items.ids, dtype=pl.String),
    )


class ModelHolder:
    """The served snapshot of ``target`` (a checkpoint or a registry directory), reloaded in
    the background every ``interval`` seconds when it changes (0: never).

    ``on_reload(ok, detail)`` is called after each attempt (metrics, logs). Raises
    :class:`CheckpointError` at construction when the first load fails: a server that cannot
    serve does not start.
    """

    def __init__(
        self,
        target: str | Path,
        interval: float = 2.0,
        on_reload: Callable[[bool, str], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.target = Path(target)
        self.interval = interval
        self._on_reload = on_reload or (lambda ok, detail: None)
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._current = load_served(resolve_checkpoint(self.target))
        self._refused: tuple[Any, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Served:
        """The snapshot to serve a request from (read it once per request)."""
        return self._current

    def start(self) -> None:
        """Start the background reload thread (a daemon), unless ``interval`` is 0."""
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="recinc-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def check_now(self) -> bool:
        """Look for a new version and load it; True when one was swapped in."""
        try:
            path = resolve_checkpoint(self.target)
            key = file_key(path)
        except (CheckpointError, OSError) as e:
            return self._refuse(("pointer", str(e)), f"cannot resolve {self.target}: {e}")
        if key == self._current.key or key == self._refused:
            return False
        try:
            new = load_served(path)
        except CheckpointError as e:
            return self._refuse(key, str(e))
        except Exception as e:  # anything else that breaks a load must not stop serving
            return self._refuse(key, f"{path}: cannot load ({type(e).__name__}: {e})")
        old, self._current = self._current, new  # the swap: one reference assignment
        self._refused = None
        gc.freeze()  # the new version out of the cycle collector's passes, as at start (run.py)
        self._log(f"recinc serve: now serving {new.path} (was {old.path})")
        self._on_reload(True, new.version)
        return True

    def _refuse(self, key: tuple[Any, ...], reason: str) -> bool:
        if key != self._refused:
            self._refused = key
            self._log(f"recinc serve: refused a new version, still serving {self._current.path}: {reason}")
            self._on_reload(False, reason)
        return False

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_now()
