"""Session-kNN (V-SKNN, Ludewig & Jannach 2018) with sequential rules: a memory-based model.

For a session (a user's newest clicks, newest weighted most):

1. Similar sessions: every stored session is scored by the sum of the current session's
   position weights over the items they share (linear decay: the newest click weighs 1, the
   one ``L`` clicks back ``1/L``, as V-SKNN). The ``neighbors`` best are kept.
2. Neighbour votes: each item scores the summed similarity of the neighbours that hold it.
3. Sequential rules (SR, Ludewig et al. 2021): items that followed the current session's
   newest click in stored sessions, weighted 1/steps for up to :data:`RULE_STEPS` steps later.
4. The two parts are scaled to a maximum of 1 each and added; stored-session popularity
   breaks ties, so a session with no neighbour still gets a sensible list.

Memory, not parameters: :meth:`SKNN.absorb` appends each user's (session's) newest ``max_len``
clicks to a CSR store kept in the checkpoint, so ``update`` is an append and the same events
give the same model whether they arrive at once or slice by slice. A known session never
counts as its own neighbour. The session-item matrix and the rules are rebuilt from the store
when first needed after a change (about a second per million stored clicks).

Why it is here: on click-session logs (anonymous visits), where the next click is decided
within the visit, neighbourhood and rule models are the strong baselines of the field;
README, "Session logs".

>>> from recinc_cli.config import ModelConfig
>>> from recinc_cli.data.context import Context
>>> from recinc_cli.data.events import TrainData
>>> m = SKNN({"user": 4, "item": 5}, ModelConfig(name="sknn"))
>>> d = TrainData.of_pairs([1, 1, 2, 2, 3], [1, 2, 1, 3, 4])
>>> m.absorb(d, Context.empty(4), half_life_events=0)
>>> s = m.score({"user": torch.tensor([9]), "seq_item": torch.tensor([[0, 1]])})
>>> s[0, 2] > s[0, 4], s[0, 3] > s[0, 4]
(tensor(True), tensor(True))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import sparse

from recinc_cli.config import ModelConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.models.base import ClosedFormRecommender, Query

#: A rule links a click to the items up to this many clicks after it, weighted 1/steps.
RULE_STEPS = 3
#: Weight of popularity among stored sessions: a tie-breaker below any neighbour or rule vote.
POP_TIEBREAK = 1e-3
#: Floats of one (sessions x users) similarity block; bounds scoring memory (64 MiB).
_BLOCK_FLOATS = 1 << 24


class SKNN(ClosedFormRecommender):
    """Stored sessions: ``mem_indptr`` (n_users + 1,) int64 and ``mem_items`` (nnz,) int64,
    each user's newest ``max_len`` items, oldest first."""

    name = "sknn"
    FIT_SUMMARY: ClassVar[str] = "sessions stored"
    CONTEXT: ClassVar[bool] = True
    NO_GRADIENT: ClassVar[str] = "stores sessions; see SKNN.absorb"
    mem_indptr: torch.Tensor
    mem_items: torch.Tensor

    def __init__(self, sizes: Mapping[str, int], cfg: ModelConfig) -> None:
        super().__init__(sizes, cfg)
        self.register_buffer("mem_indptr", torch.zeros(self.n_users + 1, dtype=torch.int64))
        self.register_buffer("mem_items", torch.zeros(0, dtype=torch.int64))
        self._cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def tables(self) -> dict[str, str]:
        return {}  # the store grows by append: see grow() and absorb()

    def reset_parameters(self, init: str, generator: torch.Generator) -> None:
        self.mem_indptr = torch.zeros(self.n_users + 1, dtype=torch.int64)
        self.mem_items = torch.zeros(0, dtype=torch.int64)
        self._cache = None

    def grow(self, sizes: Mapping[str, int], init: str, generator: torch.Generator) -> None:
        """New users start with an empty session; new items with no votes."""
        sizes = {**self.sizes, **sizes}
        if sizes["user"] < self.n_users or sizes["item"] < self.n_items:
            raise ValueError("cannot shrink the session store")
        extra = sizes["user"] - self.n_users
        if extra:
            self.mem_indptr = torch.cat([self.mem_indptr, self.mem_indptr[-1:].repeat(extra)])
        self.sizes = sizes
        self._cache = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The store's length is the data's, not the model's size: take the saved shapes.
        for name in ("mem_indptr", "mem_items"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        self._cache = None
        super()._load_from_state_dict(state_dict, prefix, *args)

    def store(self) -> Context:
        """The stored sessions as a :class:`~recinc_cli.data.context.Context` (types and times 0)."""
        n = len(self.mem_items)
        return Context(
            self.mem_indptr,
            self.mem_items.to(torch.int32),
            torch.zeros(n, dtype=torch.int16),
            torch.zeros(n, dtype=torch.int64),
        )

    def absorb(self, data: TrainData, prior: Context, half_life_events: float) -> None:
        """Append the time-ordered events of ``data`` to their users' stored sessions.

        ``prior`` and ``half_life_events`` are part of the closed-form contract; stored
        sessions are not decayed (neighbours are chosen by overlap, and the rules by counts).
        """
        n_users = max(self.n_users, int(data.user_idx.max(initial=0)) + 1)
        ctx = self.store().extend(data.user_idx, data.item_idx, data.types(), data.ts_ms, n_users, self.cfg.max_len)
        self.mem_indptr, self.mem_items = ctx.indptr, ctx.items.to(torch.int64)
        self._cache = None

    def _matrices(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix, torch.Tensor]:
        """(sessions (n_users, n_items) 0/1, rules (n_items, n_items), both scipy CSR float32;
        popularity among stored sessions (n_items,) in [0, 1]), built once per change."""
        if self._cache is None:
            indptr = self.mem_indptr.numpy()
            items = self.mem_items.numpy()
            n_users, n_items = len(indptr) - 1, self.n_items
            user = np.repeat(np.arange(n_users), np.diff(indptr))
            sessions = sparse.csr_matrix(
                (np.ones(len(items), np.float32), (user, items)), shape=(n_users, n_items), dtype=np.float32
            )
            sessions.data[:] = 1.0  # an item clicked twice in a session counts once
            pop = torch.from_numpy(np.asarray(sessions.sum(0)).ravel().astype(np.float32))
            self._cache = (sessions, follow_weights(user, items, n_items), pop / pop.max().clamp(min=1.0))
        return self._cache

    def score(self, query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
        """Neighbour votes + rule votes (each scaled to at most 1) + a popularity tie-breaker,
        ``(B, n_items)``, for the sessions ``seq_item`` (B, W) of the users ``user`` (B,)."""
        seq, users = query["seq_item"], query["user"]
        sessions, rules, pop = self._matrices()
        if out is None:
            out = torch.empty(len(seq), self.n_items)
        step = max(1, _BLOCK_FLOATS // max(sessions.shape[0], 1))
        for lo in range(0, len(seq), step):
            out[lo : lo + step] = self._score_block(seq[lo : lo + step], users[lo : lo + step], sessions, rules)
        return out.add_(pop, alpha=POP_TIEBREAK)

    def _score_block(
        self, seq: torch.Tensor, users: torch.Tensor, sessions: sparse.csr_matrix, rules: sparse.csr_matrix
    ) -> torch.Tensor:
        b, w = seq.shape
        seq = seq.clamp(max=self.n_items - 1)
        valid = seq > 0
        length = valid.sum(1, keepdim=True).clamp(min=1)
        back = torch.arange(w, 0, -1)[None, :]  # 1 = the newest click
        weight = ((length - back + 1) / length).clamp(min=0) * valid
        query = torch.zeros(b, self.n_items).scatter_reduce_(1, seq, weight.float(), reduce="amax")
        query[:, 0] = 0.0
        n_sessions = sessions.shape[0]
        knn = torch.zeros(b, self.n_items)
        if n_sessions:
            sims = torch.from_numpy(np.ascontiguousarray((sessions @ query.numpy().T).T))  # (b, n_sessions)
            own = users < n_sessions
            sims[own.nonzero().squeeze(1), users[own]] = 0.0  # a session is not its own neighbour
            top, nb = torch.topk(sims, min(self.cfg.neighbors, n_sessions), dim=1)
            votes = sparse.csr_matrix(
                (top.clamp(min=0).numpy().ravel(), nb.numpy().ravel(), np.arange(0, b * nb.shape[1] + 1, nb.shape[1])),
                shape=(b, n_sessions),
            )
            knn = torch.from_numpy((votes @ sessions).toarray())
        last = seq[:, -1] if w else torch.zeros(b, dtype=torch.int64)
        follow = torch.from_numpy(rules[last.numpy()].toarray())
        follow[last == 0] = 0.0
        return _unit(knn) + _unit(follow)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its maximum (rows of zeros stay zero)."""
    return x / x.max(1, keepdim=True).values.clamp(min=1e-12)


def follow_weights(user: np.ndarray, items: np.ndarray, n_items: int, steps: int = RULE_STEPS) -> sparse.csr_matrix:
    """(n_items, n_items) float32: weight of item b following item a within a session, summed
    over sessions, 1/steps for b up to ``steps`` clicks after a (``steps`` 1: pair counts).

    ``user``, ``items`` (n,) int64: the sessions' clicks, grouped by session, each in time order.
    """
    src, dst, val = [], [], []
    for step in range(1, steps + 1):
        same = user[step:] == user[:-step] if len(user) > step else np.zeros(0, bool)
        src.append(items[:-step][same] if len(user) > step else items[:0])
        dst.append(items[step:][same] if len(user) > step else items[:0])
        val.append(np.full(int(same.sum()), 1.0 / step, np.float32))
    a, b, v = np.concatenate(src), np.concatenate(dst), np.concatenate(val)
    return sparse.csr_matrix((v, (a, b)), shape=(n_items, n_items), dtype=np.float32)  # duplicates summed
