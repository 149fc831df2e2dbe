"""Option groups that several commands share, each declared once.

A group is a tuple of :class:`Opt`: the flag, the config field it sets, its type, help and how
its text is read. :func:`with_options` adds a group's parameters to a command's signature (typer
reads the signature), and hands the command the values given on the command line as config
fields. So a new incremental policy is one line here (and its field in
:class:`~recinc_cli.config.TrainConfig`); ``init``, ``update`` and ``replay`` all take it, and a
test checks the group against :data:`~recinc_cli.config.POLICY_FIELDS`.

>>> [o.field for o in POLICY_OPTIONS][:3]
['update_valid_fraction', 'half_life_s', 'replay_size']
>>> read_given(POLICY_OPTIONS, {"half_life": "7d", "pop_weight": "auto", "late": None})
{'half_life_s': 604800.0, 'pop_weight': 'auto'}
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from recinc_cli.cli.helptext import applies, train_option
from recinc_cli.config import (
    AUTO,
    DEFAULT_EVENT_WEIGHTS,
    DEFAULT_REPLAY_STRATEGIES,
    LATE_POLICIES,
    LR_SCHEDULES,
    Auto,
    ModelConfig,
    PreprocessConfig,
    TrainConfig,
    parse_duration,
    parse_event_weights,
)
from recinc_cli.errors import UsageError


def _same(value: Any) -> Any:
    return value


def duration_or_zero(text: str) -> float:
    """Seconds of ``text`` (``7d``, ``12h``, ...); ``0``, ``off`` or ``none`` mean 0 (off).

    >>> duration_or_zero("off"), duration_or_zero("90m")
    (0.0, 5400.0)
    """
    return 0.0 if text.strip() in ("0", "off", "none") else parse_duration(text)


def pop_weight(text: str) -> float | Auto:
    """A number, or ``auto`` (chosen on held-out events).

    >>> pop_weight("2"), pop_weight(" Auto ")
    (2.0, 'auto')
    """
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--pop-weight must be a number or auto (got {text!r})") from None


def count_or_auto(flag: str) -> Callable[[str], int | Auto]:
    """A reader of ``flag``'s value: a non-negative whole number, or ``auto``.

    >>> count_or_auto("--n")("20000"), count_or_auto("--n")("auto")
    (20000, 'auto')
    """

    def read(text: str) -> int | Auto:
        if text.strip().lower() == AUTO:
            return AUTO
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0:
            raise UsageError(f"{flag} must be a whole number of items or auto (got {text!r})")
        return value

    return read


@dataclass(frozen=True)
class Opt:
    """One command-line option: parameter ``param`` (flag ``--param-name`` unless ``decls``
    says otherwise) of type ``kind`` sets config field ``field`` to ``read(value)``; not given
    (None) sets nothing."""

    param: str
    field: str
    kind: Any
    help: str
    read: Callable[[Any], Any] = _same
    decls: tuple[str, ...] = ()
    metavar: str | None = None
    default: Any = None

    def parameter(self) -> inspect.Parameter:
        given = self.default is not None
        info = typer.Option(*self.decls, help=self.help, metavar=self.metavar, show_default=given)
        kind = self.kind if given else self.kind | None
        return inspect.Parameter(
            self.param, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, info], default=self.default
        )


#: The incremental policies: stored by ``init`` as the lineage's defaults, by ``update`` for
#: later updates, and applied to ``replay``'s incremental updates.
POLICY_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "update_valid_fraction",
        "update_valid_fraction",
        float,
        "Newest share of each slice held out to choose the update's epochs and --pop-weight; 0 = off.",
    ),
    Opt(
        "half_life",
        "half_life_s",
        str,
        applies("half_life_s", "Time decay of training weights, w x 2^(-age/half-life), e.g. 7d; 0 = off."),
        duration_or_zero,
    ),
    Opt(
        "replay_size",
        "replay_size",
        int,
        applies("replay_size", "Past events kept in the checkpoint's replay reservoir."),
    ),
    Opt(
        "replay_ratio",
        "replay_ratio",
        float,
        applies("replay_ratio", "Replayed past events mixed into each update, per slice event; 0 = off."),
    ),
    Opt(
        "anchor_weight",
        "anchor_weight",
        float,
        applies("anchor_weight", "L2 pull towards the parent's weights; 0 = off."),
    ),
    Opt(
        "distill_weight",
        "distill_weight",
        float,
        applies("distill_weight", "Distillation from the parent model's scores; 0 = off."),
    ),
    Opt(
        "pop_weight",
        "pop_weight",
        str,
        "Weight of log(1 + decayed popularity) added to the scores, or auto (chosen).",
        pop_weight,
    ),
    Opt("min_count", "min_count", int, "Sightings before a new user/item gets a row (counts persist)."),
    Opt(
        "expire_after",
        "expire_after_s",
        str,
        "Never recommend items not seen for this long, e.g. 90d; 0 = never.",
        duration_or_zero,
    ),
    Opt("prune", "prune", bool, "Also drop expired items' training state.", decls=("--prune/--no-prune",)),
    Opt(
        "allowed_lateness",
        "allowed_lateness_s",
        str,
        "How far before the watermark an event may be and not count as late, e.g. 1d.",
        duration_or_zero,
    ),
    Opt("late", "late", str, "Late events (fail: exit 8).", metavar="[" + "|".join(LATE_POLICIES) + "]"),
    Opt(
        "lr_schedule",
        "lr_schedule",
        str,
        applies("lr_schedule", "Learning-rate schedule of a run."),
        metavar="[" + "|".join(LR_SCHEDULES) + "]",
    ),
    Opt("warmup", "warmup", float, applies("warmup", "Share of a run's steps spent warming the learning rate up.")),
    Opt(
        "repeats",
        "repeats",
        bool,
        "Serve and evaluate with items the user has already seen ranked too (repeat clicks in a "
        "session, re-purchases); stored as recommend's and evaluate's default. [default: off]",
        decls=("--repeats/--no-repeats",),
    ),
)


def names(csv: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(x.strip() for x in csv.split(",") if x.strip())


_ARCH = ModelConfig()
#: The architecture (:class:`~recinc_cli.config.ModelConfig` less ``--model``): fixed at ``init``
#: and locked for the model's lifetime; ``replay`` takes the ones its base model needs.
ARCH_OPTIONS: tuple[Opt, ...] = (
    Opt("dim", "dim", int, applies("dim", "Embedding size."), default=_ARCH.dim),
    Opt(
        "max_len",
        "max_len",
        int,
        applies("max_len", "Events of each user's context the model reads."),
        default=_ARCH.max_len,
    ),
    Opt("blocks", "blocks", int, applies("blocks", "Transformer blocks."), default=_ARCH.blocks),
    Opt("heads", "heads", int, applies("heads", "Attention heads (must divide --dim)."), default=_ARCH.heads),
    Opt("dropout", "dropout", float, applies("dropout", "Dropout rate."), default=_ARCH.dropout),
    Opt(
        "item_features",
        "item_features",
        str,
        applies("item_features", "Comma-separated item attribute columns of EVENTS to embed, e.g. category."),
        names,
    ),
    Opt(
        "ease_l2",
        "ease_l2",
        float,
        applies("ease_l2", "Ridge penalty, as a multiple of the mean diagonal of the co-occurrence matrix."),
        default=_ARCH.ease_l2,
    ),
    Opt(
        "candidates",
        "candidates",
        int,
        applies("candidates", "Items each candidate generator proposes per user, pooled for ranking."),
        default=_ARCH.candidates,
    ),
    Opt(
        "rank_features",
        "rank_features",
        str,
        applies(
            "rank_features",
            "Comma-separated feature groups the ranker learns from: generators, popularity, item_age, user.",
        ),
        names,
        default=",".join(_ARCH.rank_features),
    ),
    Opt(
        "time_inputs",
        "time_inputs",
        bool,
        applies(
            "time_inputs",
            "Read event times: the gap since the previous event as an input and each event's age, "
            "seen from the predicting position, as an attention bias (both log-bucketed).",
        ),
        default=_ARCH.time_inputs,
    ),
)


def only(group: tuple[Opt, ...], *params: str) -> tuple[Opt, ...]:
    """The options of ``group`` named ``params``, in the group's order."""
    missing = set(params) - {o.param for o in group}
    if missing:
        raise ValueError(f"no such options in the group: {sorted(missing)}")
    return tuple(o for o in group if o.param in params)


