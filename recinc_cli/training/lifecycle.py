"""Creating a model (``init``) and folding a slice into it (``update``).

Both run the same :class:`~recinc_cli.training.train.Trainer` and record one lineage entry each.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recinc_cli import __version__
from recinc_cli.config import AUTO, Auto, ModelConfig, TrainConfig
from recinc_cli.data.admission import Admission
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.pop_prior import PriorSource
from recinc_cli.data.reservoir import Reservoir
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.split import split_last
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import BadInputError, CheckpointError, TrainingError, UsageError
from recinc_cli.models import MODELS, build_model
from recinc_cli.models.base import RankingRecommender, Recommender, TrainInput, gradient_model
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.store.bundle import Bundle, table_sizes
from recinc_cli.store.format import load_bundle
from recinc_cli.threads import use_threads
from recinc_cli.training.closed_form import closed_form_fit
from recinc_cli.training.early_stop import early_stopped_fit, pop_weight_note
from recinc_cli.training.growth import apply_item_features, grow_vocabularies
from recinc_cli.training.incremental import late_events, parent_anchor, prune_expired
from recinc_cli.training.ranker_fit import ranker_fit
from recinc_cli.training.report import FitReport, InitReport, RunReport, UpdateReport, iso_ms
from recinc_cli.training.train import Trainer, seeded_generator


def create_bundle(
    events: pl.DataFrame,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    reporter: Reporter | None = None,
) -> tuple[Bundle, InitReport]:
    """Build vocabularies and a fresh model, train it on ``events``; return it and its report.

    Validation (early stopping) holds out each user's last event with ``valid_last``, else the
    newest ``valid_fraction`` of the events, else nothing.
    """
    _check_pop_prior(model_cfg, train_cfg)
    admission = Admission.empty()
    n_events = events.height
    events, admitted = admission.admit(events, Vocab.empty(), Vocab.empty(), train_cfg.min_count)
    if events.height == 0:
        raise BadInputError(f"no user and item pair is seen --min-count {train_cfg.min_count} times; lower it")
    cfg, gen = _half_lives(train_cfg, events.height), seeded_generator(train_cfg.seed, 0)
    bundle = _new_bundle(events, model_cfg, cfg, admission, gen)
    if cfg.init.startswith("pretrained:"):
        copy_pretrained(bundle, Path(cfg.init.removeprefix("pretrained:")))
    start = time.perf_counter()
    if bundle.model.CLOSED_FORM:
        bundle, fit = _fit_closed_form(bundle, events, cfg.valid_fraction, cfg.pop_weight)
    else:
        bundle, fit = _fit_new(bundle, events, gen, reporter)
    data = TrainData.from_events(events, bundle.users, bundle.items, bundle.types)
    bundle = bundle.replace(reservoir=bundle.reservoir.add_data(data, gen))
    ts = events["timestamp"].dt.epoch("ms")
    fit = fit.replace(
        ts_min=iso_ms(int(ts.min())),  # type: ignore[arg-type]
        ts_max=iso_ms(int(ts.max())),  # type: ignore[arg-type]
        train_seconds=time.perf_counter() - start,
    )
    report = InitReport(
        fit=fit,
        new_users=len(bundle.users) - 1,
        new_items=len(bundle.items) - 1,
        threads=torch.get_num_threads(),
        admitted=admitted,
        events_in=n_events,
        peak_memory_mb=peak_memory_mb(),
    )
    return bundle, report


def _half_lives(cfg: TrainConfig, n_events: int) -> TrainConfig:
    """``cfg`` with the popularity and co-occurrence half-lives left to ``init`` set from the
    size of its log."""
    if cfg.pop_half_life_events == AUTO:
        # A tenth of the first log: popularity then reflects about the newest tenth of what the
        # model has seen, at the log's own pace (slices may span hours or years).
        cfg = dataclasses.replace(cfg, pop_half_life_events=max(n_events / 10, 1.0))
    if cfg.cooc_half_life_events == AUTO:
        # Co-occurrences are tastes, slower than trends: they halve every init-sized block of events.
        cfg = dataclasses.replace(cfg, cooc_half_life_events=max(float(n_events), 1.0))
    return cfg


def _new_bundle(
    events: pl.DataFrame, model_cfg: ModelConfig, cfg: TrainConfig, admission: Admission, gen: torch.Generator
) -> Bundle:
    """An untrained bundle whose vocabularies cover ``events``, its tables drawn from ``gen``."""
    users, items, types = Vocab.empty(), Vocab.empty(), Vocab.empty()
    features = {name: Vocab.empty() for name in model_cfg.item_features}
    grow_vocabularies(events, users, items, types, features)
    model = build_model(model_cfg, table_sizes(users, items, types, features))
    model.reset_parameters(cfg.row_init, gen)
    apply_item_features(model, events, items, features)
    return Bundle(
        model=model,
        model_cfg=model_cfg,
        train_cfg=cfg,
        users=users,
        items=items,
        seen=SeenItems.empty(len(users)),
        item_pop=torch.zeros(len(items)),
        pop_time_ms=0,
        types=types,
        features=features,
        context=Context.empty(len(users)) if model_cfg.sequential else None,
        reservoir=Reservoir.empty(cfg.replay_size),
        admission=admission,
    )


def _fit_closed_form(
    bundle: Bundle, events: pl.DataFrame, valid_fraction: float, pop_weight: float | Auto
) -> tuple[Bundle, FitReport]:
    """The fit path of the closed-form families: counts absorbed, and for the ranking family
    (:class:`~recinc_cli.models.base.RankingRecommender`) its ranking learned on the way."""
    fit = ranker_fit if isinstance(bundle.model, RankingRecommender) else closed_form_fit
    return fit(bundle, events, valid_fraction, pop_weight)


def _check_pop_prior(model_cfg: ModelConfig, cfg: TrainConfig) -> None:
    if cfg.pop_prior > 0 and not MODELS[model_cfg.name].POP_PRIOR:
        able = ", ".join(sorted(n for n, cls in MODELS.items() if cls.POP_PRIOR))
        raise UsageError(f"--pop-prior applies to {able} only; {model_cfg.name} trains without it (use 0)")


@contextlib.contextmanager
def _training_prior(bundle: Bundle, trainer: Trainer, weight: float) -> Iterator[None]:
    """Within the block, ``trainer`` trains against the popularity prior as of its start
    (:mod:`recinc_cli.data.pop_prior`); the model never holds it."""
    if weight > 0 and trainer.model.POP_PRIOR:
        trainer.pop_prior = PriorSource(bundle.item_pop, bundle.popularity_clock(), weight, len(bundle.items))
    try:
        yield
    finally:
        trainer.pop_prior = None


def _fit_new(
    bundle: Bundle, events: pl.DataFrame, gen: torch.Generator, reporter: Reporter | None
) -> tuple[Bundle, FitReport]:
    """Train a fresh bundle on ``events``, choosing the epoch count on held-out events if asked."""
    cfg = bundle.train_cfg
    now = int(events["timestamp"].dt.epoch("ms").max())  # type: ignore[arg-type]
    if cfg.valid_last:
        older, held = split_last(events, 1)  # users with one event keep it: nothing predicts it
    else:
        cut = round(events.height * (1 - cfg.valid_fraction))
        older, held = events[:cut], events[cut:]
    trainer = Trainer(gradient_model(bundle.model), cfg, size_threads=use_threads)
    stopped = None
    if held.height:
        fold = TrainData.from_events(older, bundle.users, bundle.items, bundle.types)
        with _training_prior(bundle, trainer, cfg.pop_prior):
            stopped = early_stopped_fit(
                bundle, trainer, fold.decayed(now, cfg.half_life_s), fold, held, cfg.epochs, gen, reporter
            )
    if stopped is None:
        return _train_and_fold(_given_weight(bundle, cfg), events, trainer, cfg.epochs, gen, reporter, now)
    bundle, run = stopped
    fit = FitReport(
        events=older.height,
        epochs=run.epochs,
        lr=cfg.lr,
        final_loss=run.final_loss,
        train_seconds=0.0,
        epoch_seconds=run.epoch_seconds,
        events_trained=run.events_trained,
        ts_min=None,
        ts_max=None,
        judged=run.judged,
    )
    if cfg.valid_last:
        # As in the published leave-one-out protocol: the validation events become input
        # context (and seen items) without being trained on.
        return bundle.folded(TrainData.from_events(held, bundle.users, bundle.items, bundle.types)), fit
    tail_trainer = _trainer(bundle, cfg.for_update())
    bundle, tail = _train_and_fold(bundle, held, tail_trainer, cfg.update_epochs, gen, reporter, now)
    return bundle, fit.replace(
        final_loss=tail.final_loss, events_trained=fit.events_trained + tail.events * tail.epochs
    )


def update_bundle(
    bundle: Bundle,
    events: pl.DataFrame,
    train_cfg: TrainConfig,
    reporter: Reporter | None = None,
    source: str = "EVENTS",
) -> tuple[Bundle, UpdateReport]:
    """Grow ``bundle`` for the new ids in ``events`` and train on them with ``train_cfg``;
    return the updated bundle and the run's report.

    ``train_cfg`` applies to this run only: the checkpoint keeps its stored training settings,
    so a one-off ``--epochs`` does not change every later nightly update. In order: late events
    are kept, dropped or refused (:func:`~recinc_cli.training.incremental.late_events`), ids not yet
    admitted are counted and their events set aside, the tables grow, then the model trains on
    the slice plus ``replay_ratio`` x its size of reservoir events, choosing the epoch count and
    the popularity weight on the newest ``update_valid_fraction`` of the slice
    (:func:`~recinc_cli.training.early_stop.early_stopped_fit`), and the slice joins the reservoir.
    ``source`` names the slice in error messages. The model's tables, the vocabularies and the
    admission counts are updated in place (the returned bundle shares them).
    """
    cfg = train_cfg
    _check_pop_prior(bundle.model_cfg, cfg)
    gen = seeded_generator(cfg.seed, len(bundle.lineage))
    n_events = events.height
    events, n_late = late_events(events, bundle.watermark_ms, cfg, source)
    events, admitted = bundle.admission.admit(events, bundle.users, bundle.items, cfg.min_count)
    if bundle.reservoir.size != cfg.replay_size:
        bundle = bundle.replace(reservoir=bundle.reservoir.resized(cfg.replay_size, gen))
    intake: dict[str, Any] = dict(events_in=n_events, late_events=n_late, late_policy=cfg.late, admitted=admitted)
    if events.height == 0:
        return bundle, _nothing_trained(bundle, cfg, intake)
    closed = bundle.model.CLOSED_FORM  # ease: counted and solved, no gradient steps
    anchor = parent_anchor(bundle) if cfg.anchor_weight > 0 and not closed else None
    teacher = copy.deepcopy(bundle.model) if cfg.distill_weight > 0 and not closed else None
    new_users, new_items = grow_vocabularies(events, bundle.users, bundle.items, bundle.types, bundle.features)
    bundle.model.grow(bundle.sizes(), cfg.row_init, gen)
    apply_item_features(bundle.model, events, bundle.items, bundle.features)
    if closed:
        (bundle, fit), n_replayed = _fit_closed_form(bundle, events, cfg.update_valid_fraction, cfg.pop_weight), 0
    else:
        bundle, fit, n_replayed = _train_update(bundle, events, cfg, gen, reporter, anchor, teacher)
    data = TrainData.from_events(events, bundle.users, bundle.items, bundle.types)
    bundle = bundle.replace(reservoir=bundle.reservoir.add_data(data, gen))
    pruned = prune_expired(bundle) if cfg.prune else 0
    expired = bundle.expired()
    return bundle, UpdateReport(
        fit=fit,
        new_users=new_users,
        new_items=new_items,
        threads=torch.get_num_threads(),
        replayed=n_replayed,
        expired_items=0 if expired is None else int(expired.sum()),
        pruned_items=pruned,
        watermark=iso_ms(bundle.watermark_ms),
        **intake,
    )


def _train_update(
    bundle: Bundle,
    events: pl.DataFrame,
    cfg: TrainConfig,
    gen: torch.Generator,
    reporter: Reporter | None,
    anchor: dict[str, torch.Tensor] | None,
    teacher: Recommender | None,
) -> tuple[Bundle, FitReport, int]:
    """Train the grown model on the slice plus replayed events, choosing the epoch count on the
    newest part; return the bundle, the fit's report and how many events were replayed."""
    now = max(bundle.watermark_ms, int(events["timestamp"].dt.epoch("ms").max()))  # type: ignore[arg-type]
    n_replay = round(cfg.replay_ratio * events.height)
    replay = bundle.reservoir.sample(n_replay, gen).decayed(now, cfg.half_life_s) if n_replay else None
    n_replayed = 0 if replay is None else len(replay)
    trainer = _trainer(bundle, cfg, anchor, teacher)
    start = time.perf_counter()
    cut = round(events.height * (1 - cfg.update_valid_fraction))
    older, held = events[:cut], events[cut:]
    stopped = None
    if cfg.update_valid_fraction > 0 and older.height and held.height:
        fold = TrainData.from_events(older, bundle.users, bundle.items, bundle.types)
        train = fold.decayed(now, cfg.half_life_s)
        with _training_prior(bundle, trainer, cfg.pop_prior):
            stopped = early_stopped_fit(bundle, trainer, train, fold, held, cfg.update_epochs, gen, reporter, replay)
    if stopped is None:
        bundle = _given_weight(bundle, cfg)
        bundle, fit = _train_and_fold(bundle, events, trainer, cfg.update_epochs, gen, reporter, now, replay)
        return bundle, fit, n_replayed
    bundle, run = stopped
    trainer.load_state_dict(bundle.optimizer)
    bundle, tail = _train_and_fold(bundle, held, trainer, run.epochs, gen, reporter, now)
    fit = tail.replace(
        events=events.height,
        epochs=run.epochs,
        judged=run.judged,
        train_seconds=time.perf_counter() - start,
        epoch_seconds=run.epoch_seconds,
        events_trained=run.events_trained + held.height * run.epochs,
        ts_min=iso_ms(int(events["timestamp"].dt.epoch("ms").min())),  # type: ignore[arg-type]
    )
    return bundle, fit, n_replayed


