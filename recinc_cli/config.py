"""Frozen configuration dataclasses: the only place defaults live.

Architecture settings (:class:`ModelConfig`) are fixed at ``init`` and locked on ``update``;
training settings (:class:`TrainConfig`) are stored in the checkpoint as the defaults of the
next ``update`` and may be overridden per run.

>>> TrainConfig().replace(epochs=3).epochs
3
>>> parse_event_weights("view=1,cart=3")
{'view': 1.0, 'cart': 3.0}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from recinc_cli.errors import UsageError

#: Weights for common e-commerce event names; unknown event types get ``UNKNOWN_EVENT_WEIGHT``.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "pv": 1.0,
    "click": 1.0,
    "rating": 1.0,
    "interaction": 1.0,
    "fav": 2.0,
    "favorite": 2.0,
    "like": 2.0,
    "wishlist": 2.0,
    "cart": 3.0,
    "add_to_cart": 3.0,
    "addtocart": 3.0,
    "purchase": 5.0,
    "buy": 5.0,
    "order": 5.0,
    "transaction": 5.0,
}
UNKNOWN_EVENT_WEIGHT = 1.0
#: Event type given to rows of a log that has no event-type column.
DEFAULT_EVENT_TYPE = "interaction"


@dataclass(frozen=True)
class PreprocessConfig:
    """How to read a raw log: column names, separator, time unit, event weights and the limits
    beyond which a row is rejected.

    ``separator`` None means a tab for ``.tsv`` files and a comma otherwise; ``"tab"`` and
    ``"\\t"`` name the tab. Events outside ``[time_min, time_max]`` (fixed dates, so the same
    input always gives the same output) and ids longer than ``max_id_len`` characters are rejected.

    ``weight_col``: each event's weight is that column's number (e.g. a rating) instead of its
    event type's weight; ``min_weight``: events weighing less are filtered out (counted, not
    rejected: they are sound rows, just not wanted, e.g. ratings below 4).

    >>> PreprocessConfig(separator="tab").separator
    '\\t'
    """

    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    event_col: str = "event_type"
    time_unit: str = "auto"  # auto | s | ms | us | iso
    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    only_events: bool = False
    event_col_required: bool = False
    separator: str | None = None
    weight_col: str | None = None
    min_weight: float | None = None
    max_id_len: int = 1024
    #: keep only events after this time (``--since``), UTC; None keeps every time.
    since: dt.datetime | None = None
    time_min: dt.datetime = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    time_max: dt.datetime = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)

    def __post_init__(self) -> None:
        if self.time_unit not in ("auto", "s", "ms", "us", "iso"):
            raise UsageError(f"--time-unit must be one of auto, s, ms, us, iso (got {self.time_unit!r})")
        if self.separator is not None:
            sep = {"tab": "\t", "\\t": "\t"}.get(self.separator.lower(), self.separator)
            # polars reads a one-byte separator; a quote or line break cannot separate fields.
            if len(sep) != 1 or not sep.isascii() or sep in '"\r\n':
                raise UsageError(
                    f"--separator must be one ASCII character other than a quote or line break, "
                    f"or 'tab' (got {self.separator!r})"
                )
            object.__setattr__(self, "separator", sep)
        if self.min_weight is not None and not 0 <= self.min_weight < float("inf"):
            raise UsageError(f"--min-weight must be a number from 0 up (got {self.min_weight:g})")


#: The value of a setting that recinc chooses itself (``--pop-weight auto``). Spelled out, never
#: None: wherever settings are passed on, None means "not given" (keep what is stored).
AUTO: Final = "auto"
Auto = Literal["auto"]


def auto_or(value: float | Auto, fallback: float) -> float:
    """``value``, or ``fallback`` where it is still :data:`AUTO`.

    >>> auto_or(AUTO, 0.0), auto_or(2.5, 0.0)
    (0.0, 2.5)
    """
    return fallback if value == AUTO else float(value)


#: Feature groups of ``--model ranker`` (``--rank-features``): generator scores and ranks, item
#: popularity and trend, item age, user activity.
RANK_FEATURE_GROUPS: tuple[str, ...] = ("generators", "popularity", "item_age", "user")
#: Names accepted by ``--model``; ``recinc_cli.models.MODELS`` holds a class for each (tested).
#: The built-in models are listed here so validating a name does not import torch; a model
#: added through :func:`recinc_cli.models.register` is appended (with the sets below), which is
#: why these are mutable.
MODEL_NAMES: list[str] = ["mf", "sasrec", "ease", "sknn", "ranker"]
#: Models that read each user's recent events (``max_len`` of them).
SEQUENTIAL_MODELS: set[str] = {"sasrec", "ease", "sknn", "ranker"}
#: Models that embed item features (``--item-features``).
FEATURE_MODELS: set[str] = {"sasrec"}
#: Models trained by gradient steps (epochs, learning rate, batches, early stopping, Adam state);
#: the others are solved in closed form (``CLOSED_FORM`` in the registry agrees, tested).
GRADIENT_MODELS: set[str] = {"mf", "sasrec"}
#: Models built of transformer blocks (``--blocks``, ``--heads``, ``--dropout``).
ATTENTION_MODELS: set[str] = {"sasrec"}
#: Models that train against the popularity prior (``--pop-prior``; ``POP_PRIOR`` in the registry).
POP_PRIOR_MODELS: set[str] = {"mf", "sasrec"}


def declare_model(name: str, *, sequential: bool, gradient: bool, pop_prior: bool) -> None:
    """Make ``name`` a valid ``--model`` with the traits its options follow (the options of
    gradient models, of sequential models, ``--pop-prior``); called by
    :func:`recinc_cli.models.register`, which also registers the class.

    >>> declare_model("mf", sequential=False, gradient=True, pop_prior=True)  # already known: no change
    >>> MODEL_NAMES.count("mf")
    1
    """
    if name not in MODEL_NAMES:
        MODEL_NAMES.append(name)
    for traits, has in ((SEQUENTIAL_MODELS, sequential), (GRADIENT_MODELS, gradient), (POP_PRIOR_MODELS, pop_prior)):
        if has:
            traits.add(name)
        else:
            traits.discard(name)


#: :class:`ModelConfig` / :class:`TrainConfig` field -> the models it applies to; a field not
#: listed applies to every model. ``--help`` names these models (:func:`models_for`).
OPTION_MODELS: dict[str, set[str] | frozenset[str]] = {
    "dim": GRADIENT_MODELS,
    "max_len": SEQUENTIAL_MODELS,
    "blocks": ATTENTION_MODELS,
    "heads": ATTENTION_MODELS,
    "dropout": ATTENTION_MODELS,
    "item_features": FEATURE_MODELS,
    "ease_l2": frozenset({"ease", "ranker"}),
    "neighbors": frozenset({"sknn", "ranker"}),
    "candidates": frozenset({"ranker"}),
    "rank_features": frozenset({"ranker"}),
    "l2": frozenset({"mf"}),
    "pop_prior": POP_PRIOR_MODELS,
    **dict.fromkeys(
        (
            "epochs",
            "update_epochs",
            "lr",
            "update_lr",
            "batch_size",
            "n_negatives",
            "full_softmax_max_items",
            "init",
            "valid_last",
            "patience",
            "half_life_s",
            "replay_size",
            "replay_ratio",
            "anchor_weight",
            "distill_weight",
            "lr_schedule",
            "warmup",
        ),
        GRADIENT_MODELS,
    ),
    "future_window": frozenset({"sasrec"}),
    "time_inputs": frozenset({"sasrec"}),
}


def models_for(field: str) -> tuple[str, ...]:
    """The models, in :data:`MODEL_NAMES` order, that the option of config field ``field`` applies to.

    >>> "ease" in models_for("lr"), "ease" in models_for("ease_l2"), models_for("seed") == tuple(MODEL_NAMES)
    (False, True, True)
    """
    only = OPTION_MODELS.get(field)
    return tuple(n for n in MODEL_NAMES if only is None or n in only)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a model; locked once a model is created.

    ``name`` selects the model from :data:`recinc_cli.models.MODELS`. The sequence settings
    (``max_len`` events of context, ``blocks`` transformer blocks of ``heads`` heads,
    ``dropout``, ``item_features`` event columns embedded with each item) apply to
    sequential models (:data:`SEQUENTIAL_MODELS`) only.
    """

    name: str = "ranker"
    dim: int = 64
    max_len: int = 200
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    item_features: tuple[str, ...] = ()
    ease_l2: float = 30.0
    neighbors: int = 100
    candidates: int = 50
    rank_features: tuple[str, ...] = RANK_FEATURE_GROUPS
    time_inputs: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_features", tuple(self.item_features))
        object.__setattr__(self, "rank_features", tuple(self.rank_features))
        unknown = sorted(set(self.rank_features) - set(RANK_FEATURE_GROUPS))
        if unknown or not self.rank_features:
            raise UsageError(
                f"--rank-features takes one or more of {', '.join(RANK_FEATURE_GROUPS)} "
                f"(got {','.join(self.rank_features) or 'nothing'})"
            )
        if self.name not in MODEL_NAMES:
            raise UsageError(f"--model {self.name!r} is unknown; choose one of {', '.join(MODEL_NAMES)}")
        checks = {
            "--dim must be a positive integer": self.dim >= 1,
            "--max-len must be a positive integer": self.max_len >= 1,
            "--blocks must be a positive integer": self.blocks >= 1,
            "--heads must be a positive integer": self.heads >= 1,
            "--dropout must be in [0, 1)": 0 <= self.dropout < 1,
            "--dim must be a multiple of --heads": self.dim % max(self.heads, 1) == 0,
        }
        for message, ok in checks.items():
            if not ok:
                raise UsageError(
                    f"{message} (got dim={self.dim}, max_len={self.max_len}, blocks={self.blocks}, "
                    f"heads={self.heads}, dropout={self.dropout})"
                )
        if self.candidates < 1:
            raise UsageError(f"--candidates must be a positive integer (got {self.candidates})")
        if self.neighbors < 1:
            raise UsageError(f"--neighbors must be a positive integer (got {self.neighbors})")
        if not self.ease_l2 > 0:
            raise UsageError(f"--ease-l2 must be positive (got {self.ease_l2:g})")
        if self.item_features and self.name not in FEATURE_MODELS:
            raise UsageError(f"--item-features needs a model that embeds them ({', '.join(sorted(FEATURE_MODELS))})")
        reserved = {"user_id", "item_id", "timestamp", "event_type", "weight"}
        bad = sorted(set(self.item_features) & reserved)
        if bad:
            raise UsageError(f"--item-features {bad[0]!r} is a core column, not an item feature")

    @property
    def sequential(self) -> bool:
        """True when the model reads each user's recent events."""
        return self.name in SEQUENTIAL_MODELS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: What ``update`` does with events older than the watermark minus ``--allowed-lateness``.
