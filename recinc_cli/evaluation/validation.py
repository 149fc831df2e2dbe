"""What ``init`` and ``update`` validate on: the held-out newest events, under the protocol that
fits the log.

Most logs bring back the users of the held-out events: they are judged by the next-slice
protocol (each user's items new to them there). In a session log (anonymous visits) the
held-out users are new sessions the model never saw, so the next-slice protocol would judge a
few visits that happen to straddle the cut, and choose epochs and the popularity weight on
noise (issue 13: a ``sasrec`` init chose popularity weight 8 and served popularity). When users
seen before the held-out part account for under :data:`RETURNING_SHARE` of its events, the
session protocol (:mod:`recinc_cli.evaluation.sessions`) is used instead: each held-out session's next
clicks, from its clicks before them. The lineage records which (``valid_protocol``).

The threshold is low on purpose. Measured shares of held-out events by returning users: YooChoose
sessions 0.013 (visits straddling the cut); MovieLens-100K 0.09-0.69 and MovieLens-1M 0.20-1.0
(``replay``'s base and slices: people rate in bursts, so many held-out raters are new), Taobao
0.98-1.0. At 0.5 the MovieLens logs were validated as sessions, and incremental ``sasrec`` on
MovieLens-100K fell to NDCG@10 0.1246 under the streaming protocol, which scores returning users.

>>> returning_share(np.array([1, 1, 2, 3]), np.array([True, False, True, False]))
0.25
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from recinc_cli.data.seen import SeenItems
from recinc_cli.distributed import agree
from recinc_cli.evaluation.metrics import never_seen, ranking_metrics, slice_truth
from recinc_cli.evaluation.sessions import session_cases
from recinc_cli.serving.recommend import top_k
from recinc_cli.serving.views import bundle_scorer, serving_state

if TYPE_CHECKING:
    from recinc_cli.evaluation.sessions import SessionCases
    from recinc_cli.serving.history import ServingState
    from recinc_cli.store.bundle import Bundle

#: NDCG cut-off of every validation.
VALID_K = 10
#: Below this share of held-out events by returning users, a log is validated as sessions
#: (module docstring: session logs measure about 0.01, ratings and shopping logs 0.09 and up).
RETURNING_SHARE = 0.05


def returning_share(user_idx: np.ndarray, known_before: np.ndarray) -> float:
    """Share of events ``user_idx`` (n,) whose user had events before: ``known_before``
    (n_users,) bool indexed by user."""
    if len(user_idx) == 0:
        return 0.0
    return float(known_before[user_idx].mean())


@dataclass
class Validation:
    """Held-out events judged by ``protocol`` (``next`` or ``session``) over ``units`` users or
    sessions; :meth:`ndcg` scores a bundle's current model with a popularity weight."""

    protocol: str
    units: int
    repeats: bool
    truth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    cases: SessionCases | None = None
    _state: ServingState | None = field(default=None, repr=False)

    def ndcg(self, bundle: Bundle, pop_weight: float) -> float:
        """Mean NDCG@:data:`VALID_K` of ``bundle`` served with ``pop_weight``. Under torchrun,
        rank 0's figure on every rank: early stopping and the popularity weight decide on it."""
        return agree(lambda: self._ndcg(bundle, pop_weight))

    def _ndcg(self, bundle: Bundle, pop_weight: float) -> float:
        if self.protocol == "next":
            assert self.truth is not None
            users, row, truth = self.truth
            seen = None if self.repeats else bundle.seen
            top, _ = top_k(bundle_scorer(bundle, pop_weight=pop_weight), users, seen, VALID_K)
            return ranking_metrics(top, row, truth, VALID_K, len(bundle.items) - 1)["ndcg"]
        assert self.cases is not None
        if self._state is None:  # the bundle's context is fixed while a validation runs
            self._state = serving_state(bundle, self.cases.history)
        state = self._state
        idx = state.lookup(bundle.users, self.cases.case_ids)
        counted = np.ones(len(idx), bool) if self.repeats else ~self.cases.is_repeat
        seen = None if self.repeats else state.seen
        scorer = bundle_scorer(bundle, state.context, pop_weight=pop_weight)
        top, _ = top_k(scorer, idx[counted], seen, VALID_K)
        target = self.cases.target[counted]
        return ranking_metrics(top, np.arange(len(target)), target, VALID_K, len(bundle.items) - 1)["ndcg"]


def validation_for(bundle: Bundle, held: pl.DataFrame, seen: SeenItems) -> Validation | None:
    """The validation of ``held`` (time-sorted events after those in ``seen``, the items each
    user had before); None when nothing in it can be judged.

    Uses ``bundle``'s vocabularies, its stored ``repeats`` setting and, for sessions, its
    ``max_len``. Users with a row in ``seen`` count as returning.
    """
    repeats = bundle.train_cfg.repeats
    user_idx = bundle.users.lookup(held["user_id"])
    known_before = np.zeros(max(len(bundle.users), seen.n_users) + 1, dtype=bool)
    known_before[: seen.n_users] = np.diff(seen.indptr.numpy()) > 0
    # Only a model that reads a session's clicks can serve a new session from them.
    sequential = bundle.context is not None
    if sequential and returning_share(user_idx, known_before) < RETURNING_SHARE:
        cases = session_cases(held, bundle.items, bundle.model_cfg.max_len)
        counted = len(cases) if repeats else int((~cases.is_repeat).sum())
        if counted:
            return Validation("session", cases.n_sessions, repeats, cases=cases)
    users, row, truth = slice_truth(held, bundle.users, bundle.items, never_seen if repeats else seen.contains)
    if len(users) == 0:
        return None
    return Validation("next", len(users), repeats, truth=(users, row, truth))