def _given_weight(bundle: Bundle, cfg: TrainConfig) -> Bundle:
    """``bundle`` serving ``cfg``'s popularity weight when one is given: with nothing held out
    to choose it on, a given weight still applies (``auto`` keeps the stored one)."""
    return bundle if cfg.pop_weight == AUTO else bundle.replace(pop_weight=float(cfg.pop_weight))


def _nothing_trained(bundle: Bundle, cfg: TrainConfig, intake: dict[str, Any]) -> UpdateReport:
    """The report of an update whose events were all dropped or set aside."""
    fit = FitReport(
        events=0,
        epochs=0,
        lr=cfg.lr,
        final_loss=float("nan"),
        train_seconds=0.0,
        epoch_seconds=0.0,
        events_trained=0,
        ts_min=None,
        ts_max=None,
    )
    return UpdateReport(
        fit=fit,
        new_users=0,
        new_items=0,
        threads=torch.get_num_threads(),
        watermark=iso_ms(bundle.watermark_ms),
        **intake,
    )


def _trainer(
    bundle: Bundle,
    cfg: TrainConfig,
    anchor: dict[str, torch.Tensor] | None = None,
    teacher: Recommender | None = None,
) -> Trainer:
    """A trainer that continues the bundle's optimizer state (grown to the current tables)."""
    trainer = Trainer(gradient_model(bundle.model), cfg, anchor, teacher, size_threads=use_threads)
    if bundle.optimizer:
        try:
            trainer.load_state_dict(bundle.optimizer)
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"optimizer state does not fit the model ({e})") from e
    return trainer


