"""The checkpoint file: a bundle written and read, its format versions and their migration.

A checkpoint is a plain dict of tensors and Python scalars/lists/dicts, so it loads with
``torch.load(path, weights_only=True)`` and never unpickles code. Keys:

``format_version``, ``recinc_version``, ``model_config`` (architecture, locked),
``train_config`` (defaults of the next update), ``weights`` (model state_dict),
``optimizer`` (list of optimizer state_dicts), ``users`` / ``items`` (raw id of each index,
index 0 reserved), ``seen_indptr`` / ``seen_indices`` (CSR of each user's seen items),
``item_pop`` (decayed item popularity, float32 per item index), ``pop_time_ms`` (the clock of
that decay), ``lineage`` (one dict per init/update). Since format 2 also ``event_types`` (raw
event type of each type index), ``features`` (item feature name -> raw value of each index)
and, for sequential models, ``context_indptr`` / ``context_items`` / ``context_types`` /
``context_ts_ms`` (each user's newest ``max_len`` events, see :mod:`recinc_cli.data.context`).
Since format 3 also ``item_last_ms`` (newest event time of each item, for ``--expire-after``),
``pop_weight`` (the popularity logit adjustment chosen by the last update) and ``pop_evidence``
(the held-out NDCG behind that choice, per candidate weight), ``pop_clock`` (events folded: the
clock of ``item_pop`` under ``pop_half_life_events``), the replay
reservoir (``replay_user`` / ``replay_item`` / ``replay_type`` / ``replay_weight`` /
``replay_ts_ms``, ``replay_size``, ``replay_seen``) and the admission counts
(``pending_user_ids`` / ``pending_user_counts`` / ``pending_item_ids`` / ``pending_item_counts``).
``pop_time_ms`` is the watermark: the newest event time applied.
Since format 4 also ``checksum``: the sha256 of everything else (:mod:`recinc_cli.store.checksum`),
verified on load, so a flipped bit or an edited value is an error, not a silently wrong model.
Since format 5 the raw ids (``users``, ``items``, ``event_types`` and each ``features`` entry)
are a uint8 tensor: their UTF-8 joined by newlines (:func:`pack_ids`; a vocabulary with an id
holding a newline stays a list of strings). The weights-only unpickler reads a list of strings
one opcode at a time: 4.2 s of a 4.5 s load at 471k users, where the tensor reads at disk
speed. :func:`read_payload` gives the dict with the ids as lists whatever the version.
Format 1 files (mf only) load with empty event types and features; format 1 and 2 files load
with an empty reservoir, no waiting ids and every item last seen at the watermark.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recinc_cli import __version__
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.admission import Admission
from recinc_cli.data.context import Context
from recinc_cli.data.io import _first_line, atomic_path
from recinc_cli.data.reservoir import KEYS as RESERVOIR_KEYS
from recinc_cli.data.reservoir import Reservoir
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import CheckpointError, UsageError
from recinc_cli.failpoints import pause_point
from recinc_cli.models import build_model
from recinc_cli.store.bundle import Bundle, table_sizes
from recinc_cli.store.checksum import payload_digest
from recinc_cli.store.registry import resolve_checkpoint

FORMAT_VERSION = 5
_ID_KEYS = ("users", "items", "event_types", "pending_user_ids", "pending_item_ids")
_COUNT_KEYS = ("pending_user_counts", "pending_item_counts")
_CONTEXT_KEYS = ("context_indptr", "context_items", "context_types", "context_ts_ms")
_REQUIRED = (
    "format_version",
    "model_config",
    "train_config",
    "weights",
    "optimizer",
    "users",
    "items",
    "seen_indptr",
    "seen_indices",
    "item_pop",
    "pop_time_ms",
    "lineage",
)


def to_payload(bundle: Bundle) -> dict[str, Any]:
    """``bundle`` as the plain dict a checkpoint file holds (keys: the module docstring)."""
    return {
        "format_version": FORMAT_VERSION,
        "recinc_version": __version__,
        "model_config": bundle.model_cfg.to_dict(),
        "train_config": bundle.train_cfg.to_dict(),
        "weights": {k: _own(v.detach()) for k, v in bundle.model.state_dict().items()},
        "optimizer": bundle.optimizer,
        "users": pack_ids(bundle.users.ids),
        "items": pack_ids(bundle.items.ids),
        "seen_indptr": bundle.seen.indptr,
        "seen_indices": bundle.seen.indices,
        "item_pop": bundle.item_pop,
        "pop_time_ms": int(bundle.pop_time_ms),
        "lineage": bundle.lineage,
        "event_types": pack_ids(bundle.types.ids),
        "features": {name: pack_ids(v.ids) for name, v in bundle.features.items()},
        "item_last_ms": bundle.item_last_ms,
        "pop_weight": float(bundle.pop_weight),
        "pop_evidence": [float(x) for x in bundle.pop_evidence],
        "pop_clock": int(bundle.pop_clock),
        **{k: torch.from_numpy(a.copy()) for k, a in zip(RESERVOIR_KEYS, bundle.reservoir.arrays(), strict=True)},
        "replay_size": int(bundle.reservoir.size),
        "replay_seen": int(bundle.reservoir.n_seen),
        **_packed_admission(bundle.admission.to_dict()),
        **(
            {}
            if bundle.context is None
            else dict(
                zip(
                    _CONTEXT_KEYS,
                    (bundle.context.indptr, bundle.context.items, bundle.context.types, bundle.context.ts_ms),
                    strict=True,
                )
            )
        ),
    }


def pack_ids(ids: list[str]) -> torch.Tensor | list[str]:
    """Raw ids as one (bytes,) uint8 tensor of their UTF-8 joined by newlines; a copy of the
    list where an id holds a newline (the join could not be split back).

    >>> packed = pack_ids(["", "u1", "ü"])
    >>> packed.dtype, unpack_ids(packed)
    (torch.uint8, ['', 'u1', 'ü'])
    >>> pack_ids(["", "a\\nb"])
    ['', 'a\\nb']
    """
    text = "\n".join(ids)
    if text.count("\n") != len(ids) - 1:
        return list(ids)
    return torch.from_numpy(np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8).copy())


def unpack_ids(value: torch.Tensor | list[str]) -> list[str]:
    """The ids :func:`pack_ids` packed (a list, as format 4 and older store them, as is)."""
    if isinstance(value, torch.Tensor):
        return value.numpy().tobytes().decode("utf-8", "surrogatepass").split("\n")
    return list(value)


def _packed_admission(pending: dict[str, Any]) -> dict[str, Any]:
    """Waiting ids packed as :func:`pack_ids` packs a vocabulary, their counts as int64."""
    packed = {k: pack_ids(v) if k in _ID_KEYS else v for k, v in pending.items()}
    return packed | {k: torch.tensor(pending[k], dtype=torch.int64) for k in _COUNT_KEYS}


def _unpacked(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ids as lists of strings and waiting counts as lists of ints."""
    out: dict[str, Any] = {k: unpack_ids(v) if k in _ID_KEYS else v for k, v in raw.items()}
    for key in _COUNT_KEYS:
        if isinstance(raw.get(key), torch.Tensor):
            out[key] = raw[key].tolist()
    if "features" in raw:
        out["features"] = {name: unpack_ids(v) for name, v in raw["features"].items()}
    return out


