"""Choosing how long ``init`` trains: early stopping on held-out events.

A model fit too long to years of history ranks what was consumed then, not next week; a
model fit too briefly has not learned tastes. Which one bites depends on the log, so ``init``
measures it: train on the older events, score the newest ones after each epoch (next-slice
protocol, or the session protocol on session logs: :mod:`recinc_cli.evaluation.validation`), keep the
best epoch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl
import torch

from recinc_cli.config import AUTO, auto_or
from recinc_cli.data.events import TrainData
from recinc_cli.evaluation.validation import VALID_K, Validation, validation_for
from recinc_cli.models.base import TrainInput
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.training.report import Judged
from recinc_cli.training.train import Trainer

if TYPE_CHECKING:
    from recinc_cli.data.context import Context
    from recinc_cli.store.bundle import Bundle


#: Candidate weights of the popularity logit adjustment (README "Recency"); the last one ranks
#: by popularity with the model breaking ties.
POP_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 1000.0)


@dataclass(frozen=True)
class Stopped:
    """How an early-stopped fit went: the best ``epochs``, its training ``final_loss``, the mean
    ``epoch_seconds``, the event-passes made (``events_trained``, every epoch run counted) and
    what the held-out events said (``judged``)."""

    epochs: int
    final_loss: float
    epoch_seconds: float
    events_trained: int
    judged: Judged


def early_stopped_fit(
    bundle: Bundle,
    trainer: Trainer,
    train: TrainData,
    fold: TrainData,
    newest: pl.DataFrame,
    max_epochs: int,
    gen: torch.Generator,
    reporter: Reporter | None = None,
    replay: TrainData | None = None,
) -> tuple[Bundle, Stopped] | None:
    """Train ``bundle.model`` on ``train`` for the epoch count that ranks ``newest`` best.

    ``train`` are the events before ``newest`` as trained on (weights possibly time-decayed),
    ``fold`` the same events as logged; ``replay`` past events mixed into every epoch.
    ``newest`` is either the newest events (next-slice protocol, or the session protocol when
    almost none of its users returns: :func:`~recinc_cli.evaluation.validation.validation_for`) or
    each user's last event (leave-one-out). Epochs are compared on the model's own ranking (or
    with the configured ``pop_weight``), so popularity cannot mask an undertrained model; the
    best epoch then chooses the popularity adjustment among :data:`POP_WEIGHTS`.

    Returns the bundle with ``fold`` folded in, the best epoch's weights (in the shared model)
    and optimizer state, and the popularity weight chosen; and the :class:`Stopped` record. None
    (nothing trained) when no user of ``fold`` has new items in ``newest``, so there is nothing
    to validate on.
    """
    reporter = reporter or NullReporter()
    cfg, model = trainer.cfg, bundle.model
    seen = bundle.seen.merge(fold.user_idx, fold.item_idx, len(bundle.users))
    validation = validation_for(bundle, newest, seen)
    if validation is None:
        return None
    prior = bundle.context
    bundle = bundle.folded(fold)
    fixed = auto_or(cfg.pop_weight, 0.0)  # epochs compare the model alone unless a weight is given
    best, ran, train_seconds = _best_epoch(
        bundle, trainer, train, prior, replay, validation, fixed, max_epochs, gen, reporter
    )
    model.load_state_dict(best.weights)
    bundle = bundle.replace(optimizer=best.optimizer)
    if cfg.pop_weight == AUTO:
        choice, evidence = choose_pop_weight(bundle, validation)
        bundle = bundle.replace(pop_evidence=evidence)
    else:  # a given weight: epochs were compared with it, the model alone is scored once more
        model_ndcg = best.ndcg if fixed == 0 else validation.ndcg(bundle, 0.0)
        choice = PopChoice(fixed, best.ndcg, model_ndcg)
    stopped = Stopped(
        epochs=best.epoch,
        final_loss=best.loss,
        epoch_seconds=train_seconds / ran,
        events_trained=(len(train) + (len(replay) if replay is not None else 0)) * ran,
        judged=Judged(choice.ndcg, choice.model_ndcg, validation.protocol, validation.units),
    )
    return bundle.replace(pop_weight=choice.weight), stopped


def _best_epoch(
    bundle: Bundle,
    trainer: Trainer,
    train: TrainData,
    prior: Context | None,
    replay: TrainData | None,
    validation: Validation,
    pop_weight: float,
    max_epochs: int,
    gen: torch.Generator,
    reporter: Reporter,
) -> tuple[_Epoch, int, float]:
    """Train epoch by epoch until ``patience`` epochs bring no better held-out NDCG@10 (with
    ``pop_weight``); return the best epoch, the epochs run and the seconds they took."""
    cfg, model = trainer.cfg, bundle.model
    trainer.plan(max_epochs * trainer.model.n_batches(TrainInput(train, prior, cfg, replay)))
    reporter.start(f"training {bundle.model_cfg.name} (early stopping)", max_epochs)
    best: _Epoch | None = None
    seconds = 0.0
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        loss = trainer.fit(train, 1, gen, prior=prior, replay=replay)[0]
        seconds += time.perf_counter() - start
        model.eval()
        ndcg = validation.ndcg(bundle, pop_weight)
        reporter.advance(1, f"epoch {epoch} loss {loss:.4f} valid ndcg@{VALID_K} {ndcg:.4f}")
        if best is None or ndcg > best.ndcg:
            best = _Epoch(ndcg, epoch, loss, copy.deepcopy(model.state_dict()), copy.deepcopy(trainer.state_dict()))
        elif epoch - best.epoch >= cfg.patience:
            break
    reporter.stop()
    assert best is not None  # the loop ran at least once (max_epochs >= 1)
    return best, epoch, seconds


@dataclass(frozen=True)
class _Epoch:
    """The best epoch so far: its validation NDCG@10, number, training loss, and the model's
    and optimizer's state after it (restored once training stops)."""

    ndcg: float
    epoch: int
    loss: float
    weights: dict[str, Any]
    optimizer: list[dict[str, Any]]