def _train_and_fold(
    bundle: Bundle,
    events: pl.DataFrame,
    trainer: Trainer,
    epochs: int,
    gen: torch.Generator,
    reporter: Reporter | None,
    now_ms: int,
    replay: TrainData | None = None,
) -> tuple[Bundle, FitReport]:
    """Train on ``events`` (weights decayed to ``now_ms``) plus ``replay``; return the bundle
    with them folded into seen items, context and popularity, and the fit's report."""
    reporter = reporter or NullReporter()
    cfg = trainer.cfg
    start = time.perf_counter()
    data = TrainData.from_events(events, bundle.users, bundle.items, bundle.types)
    n_batches = trainer.model.n_batches(TrainInput(data, bundle.context, cfg, replay))
    trainer.plan(epochs * n_batches)
    reporter.start(f"training {bundle.model_cfg.name}", epochs * n_batches)

    def on_batch(epoch: int, n_epochs: int, b: int, nb: int, loss: float) -> None:
        reporter.advance(1, f"epoch {epoch + 1}/{n_epochs} loss {loss:.4f}")

    with _training_prior(bundle, trainer, cfg.pop_prior):
        losses = trainer.fit(data.decayed(now_ms, cfg.half_life_s), epochs, gen, on_batch, bundle.context, replay)
    reporter.stop()
    seconds = time.perf_counter() - start
    fit = FitReport(
        events=len(data),
        epochs=epochs,
        lr=cfg.lr,
        final_loss=losses[-1],
        train_seconds=seconds,
        epoch_seconds=seconds / epochs,
        events_trained=len(data) * epochs,
        ts_min=iso_ms(int(data.ts_ms.min())),
        ts_max=iso_ms(int(data.ts_ms.max())),
    )
    return bundle.replace(optimizer=trainer.state_dict()).folded(data), fit


