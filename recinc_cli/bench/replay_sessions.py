"""``replay --protocol session``: each slice's sessions scored click by click, for every strategy.

As in :mod:`recinc_cli.evaluation.sessions`, but the ground truth must be the same for every strategy,
so it is taken from the log, not from a model: the cases of slice s are built over the items
seen before s (clicks on items first seen in s are dropped, as a catalogue would not hold
them yet), and each strategy ranks its own catalogue for them; a target a strategy does not
know is a miss. The unit is the case (one next click), so ``users`` in the report counts cases.

>>> import datetime as dt
>>> t = [dt.datetime(2026, 1, 1, 0, m) for m in range(6)]
>>> before = pl.DataFrame({"user_id": ["s0"] * 3, "item_id": ["a", "b", "c"], "timestamp": t[:3]})
>>> test = pl.DataFrame({"user_id": ["s1"] * 3, "item_id": ["a", "b", "a"], "event_type": ["click"] * 3,
...     "timestamp": t[3:], "weight": [1.0] * 3})
>>> truth = session_truth(before, test, max_len=50, repeats=False)
>>> truth.target_ids.to_list(), popular_sessions(before, truth, k=2).metrics["hit_rate"]
(['b'], 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.evaluation.metrics import SliceScore
from recinc_cli.evaluation.sessions import SessionCases, session_cases
from recinc_cli.serving.recommend import popularity_scorer, top_k
from recinc_cli.serving.views import serving_state

if TYPE_CHECKING:
    from recinc_cli.store.bundle import Bundle


@dataclass(frozen=True)
class SessionTruth:
    """The counted cases of one slice: ``cases`` over the item vocabulary ``items`` (the items
    seen before the slice); ``counted`` (C,) bool the cases scored (repeat targets only with
    ``repeats``); ``target_ids`` their target items as raw ids."""

    cases: SessionCases
    items: Vocab
    counted: np.ndarray
    target_ids: pl.Series
    repeats: bool


def session_truth(before: pl.DataFrame, test: pl.DataFrame, max_len: int, repeats: bool) -> SessionTruth:
    """The cases of ``test`` over the items of ``before``."""
    items = Vocab.empty()
    items.extend(before["item_id"].cast(pl.String).unique(maintain_order=True))
    cases = session_cases(test, items, max_len)
    counted = np.ones(len(cases), bool) if repeats else ~cases.is_repeat
    target_ids = pl.Series("item_id", items.ids, pl.String).gather(cases.target[counted])
    return SessionTruth(cases, items, counted, target_ids, repeats)


def score_bundle_sessions(bundle: Bundle, truth: SessionTruth, k: int) -> SliceScore:
    """Metrics@k of ``bundle`` serving each counted case from its revealed clicks (a model that
    cannot serve from history falls back to popularity, as ``recommend`` does)."""
    from recinc_cli.serving.serve import serve_top

    state = serving_state(bundle, truth.cases.history)
    raw = truth.cases.case_ids.filter(pl.Series(truth.counted))
    top, _, _ = serve_top(bundle, state, raw, k, repeats=truth.repeats)
    return _scored(top, bundle.items.lookup(truth.target_ids), k)


def popular_sessions(window: pl.DataFrame, truth: SessionTruth, k: int) -> SliceScore:
    """Metrics@k of ranking the items seen before the slice by their count in ``window``, minus
    each case's revealed clicks unless ``repeats``."""
    counts = np.bincount(truth.items.lookup(window["item_id"].cast(pl.String)), minlength=len(truth.items))
    scores = torch.from_numpy(counts.astype(np.float32))
    scores[0] = float("-inf")
    cases = truth.cases
    seen = None
    if not truth.repeats:
        row = pl.DataFrame({"user_id": cases.case_ids, "row": np.arange(len(cases))})
        hist = cases.history.join(row, on="user_id", how="left")
        seen = SeenItems.empty(len(cases)).merge(
            hist["row"].to_numpy(), truth.items.lookup(hist["item_id"].cast(pl.String)), len(cases)
        )
    top, _ = top_k(popularity_scorer(scores), np.flatnonzero(truth.counted), seen, k)
    return _scored(top, truth.items.lookup(truth.target_ids), k)


def _scored(top: np.ndarray, target: np.ndarray, k: int) -> SliceScore:
    """SliceScore of rankings ``top`` (C, k) against one target item per case (0 = unknown: a miss)."""
    return SliceScore.of(top, np.arange(len(target)), target, k)
