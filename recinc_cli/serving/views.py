"""Serving views of a bundle: its score functions and its state extended with fresh events.

Nothing here changes the bundle; :mod:`recinc_cli.serving.serve` and the evaluations read
through these.
"""

from __future__ import annotations

import polars as pl
import torch

from recinc_cli.data.context import Context
from recinc_cli.serving.history import ServingState, with_history
from recinc_cli.serving.recommend import ScoreFn, adjusted_scorer, model_scorer
from recinc_cli.store.bundle import Bundle


def bundle_scorer(bundle: Bundle, context: Context | None = None, pop_weight: float | None = None) -> ScoreFn:
    """``bundle``'s score function of user indices for :func:`~recinc_cli.serving.recommend.top_k`: the model's
    logits + ``pop_weight`` (default: the stored one) x log(1 + decayed popularity), with
    expired items at -inf.

    Sequential models read each user's events from ``context`` (default: the stored one).
    """
    base = model_scorer(bundle.model.eval(), context if context is not None else bundle.context)
    weight = bundle.pop_weight if pop_weight is None else pop_weight
    return adjusted_scorer(base, torch.log1p(bundle.item_pop), weight, bundle.expired())


def popular_scorer(bundle: Bundle) -> ScoreFn:
    """Decayed popularity for every user, expired items at -inf (cold start, baseline)."""
    return adjusted_scorer(None, bundle.item_pop, 1.0, bundle.expired())


def serving_state(bundle: Bundle, events: pl.DataFrame | None = None) -> ServingState:
    """Context and seen items to serve from, extended in memory with fresh ``events``
    (:func:`~recinc_cli.serving.history.with_history`); nothing in the bundle changes."""
    if events is None:
        return ServingState(len(bundle.users), [], bundle.context, bundle.seen)
    return with_history(
        events, bundle.users, bundle.items, bundle.types, bundle.seen, bundle.context, bundle.model_cfg.max_len
    )


def user_state(bundle: Bundle, state: ServingState, user: str, events: pl.DataFrame) -> ServingState:
    """``state`` narrowed to the one user ``user`` and extended with their fresh ``events``:
    what a request about that user reads (``POST /recommend``). Every other user's rows are
    left empty, so this costs O(users), where :func:`serving_state` with events re-sorts every
    stored event (about a second for 10M)."""
    idx = int(state.lookup(bundle.users, pl.Series([user], dtype=pl.String))[0])
    if idx >= state.n_known:  # a visitor of the state's own fresh history: start from the model's rows
        idx = 0
    context = None if state.context is None else state.context.only(idx)
    return with_history(
        events, bundle.users, bundle.items, bundle.types, state.seen.only(idx), context, bundle.model_cfg.max_len
    )
