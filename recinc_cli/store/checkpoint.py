"""The self-describing ``.pt`` bundle: everything needed to update, recommend and evaluate.

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
Format 1 files (mf only) load with empty event types and features; format 1 and 2 files load
with an empty reservoir, no waiting ids and every item last seen at the watermark.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recinc_cli import __version__
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.admission import Admission
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.io import _first_line, atomic_path
from recinc_cli.data.popularity import PopClock
from recinc_cli.data.reservoir import KEYS as RESERVOIR_KEYS
from recinc_cli.data.reservoir import Reservoir
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import CheckpointError, UsageError
from recinc_cli.failpoints import pause_point
from recinc_cli.models import build_model
from recinc_cli.models.base import Recommender
from recinc_cli.serving.history import ServingState, with_history
from recinc_cli.serving.recommend import ScoreFn, adjusted_scorer, model_scorer
from recinc_cli.store.checksum import payload_digest
from recinc_cli.store.registry import resolve_checkpoint

FORMAT_VERSION = 4
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


def table_sizes(users: Vocab, items: Vocab, types: Vocab, features: dict[str, Vocab]) -> dict[str, int]:
    """The ``sizes`` a model is built or grown with: one entry per vocabulary."""
    return {
        "user": len(users),
        "item": len(items),
        "type": len(types),
        **{f"feat:{name}": len(v) for name, v in features.items()},
    }


@dataclass
class Bundle:
    """A model with its vocabularies, optimizer state, history and serving state."""

    model: Recommender
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    users: Vocab
    items: Vocab
    seen: SeenItems
    item_pop: torch.Tensor
    pop_time_ms: int
    optimizer: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    types: Vocab = field(default_factory=Vocab.empty)
    features: dict[str, Vocab] = field(default_factory=dict)
    #: each user's newest events; None for models that do not read them.
    context: Context | None = None
    #: (n_items,) int64 newest event time of each item, unix ms (0 = never).
    item_last_ms: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.int64))
    #: weight of log(1 + item_pop) added to the model's scores.
    pop_weight: float = 0.0
    #: events folded so far: the clock of ``item_pop`` under ``pop_half_life_events``.
    pop_clock: int = 0
    #: evidence for each candidate popularity weight (:func:`~recinc_cli.training.early_stop.choose_pop_weight`).
    pop_evidence: list[float] = field(default_factory=list)
    reservoir: Reservoir = field(default_factory=lambda: Reservoir.empty(0))
    admission: Admission = field(default_factory=Admission.empty)

    def __post_init__(self) -> None:
        if len(self.item_last_ms) < len(self.items):  # a bundle built by hand: items never seen
            last = torch.zeros(len(self.items), dtype=torch.int64)
            last[: len(self.item_last_ms)] = self.item_last_ms
            self.item_last_ms = last

    @property
    def watermark_ms(self) -> int:
        """Newest event time applied (unix ms); 0 before any."""
        return int(self.pop_time_ms)

    def sizes(self) -> dict[str, int]:
        """Rows of every growing table axis (see :class:`~recinc_cli.models.base.Recommender`)."""
        return table_sizes(self.users, self.items, self.types, self.features)

    def scorer(self, context: Context | None = None, pop_weight: float | None = None) -> ScoreFn:
        """Score function of user indices for :func:`~recinc_cli.serving.recommend.top_k`: the model's
        logits + ``pop_weight`` (default: the stored one) x log(1 + decayed popularity), with
        expired items at -inf.

        Sequential models read each user's events from ``context`` (default: the stored one).
        """
        base = model_scorer(self.model.eval(), context if context is not None else self.context)
        weight = self.pop_weight if pop_weight is None else pop_weight
        return adjusted_scorer(base, torch.log1p(self.item_pop), weight, self.expired())

    def popular_scorer(self) -> ScoreFn:
        """Decayed popularity for every user, expired items at -inf (cold start, baseline)."""
        return adjusted_scorer(None, self.item_pop, 1.0, self.expired())

    def expired(self) -> torch.Tensor | None:
        """(n_items,) bool: items not seen for ``expire_after_s`` before the watermark; None
        when expiry is off."""
        after = self.train_cfg.expire_after_s
        if after <= 0:
            return None
        expired = self.item_last_ms < self.watermark_ms - int(after * 1000)
        expired[0] = False  # the padding row is no item
        return expired

    def serving_state(self, events: pl.DataFrame | None = None) -> ServingState:
        """Context and seen items to serve from, extended in memory with fresh ``events``
        (:func:`~recinc_cli.serving.history.with_history`); nothing in the bundle changes."""
        if events is None:
            return ServingState(len(self.users), [], self.context, self.seen)
        return with_history(events, self.users, self.items, self.types, self.seen, self.context, self.model_cfg.max_len)

    def fold(self, data: TrainData) -> None:
        """Add trained-on events to the seen items, the context and the decayed popularity."""
        self.seen = self.seen.merge(data.user_idx, data.item_idx, len(self.users))
        if self.context is not None:
            self.context = self.context.extend(
                data.user_idx, data.item_idx, data.types(), data.ts_ms, len(self.users), self.model_cfg.max_len
            )
        last = torch.zeros(len(self.items), dtype=torch.int64)
        last[: len(self.item_last_ms)] = self.item_last_ms
        self.item_last_ms = last.scatter_reduce(
            0, torch.as_tensor(data.item_idx.copy()), torch.as_tensor(data.ts_ms.copy()), reduce="amax"
        )
        self.item_pop, _ = self.popularity_clock().fold(
            self.item_pop, data.item_idx, data.weight, data.ts_ms, len(self.items)
        )
        self.pop_clock += len(data)
        self.pop_time_ms = max(int(self.pop_time_ms), int(data.ts_ms.max(initial=0)))

    def popularity_clock(self) -> PopClock:
        """The clock ``item_pop`` is read at now: events folded (half-life
        ``pop_half_life_events``), or the watermark in ms when that is 0 (``pop_half_life_s``).

        Event clock: an event's age is the number of events folded after it, so the prior
        follows the log's pace whether a slice spans an hour or a year.
        """
        hl_events = self.train_cfg.pop_half_life_events or 0.0
        if hl_events > 0:
            return PopClock(int(self.pop_clock), hl_events, events=True)
        return PopClock(int(self.pop_time_ms), self.train_cfg.pop_half_life_s * 1000.0, events=False)

    def applied_data(self) -> set[str]:
        """sha256 of every data file this lineage has been trained on."""
        return {e["data_sha256"] for e in self.lineage if e.get("data_sha256")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "recinc_version": __version__,
            "model_config": self.model_cfg.to_dict(),
            "train_config": self.train_cfg.to_dict(),
            "weights": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer,
            "users": list(self.users.ids),
            "items": list(self.items.ids),
            "seen_indptr": self.seen.indptr,
            "seen_indices": self.seen.indices,
            "item_pop": self.item_pop,
            "pop_time_ms": int(self.pop_time_ms),
            "lineage": self.lineage,
            "event_types": list(self.types.ids),
            "features": {name: list(v.ids) for name, v in self.features.items()},
            "item_last_ms": self.item_last_ms,
            "pop_weight": float(self.pop_weight),
            "pop_evidence": [float(x) for x in self.pop_evidence],
            "pop_clock": int(self.pop_clock),
            **{k: torch.from_numpy(a.copy()) for k, a in zip(RESERVOIR_KEYS, self.reservoir.arrays(), strict=True)},
            "replay_size": int(self.reservoir.size),
            "replay_seen": int(self.reservoir.n_seen),
            **self.admission.to_dict(),
            **(
                {}
                if self.context is None
                else dict(
                    zip(
                        _CONTEXT_KEYS,
                        (self.context.indptr, self.context.items, self.context.types, self.context.ts_ms),
                        strict=True,
                    )
                )
            ),
        }


def save_bundle(bundle: Bundle, path: str | Path) -> str:
    """Write ``bundle`` atomically to ``path`` with its payload checksum; return the file's sha256.

    The file is serialised in memory first, then written in two halves: a kill at any moment
    leaves a temp file (removed by the next write), never a partial ``path``.
    """
    payload = bundle.to_dict()
    payload["checksum"] = payload_digest(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pause_point("save:open")
            half = len(data) // 2
            fh.write(data[:half])
            fh.flush()
            pause_point("save:partial")
            fh.write(data[half:])
        pause_point("save:written")
    pause_point("save:renamed")
    return hashlib.sha256(data).hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Load a checkpoint with ``weights_only=True``; raise :class:`CheckpointError` if unusable.

    ``path`` may be a registry directory: its ``LATEST`` version is loaded.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; check the path")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not a recinc checkpoint (not a torch .pt file); check the path")
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
        return _from_dict(raw)
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