def pop_half_life(text: str) -> dict[str, Any]:
    """``--pop-half-life``: auto, NNNev (events) or a duration, as TrainConfig fields.

    >>> pop_half_life("auto"), pop_half_life("5000ev")
    ({'pop_half_life_events': 'auto'}, {'pop_half_life_events': 5000.0})
    >>> pop_half_life("1d")
    {'pop_half_life_s': 86400.0, 'pop_half_life_events': 0.0}
    """
    t = text.strip().lower()
    if t == AUTO:
        return {"pop_half_life_events": AUTO}
    if t.endswith("ev"):
        try:
            return {"pop_half_life_events": float(t.removesuffix("ev"))}
        except ValueError:
            raise UsageError(f"--pop-half-life: cannot read {text!r}; use auto, 5000ev or 14d") from None
    return {"pop_half_life_s": parse_duration(t), "pop_half_life_events": 0.0}


POP_PRIOR_HELP = train_option(
    "pop_prior",
    "Train against the popularity prior, each event's logits + W x log(1 + popularity at its "
    "time), so the model learns what users take beyond the trend; 0 = off.",
)
FUTURE_WINDOW_HELP = train_option(
    "future_window",
    "Train each position for the user's next N events at once (half the loss) beside the "
    "next one (the rest): what a nightly update is judged on; 1 = next item only.",
)
_TRAIN = TrainConfig()
#: How ``init`` trains (:class:`~recinc_cli.config.TrainConfig`, per-model defaults where
#: ``--help`` shows several); stored as the defaults of later updates where they apply.
#: Field ``*``: the option sets several fields (its reader returns them).
TRAIN_OPTIONS: tuple[Opt, ...] = (
    Opt("epochs", "epochs", int, train_option("epochs", "Most training epochs (early stopping picks fewer).")),
    Opt("update_epochs", "update_epochs", int, train_option("update_epochs", "Default epochs of later updates.")),
    Opt("lr", "lr", float, train_option("lr", "Adam learning rate.")),
    Opt(
        "update_lr",
        "update_lr",
        float,
        train_option("update_lr", "Default learning rate of later updates.", none="the --lr"),
    ),
    Opt("batch_size", "batch_size", int, train_option("batch_size", "Events per batch.")),
    Opt("l2", "l2", float, applies("l2", "L2 penalty on the embeddings a batch touches."), default=_TRAIN.l2),
    Opt("pop_prior", "pop_prior", float, POP_PRIOR_HELP),
    Opt("future_window", "future_window", int, FUTURE_WINDOW_HELP),
    Opt(
        "negatives",
        "n_negatives",
        int,
        applies("n_negatives", "Sampled negatives per batch where the softmax is sampled (--full-softmax-max-items)."),
        default=_TRAIN.n_negatives,
    ),
    Opt(
        "full_softmax_max_items",
        "full_softmax_max_items",
        str,
        applies(
            "full_softmax_max_items",
            "Largest catalogue trained with the exact softmax over every item, or auto: exact while it "
            "costs at most twice the sampled softmax (up to 8,192 items for sasrec at 4,096 negatives).",
        ),
        count_or_auto("--full-softmax-max-items"),
        default=AUTO,
    ),
    Opt(
        "pop_half_life",
        "*",
        str,
        "Half-life of the decayed popularity (cold start and the score adjustment): auto (a tenth "
        "of EVENTS' events), a number of events like 5000ev, or a duration like 14d.",
        pop_half_life,
        default="auto",
    ),
    Opt(
        "valid_fraction",
        "valid_fraction",
        float,
        "Newest share of EVENTS held out to pick the epoch count (early stopping); 0 = off.",
        default=_TRAIN.valid_fraction,
    ),
    Opt(
        "valid_last",
        "valid_last",
        bool,
        applies(
            "valid_last",
            "Early-stop on each user's last event instead (leave-one-out); it becomes context, untrained.",
        ),
        decls=("--valid-last",),
        default=False,
    ),
    Opt(
        "patience",
        "patience",
        int,
        train_option("patience", "Stop after this many epochs without a better validation NDCG@10."),
    ),
    Opt(
        "init_",
        "init",
        str,
        applies("init", "random, zero or pretrained:PATH."),
        decls=("--init",),
        default=_TRAIN.init,
    ),
    Opt("seed", "seed", int, "Random seed; same seed, same model.", default=_TRAIN.seed),
)