def check_finite(bundle: Bundle) -> None:
    """Raise :class:`TrainingError` (exit 5) when a weight or the popularity is NaN/inf.

    The trainer checks each loss; this is the last look before anything is written, and
    also covers the closed-form models (a near-singular solve) and the popularity tables.
    NaN is a missing value, not an error, in the tensors a model names in ``MISSING_AS_NAN``.
    """
    model = bundle.model
    for name, t in model.state_dict().items():
        bad = t.isinf() if name in model.MISSING_AS_NAN else ~torch.isfinite(t)
        if t.is_floating_point() and bool(bad.any()):
            raise TrainingError(
                f"model weight {name} holds NaN/inf after training; nothing was written: "
                "lower --lr (ease: raise --ease-l2)"
            )
    if not bool(torch.isfinite(bundle.item_pop).all()) or not np.isfinite(bundle.pop_weight):
        raise TrainingError("item popularity holds NaN/inf; nothing was written: check the event weights")


def lineage_entry(
    command: str, data_sha256: str, data_path: str, parent_sha256: str | None, bundle: Bundle, report: RunReport
) -> dict[str, Any]:
    """One lineage record: plain Python values only.

    ``valid_ndcg`` / ``valid_ndcg_model``: held-out NDCG@10 of the ranking served (with
    ``pop_weight``) and of the model alone (None when nothing was held out), judged by
    ``valid_protocol`` (``next`` or ``session``, :mod:`recinc_cli.evaluation.validation`) over
    ``valid_units`` users or sessions;
    ``pop_weight_note``: :func:`~recinc_cli.training.early_stop.pop_weight_note` of the weight served
    (``"model ranking not used: popularity weight 1000"``), else None.
    """
    return {
        "command": command,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recinc_version": __version__,
        "parent_sha256": parent_sha256,
        "data_path": data_path,
        "data_sha256": data_sha256,
        "n_users": len(bundle.users) - 1,
        "n_items": len(bundle.items) - 1,
        **report.lineage_fields(),
        "pop_weight": bundle.pop_weight,
        "pop_weight_note": pop_weight_note(bundle.pop_weight),
    }