#: Weight of the evidence from earlier updates when choosing the popularity weight: one slice's
#: held-out users are few, so the choice pools them with the decayed evidence of earlier slices.
EVIDENCE_DECAY = 0.5


@dataclass(frozen=True)
class PopChoice:
    """A popularity weight and what it scores on held-out users: ``ndcg`` is the NDCG@10 of
    the model's logits + ``weight`` x log(1 + popularity), ``model_ndcg`` that of the model's
    own ranking (weight 0) on the same users, so a weight that buries the model shows."""

    weight: float
    ndcg: float
    model_ndcg: float


def choose_pop_weight(bundle: Bundle, validation: Validation) -> tuple[PopChoice, list[float]]:
    """Pick the :data:`POP_WEIGHTS` entry with the most evidence, scored by ``validation``;
    return it and the evidence to keep.

    Evidence = unit-weighted NDCG@10 on these held-out events plus :data:`EVIDENCE_DECAY` x the
    evidence kept in ``bundle.pop_evidence``, so the weight follows the log without jumping on
    the noise of one slice's few users. Ties go to the smaller weight.
    """
    ndcg = [validation.ndcg(bundle, w) for w in POP_WEIGHTS]
    old = bundle.pop_evidence if len(bundle.pop_evidence) == len(POP_WEIGHTS) else [0.0] * len(POP_WEIGHTS)
    evidence = [EVIDENCE_DECAY * e + validation.units * n for e, n in zip(old, ndcg, strict=True)]
    best = max(range(len(POP_WEIGHTS)), key=lambda j: evidence[j])
    return PopChoice(POP_WEIGHTS[best], ndcg[best], ndcg[POP_WEIGHTS.index(0.0)]), evidence


def pop_weight_note(weight: float) -> str | None:
    """The warning for a popularity weight so large (the last of :data:`POP_WEIGHTS`) that the
    served ranking is popularity's and the model only breaks its ties; None otherwise.

    >>> pop_weight_note(1000.0), pop_weight_note(8.0)
    ('model ranking not used: popularity weight 1000', None)
    """
    return f"model ranking not used: popularity weight {weight:g}" if weight >= POP_WEIGHTS[-1] else None
