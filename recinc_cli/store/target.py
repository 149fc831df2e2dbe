"""Where ``init`` and ``update`` put a new checkpoint: one file (``-o``) or a registry (``--registry``).

Either way the write is locked against a second run (:mod:`recinc_cli.store.locking`), atomic
(:func:`~recinc_cli.data.io.atomic_path`), and a candidate the promotion gate refuses goes aside as
``*.rejected.pt`` instead of replacing what is served.

>>> Target.of("models/m2.pt", None).rejected_path().as_posix()
'models/m2.rejected.pt'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recinc_cli.errors import UsageError
from recinc_cli.failpoints import pause_point
from recinc_cli.store.bundle import Bundle
from recinc_cli.store.format import save_bundle
from recinc_cli.store.locking import exclusive, lock_path_for
from recinc_cli.store.registry import Registry, check_keep


@dataclass
class Target:
    """A checkpoint file, or the next version of a registry directory."""

    file: Path | None = None
    registry: Registry | None = None
    #: registry only: newest versions to keep after publishing (None = all).
    keep: int | None = None
    #: the version number this run writes (registry only; fixed under the lock).
    version: int | None = field(default=None, init=False)

    @classmethod
    def of(cls, out: str | Path | None, registry: str | Path | None, keep: int | None = None) -> Target:
        """The target of ``-o OUT`` or ``--registry DIR [--keep N]``; exactly one of the two
        must be given. Raises :class:`UsageError` before any work is done."""
        if (out is None) == (registry is None):
            raise UsageError("give exactly one of -o OUT (a checkpoint file) or --registry DIR (numbered versions)")
        if registry is not None:
            root = Path(registry)
            if root.exists() and not root.is_dir():
                raise UsageError(f"--registry {root}: is a file; give a directory (it is created if missing)")
            return cls(registry=Registry(root), keep=check_keep(keep))
        if keep is not None:
            raise UsageError("--keep prunes registry versions; it needs --registry DIR")
        path = Path(out)  # type: ignore[arg-type]
        if path.is_dir():
            raise UsageError(f"-o {path}: is a directory; give a file name, or use --registry {path}")
        return cls(file=path)

    def __str__(self) -> str:
        return str(self.file) if self.file is not None else str(self.registry.root)  # type: ignore[union-attr]

    @contextlib.contextmanager
    def locked(self, wait: float = 0.0) -> Iterator[None]:
        """Hold this target's lock; fix the registry version number under it."""
        if self.registry is not None:
            self.registry.root.mkdir(parents=True, exist_ok=True)
            lock = lock_path_for(self.registry.root)
        else:
            lock = lock_path_for(self.file)  # type: ignore[arg-type]
        with exclusive(lock, str(self), wait):
            if self.registry is not None:
                self.version = self.registry.next_version()
            pause_point("locked")
            yield

    def path(self) -> Path:
        """Where a promoted checkpoint goes."""
        if self.registry is not None:
            return self.registry.path_of(self._version())
        return self.file  # type: ignore[return-value]

    def rejected_path(self) -> Path:
        """Where a candidate the gate refused goes: ``NAME.rejected.pt`` / ``NNNNNN.rejected.pt``."""
        if self.registry is not None:
            return self.registry.rejected_path(self._version())
        f = self.file
        assert f is not None
        return f.with_name(f.name.removesuffix(".pt") + ".rejected.pt")

    def served(self) -> str:
        """What stays served when a candidate is refused, for messages."""
        if self.registry is not None:
            v = self.registry.latest_version()
            return f"{self.registry.root} keeps serving {v:06d}.pt" if v else f"{self.registry.root} stays empty"
        return f"{self.file} was not written" + (" (the old file stays)" if self.file.exists() else "")  # type: ignore[union-attr]

    def _version(self) -> int:
        if self.version is None:
            raise RuntimeError("registry version is fixed under the lock: use Target.locked()")
        return self.version

    def publish(self, bundle: Bundle) -> dict[str, Any]:
        """Save ``bundle`` and, for a registry, switch ``LATEST`` to it and prune to ``keep``.

        Returns ``{"path", "sha256", "version", "pruned"}``.
        """
        path = self.path()
        sha = save_bundle(bundle, path)
        pruned: list[str] = []
        if self.registry is not None:
            self.registry.promote(self._version())
            pause_point("registry:switched")
            if self.keep is not None:
                pruned = [p.name for p in self.registry.prune(self.keep)]
        return {"path": str(path), "sha256": sha, "version": self.version, "pruned": pruned}

    def reject(self, bundle: Bundle) -> Path:
        """Save ``bundle`` aside as ``*.rejected.pt`` (never served); return its path."""
        path = self.rejected_path()
        save_bundle(bundle, path)
        return path