#: How ``preprocess`` reads a raw log: its columns, time unit, event weights and CSV dialect.
PREPROCESS_OPTIONS: tuple[Opt, ...] = (
    Opt("user_col", "user_col", str, "Column with the user id.", default="user_id"),
    Opt("item_col", "item_col", str, "Column with the item id.", default="item_id"),
    Opt("time_col", "time_col", str, "Column with the event time.", default="timestamp"),
    Opt("event_col", "event_col", str, "Column with the event type [default: event_type, optional]."),
    Opt("time_unit", "time_unit", str, "auto, s, ms, us or iso.", default="auto"),
    Opt(
        "event_weights",
        "event_weights",
        str,
        "NAME=WEIGHT pairs, e.g. view=1,cart=3,purchase=5 (added to the defaults).",
        lambda text: parse_event_weights(text) if text else {},
    ),
    Opt(
        "only_events",
        "only_events",
        bool,
        "Reject event types not named in --event-weights instead of weighting them 1.",
        default=False,
    ),
    Opt("separator", "separator", str, "CSV field separator: one character or 'tab' [default: ',', tab for .tsv]."),
    Opt(
        "weight_col",
        "weight_col",
        str,
        "Column whose number is each event's weight (e.g. a rating), instead of its event type's weight.",
    ),
    Opt(
        "min_weight",
        "min_weight",
        float,
        "Leave out events weighing less (e.g. 4 keeps ratings 4 and 5); counted, not rejected.",
    ),
)


