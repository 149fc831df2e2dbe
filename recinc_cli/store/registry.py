"""A model registry: numbered checkpoints in one directory and an atomically switched pointer.

Layout of ``DIR``::

    000001.pt  000002.pt  000003.rejected.pt  000004.pt  LATEST  .lock

``LATEST`` holds the file name of the version served (``000004.pt``). A new version is
written in full under its own number first and only then does ``LATEST`` switch (a rename),
so a reader resolving ``LATEST`` always gets a complete checkpoint, and a crash between the
two steps leaves an unserved file, never a broken pointer. Numbers are never reused: a version
the promotion gate refused is kept as ``NNNNNN.rejected.pt`` and the next one counts on.

>>> import tempfile, pathlib
>>> reg = Registry(pathlib.Path(tempfile.mkdtemp()))
>>> reg.next_version(), reg.path_of(1).name, reg.rejected_path(2).name
(1, '000001.pt', '000002.rejected.pt')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recinc_cli.data.io import atomic_path
from recinc_cli.errors import CheckpointError, UsageError

POINTER = "LATEST"
_VERSION = re.compile(r"^(\d{6,})(\.rejected)?\.pt$")


@dataclass(frozen=True)
class Registry:
    """The registry directory ``root`` (it need not exist yet)."""

    root: Path

    @staticmethod
    def is_registry(path: str | Path) -> bool:
        """True when ``path`` is a directory (a registry, possibly empty)."""
        return Path(path).is_dir()

    def path_of(self, version: int) -> Path:
        return self.root / f"{version:06d}.pt"

    def rejected_path(self, version: int) -> Path:
        return self.root / f"{version:06d}.rejected.pt"

    def _scan(self) -> list[tuple[int, bool]]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            m = _VERSION.match(p.name)
            if m:
                out.append((int(m.group(1)), m.group(2) is not None))
        return sorted(out)

    def versions(self) -> list[int]:
        """Numbers of the promotable versions on disk (rejected ones excluded), ascending."""
        return [v for v, rejected in self._scan() if not rejected]

    def next_version(self) -> int:
        """One past the highest number ever used here, rejected versions included."""
        return max((v for v, _ in self._scan()), default=0) + 1

    def latest_version(self) -> int | None:
        """The version ``LATEST`` points at; None for an empty registry.

        Raises :class:`CheckpointError` when the pointer is unreadable or names a missing file.
        """
        pointer = self.root / POINTER
        if not pointer.is_file():
            if self.versions():
                raise CheckpointError(
                    f"{pointer}: missing although the registry holds versions; restore it with "
                    f"`recinc rollback {self.root} --to N`"
                )
            return None
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        m = _VERSION.match(name)
        if not m or m.group(2) or not (self.root / name).is_file():
            raise CheckpointError(
                f"{pointer}: points at {name!r}, which is no version in {self.root}; "
                f"fix it with `recinc rollback {self.root} --to N`"
            )
        return int(m.group(1))

    def latest(self) -> Path:
        """Path of the served checkpoint; :class:`CheckpointError` when there is none."""
        v = self.latest_version()
        if v is None:
            raise CheckpointError(
                f"{self.root}: empty registry (no {POINTER}); create the first version with "
                f"`recinc init EVENTS --registry {self.root}`"
            )
        return self.path_of(v)

    def promote(self, version: int) -> None:
        """Switch ``LATEST`` to ``version`` atomically (write a temp file, fsync, rename)."""
        if not self.path_of(version).is_file():
            raise UsageError(f"{self.path_of(version)}: no such version; see the files in {self.root}")
        with atomic_path(self.root / POINTER) as tmp:
            tmp.write_text(self.path_of(version).name + "\n", encoding="utf-8")

    def rollback_target(self, to: int | None = None) -> tuple[int | None, int]:
        """(current version, version to serve instead): ``to``, by default the newest version
        older than the current one. Switch with :meth:`promote`; nothing is deleted, so a
        rollback can be undone by another."""
        try:
            current = self.latest_version()
        except CheckpointError:  # a broken pointer is what a rollback --to repairs
            current = None
            if to is None:
                raise
        if to is None:
            older = [v for v in self.versions() if current is None or v < current]
            if not older:
                raise UsageError(f"{self.root}: no version older than the one served to roll back to")
            to = older[-1]
        if to not in self.versions():
            have = ", ".join(str(v) for v in self.versions()) or "none"
            raise UsageError(f"{self.root}: no version {to} to roll back to (versions: {have})")
        return current, to

    def prune(self, keep: int) -> list[Path]:
        """Delete all but the newest ``keep`` versions, never the one ``LATEST`` serves;
        rejected versions older than the oldest kept one go too. Returns the deleted paths."""
        check_keep(keep)
        served = self.latest_version()
        kept = set(self.versions()[-keep:]) | ({served} if served is not None else set())
        oldest = min(kept, default=0)
        gone = []
        for v, rejected in self._scan():
            if (not rejected and v not in kept) or (rejected and v < oldest):
                p = self.rejected_path(v) if rejected else self.path_of(v)
                p.unlink(missing_ok=True)
                gone.append(p)
        return gone


def registry_versions(target: str | Path) -> dict[str, Any] | None:
    """``{"versions": [...], "latest": name or None}`` when ``target`` is a registry (``recinc
    info``, ``GET /version``); None for a checkpoint file. A broken ``LATEST`` reads as None."""
    if not Registry.is_registry(target):
        return None
    reg = Registry(Path(target))
    try:
        latest = reg.latest_version()
    except CheckpointError:
        latest = None
    return {"versions": [reg.path_of(v).name for v in reg.versions()], "latest": latest and reg.path_of(latest).name}


def check_keep(keep: int | None) -> int | None:
    """``keep`` itself when it is None or at least 1; else :class:`UsageError`."""
    if keep is not None and keep < 1:
        raise UsageError(f"--keep must be at least 1 (got {keep})")
    return keep


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or for a registry directory the checkpoint its ``LATEST`` names."""
    path = Path(path)
    return Registry(path).latest() if Registry.is_registry(path) else path