LATE_POLICIES: tuple[str, ...] = ("keep", "drop", "fail")
#: Learning-rate schedules of one training run (after ``--warmup``).
LR_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings of one ``init`` or ``update`` run.

    ``epochs`` is the most ``init`` trains: with ``valid_fraction`` > 0 it holds out the newest
    events, stops once NDCG@10 on them has not improved for ``patience`` epochs, keeps the best
    epoch, then folds the held-out events in like an ``update`` (``update_epochs`` passes).
    Logs differ widely in how much training serves the near future best; this picks it per log.

    ``update_lr``: learning rate of ``update`` runs (and of ``init``'s pass over the held-out
    newest events); ``None`` = ``lr``. A model that already fits the log wants gentle steps on
    a new slice, as fine-tuning does, or it drifts towards the slice.

    ``valid_last``: hold out each user's last event instead (leave-one-out validation, as in
    published sequential-recommendation results); those events then become input context
    and seen items without being trained on.

    ``full_softmax_max_items``: catalogues up to this size train with the exact softmax over
    every item; larger ones with ``n_negatives`` sampled negatives per batch. ``auto`` chooses
    by cost, per run (:meth:`exact_softmax`).

    Incremental updates (:mod:`recinc_cli.training.incremental`):

    - ``pop_half_life_events``: half-life of the decayed popularity counted in events (an
      event's age = events folded after it); ``auto`` = set by ``init`` to a tenth of its
      events, 0 = use the wall-clock ``pop_half_life_s`` instead (``cooc_half_life_events``:
      the same for co-occurrences; ``auto`` = ``init``'s event count).
    - ``update_valid_fraction``: newest share of a slice held out to choose the update's epoch
      count (at most ``update_epochs``) and ``pop_weight``; then trained on too. 0 = off.
    - ``half_life_s``: sample weight x 2^(-(t_now - t) / half_life); 0 = no decay.
    - ``replay_size`` / ``replay_ratio``: reservoir of past events kept in the checkpoint, and
      how many of them (per slice event) each update mixes in.
    - ``anchor_weight``: L2 pull towards the parent's weights; ``distill_weight``: KL to the
      parent model's scores.
    - ``pop_weight``: scores = model logits + pop_weight x log(1 + decayed popularity);
      ``auto`` = chosen on the held-out events.
    - ``pop_prior``: train against the popularity prior: every event's logits get
      pop_prior x log(1 + popularity just before it) added (:mod:`recinc_cli.data.pop_prior`), so
      the model learns what users take beyond the trend of the time; 0 = off (mf and sasrec).
    - ``min_count``: sightings before a new user/item gets a row; ``expire_after_s``: items not
      seen for this long are not recommended (0 = never); ``prune`` also drops their training state.
    - ``allowed_lateness_s`` / ``late``: events older than watermark - lateness are kept,
      dropped or refused.
    - ``lr_schedule`` / ``warmup``: learning-rate schedule of each run (warm-up share of steps).
    - ``repeats``: serve and evaluate with items the user has seen ranked too (repeat clicks
      in a session, re-purchases); the default of ``recommend`` and ``evaluate``.
    """

    epochs: int = 30
    update_epochs: int = 10
    lr: float = 2e-3
    update_lr: float | None = None
    batch_size: int = 1024
    l2: float = 1e-6
    n_negatives: int = 4096
    full_softmax_max_items: int | Auto = AUTO
    init: str = "random"
    seed: int = 0
    pop_half_life_s: float = 14 * 86400.0
    pop_half_life_events: float | Auto = AUTO
    cooc_half_life_events: float | Auto = AUTO
    valid_fraction: float = 0.1
    valid_last: bool = False
    patience: int = 2
    # -- incremental updates (README "Incremental learning") --------------------------------
    update_valid_fraction: float = 0.2
    half_life_s: float = 0.0
    replay_size: int = 20_000
    replay_ratio: float = 0.5
    anchor_weight: float = 0.0
    distill_weight: float = 0.0
    pop_weight: float | Auto = AUTO
    pop_prior: float = 0.0
    min_count: int = 1
    expire_after_s: float = 0.0
    prune: bool = False
    allowed_lateness_s: float = 0.0
    late: str = "keep"
    lr_schedule: str = "constant"
    warmup: float = 0.0
    repeats: bool = False
    future_window: int = 1

    def __post_init__(self) -> None:
        checks = {
            "--epochs": self.epochs >= 1,
            "--update-epochs": self.update_epochs >= 1,
            "--lr": self.lr > 0,
            "--update-lr": self.update_lr is None or self.update_lr > 0,
            "--batch-size": self.batch_size >= 1,
            "--l2": self.l2 >= 0,
            "--negatives": self.n_negatives >= 1,
            "--pop-half-life": self.pop_half_life_s > 0 and auto_or(self.pop_half_life_events, 0.0) >= 0,
            "--valid-fraction": 0 <= self.valid_fraction < 1,
            "--patience": self.patience >= 1,
            "--update-valid-fraction": 0 <= self.update_valid_fraction < 1,
            "--half-life": self.half_life_s >= 0,
            "--replay-size": self.replay_size >= 0,
            "--replay-ratio": 0 <= self.replay_ratio <= 10,
            "--anchor-weight": self.anchor_weight >= 0,
            "--distill-weight": self.distill_weight >= 0,
            "--pop-weight": auto_or(self.pop_weight, 0.0) >= 0,
            "--pop-prior": 0 <= self.pop_prior <= 100,
            "--min-count": self.min_count >= 1,
            "--expire-after": self.expire_after_s >= 0,
            "--allowed-lateness": self.allowed_lateness_s >= 0,
            "--warmup": 0 <= self.warmup < 1,
            "--future-window": self.future_window >= 1,
        }
        for flag, ok in checks.items():
            if not ok:
                raise UsageError(f"{flag} is out of range; see `recinc init --help`")
        if self.late not in LATE_POLICIES:
            raise UsageError(f"--late must be one of {', '.join(LATE_POLICIES)} (got {self.late!r})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)} (got {self.lr_schedule!r})")
        if not (self.init in ("random", "zero") or self.init.startswith("pretrained:")):
            raise UsageError(f"--init must be random, zero or pretrained:PATH (got {self.init!r})")

    def exact_softmax(self, n_items: int, rows: int, events: int) -> bool:
        """Whether a run over ``events`` events trains with the exact softmax over all
        ``n_items`` (item 0, padding, included), computed as ``rows`` softmax rows, rather than
        the sampled one: up to ``full_softmax_max_items`` items when set, by cost at ``auto``
        (:data:`EXACT_SOFTMAX_PREMIUM`).

        >>> cfg = TrainConfig()
        >>> cfg.exact_softmax(8_193, rows=10_000, events=10_000), cfg.exact_softmax(8_194, 10_000, 10_000)
        (True, False)
        >>> cfg.replace(full_softmax_max_items=50_000).exact_softmax(20_001, 10_000, 10_000)
        True
        """
        if self.full_softmax_max_items != AUTO:
            return n_items - 1 <= int(self.full_softmax_max_items)
        return rows * (n_items - 1) <= EXACT_SOFTMAX_PREMIUM * events * self.n_negatives

    def for_update(self, lr: float | None = None) -> TrainConfig:
        """These settings with the learning rate of an update: ``lr`` if given, else ``update_lr``."""
        return dataclasses.replace(self, lr=lr or self.update_lr or self.lr)

    @property
    def row_init(self) -> str:
        """How new table rows start: ``zero`` or ``random`` (``pretrained:`` rows start random)."""
        return "zero" if self.init == "zero" else "random"

    @classmethod
    def for_model(cls, name: str, **changes: Any) -> TrainConfig:
        """Defaults tuned for model ``name`` (:data:`MODEL_TRAIN_DEFAULTS`), with ``changes``
        (``None`` values ignored) applied.

        >>> TrainConfig.for_model("sasrec", seed=3).lr, TrainConfig.for_model("mf").lr
        (0.003, 0.002)
        """
        return cls(**MODEL_TRAIN_DEFAULTS.get(name, {})).replace(**changes)

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with the non-``None`` values of ``changes`` applied."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as checkpoints and reports keep them: an :data:`AUTO` field is written
        None, as checkpoints have always stored it (so files stay as they were).

        >>> TrainConfig().to_dict()["pop_weight"] is None
        True
        """
        return {k: (None if v == AUTO and k in AUTO_FIELDS else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`; a stored None of an :data:`AUTO_FIELDS` field (how
        checkpoints keep it) reads as ``auto``."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {
            k: (AUTO if v is None and k in AUTO_FIELDS else v) for k, v in d.items() if k in known
        }
        return cls(**values)


#: TrainConfig fields that may be :data:`AUTO`.
AUTO_FIELDS: frozenset[str] = frozenset(
    {"pop_half_life_events", "cooc_half_life_events", "pop_weight", "full_softmax_max_items"}
)
#: At ``full_softmax_max_items`` auto, a run trains with the exact softmax while its logits per
#: epoch are at most this many times the sampled softmax's (its events x ``n_negatives``): a
#: sequential model up to 8,192 items at 4,096 negatives; ``mf``, whose exact softmax is one
#: row per user, far beyond that where users have many events each.
EXACT_SOFTMAX_PREMIUM = 2.0

#: TrainConfig fields that ``update`` stores as the lineage's new defaults when given (the
#: incremental policies); every other option of ``update`` applies to that run only.
POLICY_FIELDS: frozenset[str] = frozenset(
    {
        "update_valid_fraction",
        "half_life_s",
        "replay_size",
        "replay_ratio",
        "anchor_weight",
        "distill_weight",
        "pop_weight",
        "pop_prior",
        "future_window",
        "min_count",
        "expire_after_s",
        "prune",
        "allowed_lateness_s",
        "late",
        "lr_schedule",
        "warmup",
        "repeats",
    }
)


#: Training defaults that differ per model. A transformer wants a smaller step, larger batches
#: (in events: whole sequences) and more patience than matrix factorisation; see README "Models".
MODEL_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "mf": {"pop_prior": 1.0},
    "sasrec": {
        "lr": 3e-3,
        "update_lr": 1e-3,
        "batch_size": 4096,
        "epochs": 30,
        "update_epochs": 1,
        "patience": 5,
        # README "Streaming": +0.0054 NDCG@10 on MovieLens-100K, +0.0039 on MovieLens-1M.
        "pop_prior": 1.0,
    },
}

#: ``replay --strategies`` when none are given: what a nightly benchmark can afford. ``retrain``
#: (``init`` from scratch on everything so far, at every slice) costs about 2x an incremental
#: update for ease and 6-13x for mf and sasrec in README "Streaming", and grows with the log, so
#: it runs only when named.
DEFAULT_REPLAY_STRATEGIES: tuple[str, ...] = ("frozen", "incremental", "popular")


def parse_event_weights(text: str) -> dict[str, float]:
    """Parse ``"view=1,cart=3,purchase=5"`` into a dict.

    Raises :class:`UsageError` on a malformed pair.
    """
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or not 0 <= weight < float("inf"):  # inf: a NaN loss later
            raise UsageError(f"--event-weights: cannot read {part!r}; write NAME=WEIGHT pairs like view=1,cart=3")
        out[name.strip()] = weight
    return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Parse ``"14d"``, ``"12h"``, ``"90m"`` or plain seconds into seconds.

    >>> parse_duration("7d")
    604800.0
    """
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"cannot read duration {text!r}; use e.g. 30m, 12h, 7d, 2w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]
