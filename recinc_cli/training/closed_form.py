"""Fitting a closed-form model (``ease``): fold events in, choose the popularity weight held out.

The gradient models' ``init``/``update`` pick an epoch count on the newest events
(:mod:`recinc_cli.training.early_stop`); a closed-form model has no epochs, so the newest
``valid_fraction`` of the events only chooses the popularity weight before it is folded in too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import polars as pl

from recinc_cli.data.events import TrainData
from recinc_cli.evaluation.validation import validation_for
from recinc_cli.models.base import closed_form_model
from recinc_cli.training.early_stop import choose_pop_weight
from recinc_cli.training.ranker_fit import ranker_fit
from recinc_cli.training.report import run_stats

if TYPE_CHECKING:
    from recinc_cli.store.bundle import Bundle


def closed_form_fit(
    bundle: Bundle, events: pl.DataFrame, valid_fraction: float, pop_weight: float | None
) -> dict[str, Any]:
    """Absorb ``events`` (time-ordered) into ``bundle``'s model and fold them into the bundle.

    With ``pop_weight`` None the weight is chosen on the newest ``valid_fraction`` of the events
    (absorbed after the choice), pooling the evidence of earlier runs; otherwise it is set.
    Returns the run's lineage stats.
    """
    model = closed_form_model(bundle.model)
    if model.LEARNS_RANKING:
        return ranker_fit(bundle, events, valid_fraction, pop_weight)
    start = time.perf_counter()
    half_life = bundle.train_cfg.cooc_half_life_events or 0.0
    cut = round(events.height * (1 - valid_fraction))
    older, held = (events[:cut], events[cut:]) if 0 < cut < events.height else (events, events[:0])
    valid_ndcg = valid_ndcg_model = None
    described: dict[str, Any] = {}

    def absorb(part: pl.DataFrame) -> None:
        data = TrainData.from_events(part, bundle.users, bundle.items, bundle.types)
        model.absorb(data, bundle.context, half_life)
        bundle.fold(data)  # the context absorb read is extended here, once

    absorb(older)
    if pop_weight is not None:
        bundle.pop_weight = pop_weight
    elif held.height:
        validation = validation_for(bundle, held, bundle.seen)
        if validation is not None:
            choice = choose_pop_weight(bundle, validation)
            bundle.pop_weight, valid_ndcg, valid_ndcg_model = choice.weight, choice.ndcg, choice.model_ndcg
            described = validation.describe()
    if held.height:
        absorb(held)
    return {
        **run_stats(events, time.perf_counter() - start),
        "valid_ndcg": None if valid_ndcg is None else round(valid_ndcg, 5),
        "valid_ndcg_model": None if valid_ndcg_model is None else round(valid_ndcg_model, 5),
        "pop_weight": bundle.pop_weight,
        **described,
    }