def preprocess_config(given: dict[str, Any]) -> PreprocessConfig:
    """The :class:`PreprocessConfig` of ``preprocess``'s options as :func:`read_given` hands them.

    >>> preprocess_config({"event_weights": {"buy": 9.0}, "only_events": True}).event_weights
    {'buy': 9.0}
    """
    if given.get("weight_col") is not None and ("event_weights" in given or given.get("only_events")):
        raise UsageError("--weight-col takes each event's weight from a column; drop --event-weights and --only-events")
    only_events = bool(given.get("only_events"))
    custom = given.get("event_weights", {})
    weights = custom if only_events and custom else {**DEFAULT_EVENT_WEIGHTS, **custom}
    event_col = given.get("event_col")
    fields = {k: v for k, v in given.items() if k not in ("event_weights", "event_col")}
    return PreprocessConfig(
        **fields, event_col=event_col or "event_type", event_col_required=event_col is not None, event_weights=weights
    )


#: ``update``'s training settings that apply to this run only (the stored ones stay).
UPDATE_RUN_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "epochs",
        "update_epochs",
        int,
        applies("update_epochs", "Epochs on this slice, this run only [default: stored]."),
    ),
    Opt("lr", "lr", float, applies("lr", "Learning rate, this run only [default: the stored update lr].")),
    Opt("batch_size", "batch_size", int, applies("batch_size", "Events per batch, this run only [default: stored].")),
)

#: ``update``'s promotion gate (:func:`recinc_cli.api.update` ``gate`` and ``max_drop``).
GATE_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "gate",
        "gate",
        Path,
        "Holdout events Parquet: promote the new model only if its NDCG@10 there is not worse "
        "than the parent's by more than --max-drop; else keep it as *.rejected.pt and exit 6.",
    ),
    Opt(
        "max_drop",
        "max_drop",
        float,
        "--gate tolerance: relative NDCG@10 drop allowed, 0.02 = 2% below the parent.",
        default=0.02,
    ),
)