def copy_pretrained(bundle: Bundle, path: Path) -> None:
    """Copy the rows of ids known to the checkpoint at ``path`` into ``bundle.model``'s tables.

    Non-table parameters with equal shapes are copied whole. Raises :class:`UsageError` when
    the architectures differ.
    """
    pre = load_bundle(path)
    model = bundle.model
    if pre.model_cfg.to_dict() != model.cfg.to_dict():
        raise UsageError(
            f"--init pretrained:{path}: its model ({pre.model_cfg}) differs from the requested "
            f"one ({model.cfg}); use the same --model and architecture options"
        )
    vocab_of = {"user": (bundle.users, pre.users), "item": (bundle.items, pre.items), "type": (bundle.types, pre.types)}
    vocab_of.update({f"feat:{n}": (v, pre.features[n]) for n, v in bundle.features.items()})
    source = dict(pre.model.named_parameters())
    tables = model.tables()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in tables:
                new_vocab, old_vocab = vocab_of[tables[name]]
                old_idx = old_vocab.lookup(pl.Series(new_vocab.ids))
                rows = np.flatnonzero(old_idx > 0)
                p[torch.from_numpy(rows)] = source[name][torch.from_numpy(old_idx[rows])]
            elif source[name].shape == p.shape:
                p.copy_(source[name])


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (0 where the OS does not say)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / (1 << 20 if sys.platform == "darwin" else 1024), 1)
