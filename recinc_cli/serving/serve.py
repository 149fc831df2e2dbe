"""What a checkpoint serves to a list of raw user ids: model, history or popularity per user.

Shared by ``recommend`` and the promotion gate, so the gate judges exactly what would be served.

>>> items, scores, source = serve_top(bundle, serving_state(bundle), raw_ids, k=10)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.serving.history import ServingState
from recinc_cli.serving.recommend import top_k
from recinc_cli.serving.views import bundle_scorer, popular_scorer
from recinc_cli.store.bundle import Bundle


def serve_top(
    bundle: Bundle,
    state: ServingState,
    raw: pl.Series,
    k: int,
    reporter: Reporter | None = None,
    repeats: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` unseen items for the users ``raw`` (U,) as ``bundle`` serves them from ``state``;
    with ``repeats`` items a user has seen are ranked too (``--repeats``).

    Known users with a model row (or, for sequential models, a context) are scored by the
    model; users only ``state``'s fresh history knows are scored from it (``history``); the
    rest get the decayed most-popular items minus what they have seen (``popular``).

    Returns items (U, k) int64 item indices (0 = empty slot), scores (U, k) float32 and
    source (U,) str: ``model``, ``history`` or ``popular``.
    """
    reporter = reporter or NullReporter()
    idx = state.lookup(bundle.users, raw)
    known = idx > 0
    by_model = known & (idx < state.n_known)
    if state.context is not None:
        by_model |= known & (state.context.lengths()[np.minimum(idx, state.context.n_users - 1)] > 0)
    items = np.zeros((len(raw), k), dtype=np.int64)
    scores = np.full((len(raw), k), -np.inf, dtype=np.float32)
    reporter.start("scoring users", len(raw))
    seen = None if repeats else state.seen
    scorer = bundle_scorer(bundle, state.context)
    items[by_model], scores[by_model] = top_k(scorer, idx[by_model], seen, k, progress=reporter.advance)
    popular = popular_scorer(bundle)
    masked = ~by_model & known  # popular items minus what these users' history shows they have seen
    items[masked], scores[masked] = top_k(popular, idx[masked], seen, k, progress=reporter.advance)
    cold = ~known
    if cold.any():
        # Every cold-start user gets the same list: rank once, then broadcast.
        cold_items, cold_scores = top_k(popular, np.zeros(1, np.int64), seen, k)
        items[cold], scores[cold] = cold_items, cold_scores
        reporter.advance(int(cold.sum()))
    reporter.stop()
    source = np.where(by_model, np.where(idx < state.n_known, "model", "history"), "popular")
    return items, scores, source