#: How ``replay`` cuts and scores the log (:func:`recinc_cli.api.replay`'s parameters).
REPLAY_OPTIONS: tuple[Opt, ...] = (
    Opt(
        "strategies",
        "strategies",
        str,
        "Comma-separated: frozen, incremental, retrain, popular. retrain (init from scratch at every "
        "slice) costs about 2x an update for ease and 6-13x for mf and sasrec, so it runs only when named.",
        lambda text: list(names(text)),
        default=",".join(DEFAULT_REPLAY_STRATEGIES),
    ),
    Opt("slices", "n_slices", int, "Slices after the base, of equal event count.", default=5),
    Opt(
        "protocol",
        "protocol",
        str,
        "next (each slice's returning users and their new items) or session (each slice's "
        "sessions scored click by click, for session logs).",
        default="next",
    ),
    Opt(
        "base_fraction",
        "base_fraction",
        float,
        "Share of the log (oldest first) the base model trains on.",
        default=0.5,
    ),
    Opt("k", "k", int, "Cut-off of the metrics.", decls=("-k", "--k"), default=10),
    Opt("plot", "plot", Path, "Also write this PNG (a bare name goes into the report directory)."),
)

#: ``replay``'s training settings of the base model, the retrains and the updates.
REPLAY_TRAIN_OPTIONS: tuple[Opt, ...] = (
    Opt("epochs", "epochs", int, train_option("epochs", "Most epochs of init and retrain.")),
    Opt("update_epochs", "update_epochs", int, train_option("update_epochs", "Most epochs of an update.")),
    Opt("lr", "lr", float, train_option("lr", "Learning rate of init and retrain.")),
    Opt("update_lr", "update_lr", float, train_option("update_lr", "Learning rate of the updates.", none="the --lr")),
    Opt("seed", "seed", int, "Random seed; same seed, same report.", default=TrainConfig.seed),
)


def read_given(group: tuple[Opt, ...], args: dict[str, Any]) -> dict[str, Any]:
    """Config field -> value of each option of ``group`` given in ``args`` (parameter -> raw
    value; None = not given)."""
    out: dict[str, Any] = {}
    for o in group:
        if args.get(o.param) is not None:
            value = o.read(args[o.param])
            out.update(value if o.field == "*" else {o.field: value})
    return out


def with_options(group: tuple[Opt, ...], into: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command ``group``'s options in place of its parameter ``into``; the command
    receives the given ones there, as a dict of config field -> value (:func:`read_given`).

    >>> @with_options(POLICY_OPTIONS[:1], into="policies")
    ... def cmd(a: int = 1, policies: dict | None = None, quiet: bool = False) -> dict | None:
    ...     return policies
    >>> list(inspect.signature(cmd).parameters)
    ['a', 'update_valid_fraction', 'quiet']
    >>> cmd(a=2, update_valid_fraction=0.3, quiet=True)
    {'update_valid_fraction': 0.3}
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)  # typer reads real annotations, not strings
        params = list(sig.parameters.values())
        at = [p.name for p in params].index(into)
        # The group's options take the place of ``into`` in --help, keyword-only (so they may
        # follow parameters with defaults); parameters after it follow them.
        after = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[at + 1 :]]
        names = [o.param for o in group]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            raw = {name: kwargs.pop(name) for name in names}
            return fn(**kwargs, **{into: read_given(group, raw)})

        command.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[*params[:at], *(o.parameter() for o in group), *after]
        )
        return command

    return decorate


def with_groups(**groups: tuple[Opt, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:func:`with_options` for several groups at once: each keyword names the parameter its
    group replaces (``@with_groups(arch=ARCH_OPTIONS, policies=POLICY_OPTIONS)``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for into, group in groups.items():
            fn = with_options(group, into=into)(fn)
        return fn

    return decorate