def read_payload(path: str | Path) -> dict[str, Any]:
    """A checkpoint's raw dict (``torch.load(path, weights_only=True)``) with every id
    vocabulary as a list of strings, whatever the format version: for inspecting a file."""
    return _unpacked(torch.load(path, map_location="cpu", weights_only=True))


def save_bundle(bundle: Bundle, path: str | Path) -> str:
    """Write ``bundle`` atomically to ``path`` with its payload checksum; return the file's sha256.

    The file is streamed to a temp file beside ``path`` (hashed as it goes) and renamed into
    place: a kill at any moment leaves a temp file (removed by the next write), never a partial
    ``path``. Serialising in memory first held a second copy of the whole file at the peak of
    an ``update`` (685 MB at the medium log's 600 MB checkpoint).
    """
    payload = to_payload(bundle)
    payload["checksum"] = payload_digest(payload)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pause_point("save:open")
            sink = _HashingWriter(fh, pause_after=max(_tensor_bytes(payload) // 2, 1))
            try:
                torch.save(payload, sink)  # type: ignore[arg-type]  # torch needs only write()
            except RuntimeError:
                # torch's zip writer reports a failed write (a full disk) as its own error.
                if sink.error is not None:
                    raise sink.error from None
                raise
        pause_point("save:written")
    pause_point("save:renamed")
    return sink.sha256.hexdigest()


class _HashingWriter:
    """A write-only file for ``torch.save``: passes bytes on to ``fh``, hashes them, and reaches
    the ``save:partial`` pause point once, after ``pause_after`` bytes (the crash tests' mid-write
    kill)."""

    def __init__(self, fh: Any, pause_after: int) -> None:
        self.fh, self.sha256, self.written, self.pause_after = fh, hashlib.sha256(), 0, pause_after
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            self.fh.write(data)
        except OSError as e:
            self.error = e
            raise
        self.sha256.update(data)
        n = memoryview(data).nbytes
        before, self.written = self.written, self.written + n
        if before < self.pause_after <= self.written:
            self.fh.flush()
            pause_point("save:partial")
        return n

    def flush(self) -> None:
        self.fh.flush()


def _tensor_bytes(o: Any) -> int:
    """Bytes of the tensors in ``o`` (nested dicts and lists)."""
    if isinstance(o, torch.Tensor):
        return o.nbytes
    if isinstance(o, dict):
        return sum(_tensor_bytes(v) for v in o.values())
    if isinstance(o, list | tuple):
        return sum(_tensor_bytes(v) for v in o)
    return 0


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a copy when it is a view of a larger storage (``torch.save`` writes a view's
    whole storage: the ranker's pool is a slice of a longer tensor). A copy of every weight
    added the model's size to the peak of a save.

    >>> base = torch.arange(10.0)
    >>> _own(base) is base, _own(base[2:5]).untyped_storage().nbytes()
    (True, 12)
    """
    whole = t.is_contiguous() and t.storage_offset() == 0 and t.untyped_storage().nbytes() == t.nbytes
    return t if whole else t.clone()


def read_watermark_ms(path: str | Path) -> int:
    """The newest event time checkpoint ``path`` (or a registry's ``LATEST``) has folded in,
    unix ms, read without loading its tensors (memory-mapped). Raises :class:`CheckpointError`
    when the file is no checkpoint."""
    path = _checked_file(resolve_checkpoint(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(raw["pop_time_ms"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({_first_line(e)}); restore it from a backup") from e


def _checked_file(path: Path) -> Path:
    """``path`` if it exists and opens like a torch checkpoint; else :class:`CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; check the path")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not a recinc checkpoint (not a torch .pt file); check the path")
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` if unusable.

    ``path`` may be a registry directory: its ``LATEST`` version is loaded.
    """
    path = _checked_file(resolve_checkpoint(path))
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain values "
            "(not written by recinc: possibly malicious, or damaged); nothing in it was run"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({_first_line(e)}); restore it from a backup") from e
    if not isinstance(raw, dict) or any(k not in raw for k in _REQUIRED):
        raise CheckpointError(f"{path}: not a recinc checkpoint (required keys are missing)")
    if raw["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {raw['format_version']} is newer than this recinc "
            f"({__version__}, format {FORMAT_VERSION}); upgrade recinc"
        )
    _verify_checksum(raw, path)
    try:
        return _from_dict(_unpacked(raw))
    except (KeyError, TypeError, ValueError, RuntimeError, UsageError) as e:
        raise CheckpointError(f"{path}: damaged or inconsistent checkpoint ({_first_line(e)})") from e


def _verify_checksum(raw: dict[str, Any], path: Path) -> None:
    """Pop ``checksum`` from ``raw`` and check it (format 4 on; older files have none)."""
    stored = raw.pop("checksum", None)
    if raw["format_version"] < 4:  # written before checksums
        return
    try:
        actual = payload_digest(raw)
    except TypeError as e:
        raise CheckpointError(f"{path}: damaged checkpoint ({e}); restore it from a backup") from e
    if stored != actual:
        raise CheckpointError(
            f"{path}: damaged checkpoint (payload checksum mismatch: "
            f"stored {str(stored)[:12]}, content {actual[:12]}); restore it from a backup or `recinc rollback`"
        )


def _from_dict(raw: dict[str, Any]) -> Bundle:
    # Every checkpoint names its model; "mf" was the default before 0.8.0, should one not.
    # Time inputs came in 0.9.0 (off unless asked for): an older sasrec has none.
    model_cfg = ModelConfig(**{"name": "mf", "time_inputs": False, **raw["model_config"]})
    users, items = Vocab(list(raw["users"])), Vocab(list(raw["items"]))
    types = Vocab(list(raw.get("event_types", [""])))
    features = {name: Vocab(list(ids)) for name, ids in raw.get("features", {}).items()}
    if sorted(features) != sorted(model_cfg.item_features):
        raise ValueError("item feature vocabularies disagree with the model config")
    context = None
    if model_cfg.sequential:
        context = Context(*(raw[k] for k in _CONTEXT_KEYS))
        if context.n_users != len(users):
            raise ValueError("context size disagrees with the user vocabulary")
    model = build_model(model_cfg, table_sizes(users, items, types, features))
    model.load_state_dict(raw["weights"])
    seen = SeenItems(raw["seen_indptr"], raw["seen_indices"])
    if seen.n_users != len(users) or len(raw["item_pop"]) != len(items):
        raise ValueError("vocabulary sizes disagree with the stored tables")
    train_cfg = TrainConfig.from_dict(raw["train_config"])
    if "item_last_ms" in raw:
        item_last_ms = raw["item_last_ms"].to(torch.int64)
        reservoir = Reservoir.of(
            [raw[k].numpy() for k in RESERVOIR_KEYS], size=int(raw["replay_size"]), n_seen=int(raw["replay_seen"])
        )
    else:  # format 1-2: nothing sampled yet; every item counts as seen at the watermark
        item_last_ms = torch.full((len(items),), int(raw["pop_time_ms"]), dtype=torch.int64)
        reservoir = Reservoir.empty(train_cfg.replay_size)
    if len(item_last_ms) != len(items) or len({len(a) for a in reservoir.arrays()}) != 1:
        raise ValueError("item times or replay arrays disagree with the vocabularies")
    return Bundle(
        types=types,
        features=features,
        context=context,
        model=model,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        users=users,
        items=items,
        seen=seen,
        item_pop=raw["item_pop"],
        pop_time_ms=int(raw["pop_time_ms"]),
        optimizer=raw["optimizer"],
        lineage=list(raw["lineage"]),
        item_last_ms=item_last_ms,
        pop_weight=float(raw.get("pop_weight", 0.0)),
        pop_evidence=[float(x) for x in raw.get("pop_evidence", [])],
        pop_clock=int(raw.get("pop_clock", 0)),
        reservoir=reservoir,
        admission=Admission.from_dict(raw),
    )
