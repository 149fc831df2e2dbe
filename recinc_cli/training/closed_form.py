"""Fitting a closed-form model (``ease``): fold events in, choose the popularity weight held out.

The gradient models' ``init``/``update`` pick an epoch count on the newest events
(:mod:`recinc_cli.training.early_stop`); a closed-form model has no epochs, so the newest
``valid_fraction`` of the events only chooses the popularity weight before it is folded in too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import polars as pl

from recinc_cli.config import AUTO, Auto, auto_or
from recinc_cli.data.events import TrainData
from recinc_cli.evaluation.validation import validation_for
from recinc_cli.models.base import closed_form_model
from recinc_cli.training.early_stop import choose_pop_weight
from recinc_cli.training.report import FitReport, Judged, closed_form_report

if TYPE_CHECKING:
    from recinc_cli.store.bundle import Bundle


def closed_form_fit(
    bundle: Bundle, events: pl.DataFrame, valid_fraction: float, pop_weight: float | Auto
) -> tuple[Bundle, FitReport]:
    """Absorb ``events`` (time-ordered) into ``bundle``'s model; return the bundle with them
    folded in and the fit's report.

    With ``pop_weight`` ``auto`` the weight is chosen on the newest ``valid_fraction`` of the events
    (absorbed after the choice), pooling the evidence of earlier runs; otherwise it is set.
    """
    model = closed_form_model(bundle.model)
    start = time.perf_counter()
    half_life = auto_or(bundle.train_cfg.cooc_half_life_events, 0.0)
    cut = round(events.height * (1 - valid_fraction))
    older, held = (events[:cut], events[cut:]) if 0 < cut < events.height else (events, events[:0])
    judged = None
    bundle = absorbed(bundle, older, half_life)
    if pop_weight != AUTO:
        bundle = bundle.replace(pop_weight=float(pop_weight))
    elif held.height:
        validation = validation_for(bundle, held, bundle.seen)
        if validation is not None:
            choice, evidence = choose_pop_weight(bundle, validation)
            bundle = bundle.replace(pop_weight=choice.weight, pop_evidence=evidence)
            judged = Judged(choice.ndcg, choice.model_ndcg, validation.protocol, validation.units)
    bundle = absorbed(bundle, held, half_life)
    return bundle, closed_form_report(events, time.perf_counter() - start, judged, model.FIT_SUMMARY)


def absorbed(bundle: Bundle, part: pl.DataFrame, half_life: float) -> Bundle:
    """``bundle`` with ``part`` (time-ordered events) absorbed by its closed-form model and
    folded into its state; as it was when ``part`` is empty."""
    if not part.height:
        return bundle
    data = TrainData.from_events(part, bundle.users, bundle.items, bundle.types)
    closed_form_model(bundle.model).absorb(data, bundle.context, half_life)
    return bundle.folded(data)  # the context absorb read is extended here, once
