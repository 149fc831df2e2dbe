"""``--model ranker``: candidate generators, then a LightGBM lambdarank model over their features.

Two stages, as in production recommenders and the OTTO / H&M / RecSys Challenge winners:

1. **Candidates.** For each user, the top ``candidates`` items (``--candidates``, default 50)
   of each generator, pooled: item-kNN (``cos``), recent-item kNN (``rec``: the newest 5
   items only, newest weighted most), PureSVD (``svd``), EASE (``ease``, catalogues up to
   10,000 items; missing beyond) and decayed popularity (``pop``). All come from one sparse,
   decayed co-occurrence matrix (:mod:`recinc_cli.models.item_graph`) and popularity counters
   kept on an event clock, so ``update`` folds a slice in without re-reading the log.
2. **Ranking.** A LightGBM lambdarank model scores each candidate from :data:`FEATURES`: each
   generator's score (scaled to the user's best) and rank; item popularity at three half-lives
   and in total, and its trend; item age and time since its last event; the user's activity,
   time since their last event and how mainstream their taste is. Time is counted in events
   (the log's own pace), in units of a tenth of the first fit's half-life.

Training (see :mod:`recinc_cli.training.ranker_fit`): examples are built with the features as of a
cut-off and labelled with the new items each user took *after* it, never from the slice being
served; they are pooled over runs (newest :data:`POOL_ROWS` rows); ``init`` fits the booster on
the pool and each ``update`` continues it on the pool with :data:`CONTINUE_ROUNDS` more trees.
The booster is kept in the checkpoint as its text (a uint8 tensor), parsed on load: no pickle.

Non-candidates score below every candidate, in popularity order, so every command that reads
``score`` (recommend, ``--history``, evaluate, replay, the gate) works unchanged.

>>> from recinc_cli.config import ModelConfig
>>> from recinc_cli.data.context import Context
>>> from recinc_cli.data.events import TrainData
>>> from recinc_cli.models import build_model
>>> m = build_model(ModelConfig(name="ranker"), {"user": 3, "item": 5})
>>> d = TrainData.of_pairs([1, 1, 2, 2, 2], [1, 2, 1, 2, 3])
>>> m.absorb(d, Context.empty(3), half_life_events=100)
>>> s = m.score({"user": torch.tensor([1]), "seq_item": torch.tensor([[1, 2]])})
>>> int(s[0, 1:].argmax()) + 1  # no booster yet: generators' blend; item 3 co-occurs with 1 and 2
3
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import sparse

from recinc_cli.config import ModelConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.unique import sorted_unique
from recinc_cli.models import item_graph
from recinc_cli.models.base import Query, RankingRecommender
from recinc_cli.models.ease import MAX_ITEMS as EASE_MAX_ITEMS
from recinc_cli.models.ease import ease_solve

GENERATORS: tuple[str, ...] = ("cos", "rec", "svd", "ease", "pop")
#: Popularity half-lives, as fractions of the first fit's co-occurrence half-life (about the
#: size of the first log); a fourth column counts every event, undecayed.
POP_SCALES: tuple[float, ...] = (0.02, 0.1, 0.5)
#: Feature name -> group (:data:`~recinc_cli.config.RANK_FEATURE_GROUPS`); the columns of groups
#: left out of ``--rank-features`` are missing (NaN) values, so the booster cannot split on them.
FEATURES: dict[str, str] = {
    **{f"{kind}_{g}": "generators" for g in GENERATORS for kind in ("score", "rank")},
    **{name: "popularity" for name in ("pop_short", "pop_mid", "pop_long", "pop_total", "pop_trend")},
    "item_age": "item_age",
    "item_idle": "item_age",
    "user_events": "user",
    "user_idle": "user",
    "user_mainstream": "user",
}
#: Newest training rows kept for refits (older groups are dropped first).
POOL_ROWS = 200_000
#: Boosting rounds and LightGBM settings: trees of 3 leaves and an L2 penalty, because a log
#: gives a few hundred to a few thousand query groups per run and deeper trees overfit them.
#: Measured under replay (README, "Ranker"): 7 leaves x 100 rounds scored 0.1757 / 0.1945
#: NDCG@10 on MovieLens-100K / -1M, 15 x 200 0.1689 / 0.1849, 4 x 150 0.1874 / 0.1955,
#: 3 x 200 0.1911 / 0.1983, 2 x 300 0.1896 / 0.1985.
ROUNDS = 200
#: Rounds an ``update`` adds to the stored booster, fit on the whole pool with the stored trees'
#: scores as the starting point (LightGBM's ``init_model``), instead of a refit: a tenth of the
#: cost. Boosters fit offline on the replay slices' examples (README, "0.8.0") scored 0.2071 /
#: 0.2017 NDCG@10 on MovieLens-100K / -1M against 0.2064 / 0.2047 for a refit at every update
#: (differences under about 0.005 are noise there); fitting only the new slice's examples
#: scored 0.1992 / 0.1960.
CONTINUE_ROUNDS = 20
#: A booster that would grow past this many trees is refit from scratch on the pool instead, so
#: scoring time stays bounded however many updates a lineage has (one refit every 20 updates).
MAX_TREES = 3 * ROUNDS
PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "learning_rate": 0.05,
    "num_leaves": 3,
    "lambda_l2": 10.0,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "lambdarank_truncation_level": 20,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
#: Floats in one generator's dense (users x items) scores for a block of users (32 MiB).
_ROW_FLOATS = 1 << 23
#: Co-occurring pairs one sparse product of :meth:`Ranker.absorb` holds at most (about 200 MiB).
_PAIR_BUDGET = 1 << 24
#: Entries (two per pair of items) the co-occurrence matrix keeps after pruning, at most, up to
#: 167,772 items (beyond, 2 x --neighbors an item): 400 MiB as a checkpoint's int32/int32/float32
#: triplets. MovieLens-1M users 1-1500 (3,545 items) holds 8.8M.
_GRAM_ENTRIES = 1 << 25
#: Non-candidates score this far below candidates (then by popularity).
_FLOOR = -1e4


def block_rows(n_items: int) -> int:
    """Users whose candidates are built at once: each generator's dense (users, n_items) float32
    scores stay near 32 MiB (2,267 users at 3,700 items, 41 at 200,000).

    >>> block_rows(200_001)
    41
    """
    return max(1, _ROW_FLOATS // max(n_items, 1))


def _row_best(s: torch.Tensor) -> torch.Tensor:
    """(B,) each row's largest magnitude in ``s`` (B, n), NaN and infinities read as 0, at least
    1e-9 (1 for rows of no items).

    >>> [round(v, 12) for v in _row_best(torch.tensor([[1.0, -3.0], [float("nan"), 0.0]])).tolist()]
    [3.0, 1e-09]
    """
    if not s.shape[1]:
        return torch.ones(len(s))
    return s.nan_to_num(0.0, 0.0, 0.0).abs().amax(1).clamp_min(1e-9)


def _dense(m: sparse.spmatrix) -> torch.Tensor:
    return torch.from_numpy(m.toarray().astype(np.float32, copy=False))


class Ranker(RankingRecommender):
    """Co-occurrence ``g_row``/``g_col``/``g_val`` (COO), popularity ``pop`` (n_items, 4),
    item clocks ``item_first``/``item_last``, user ``user_events``/``user_last``, the event
    ``clock``, the training ``pool_*`` and the ``booster`` text."""

    name = "ranker"
    # The training pool's ease column is NaN above EASE_MAX_ITEMS; LightGBM reads NaN as missing.
    MISSING_AS_NAN: ClassVar[frozenset[str]] = frozenset({"pool_x"})
    FIT_SUMMARY: ClassVar[str] = "co-occurrences counted and booster fit on {pool_rows:,} examples"
    CONTEXT: ClassVar[bool] = True
    NO_GRADIENT: ClassVar[str] = "is fit by recinc_cli.training.ranker_fit, not by gradient steps"
    g_row: torch.Tensor
    g_col: torch.Tensor
    g_val: torch.Tensor
    pop: torch.Tensor
    item_first: torch.Tensor
    item_last: torch.Tensor
    user_events: torch.Tensor
    user_last: torch.Tensor
    clock: torch.Tensor
    half_life: torch.Tensor
    pool_x: torch.Tensor
    pool_y: torch.Tensor
    pool_group: torch.Tensor
    booster: torch.Tensor
    booster_sha256: torch.Tensor
    svd_v: torch.Tensor

    def __init__(self, sizes: Mapping[str, int], cfg: ModelConfig) -> None:
        super().__init__(sizes, cfg)
        self._empty_state()

    def _empty_state(self) -> None:
        n_items, n_users, n_feat = self.n_items, self.n_users, len(FEATURES)
        for name, value in {
            "g_row": torch.zeros(0, dtype=torch.int64),
            "g_col": torch.zeros(0, dtype=torch.int64),
            "g_val": torch.zeros(0),
            "pop": torch.zeros(n_items, len(POP_SCALES) + 1, dtype=torch.float64),
            "item_first": torch.full((n_items,), -1.0, dtype=torch.float64),
            "item_last": torch.full((n_items,), -1.0, dtype=torch.float64),
            "user_events": torch.zeros(n_users, dtype=torch.float64),
            "user_last": torch.full((n_users,), -1.0, dtype=torch.float64),
            "clock": torch.zeros(1, dtype=torch.float64),
            "half_life": torch.zeros(1, dtype=torch.float64),
            "pool_x": torch.zeros(0, n_feat),
            "pool_y": torch.zeros(0),
            "pool_group": torch.zeros(0, dtype=torch.int64),
            "booster": torch.zeros(0, dtype=torch.uint8),
            "booster_sha256": torch.zeros(0, dtype=torch.uint8),
            "svd_v": torch.zeros(n_items, 0),
        }.items():
            self.register_buffer(name, value)
        self._cache: dict[str, Any] = {}

    def tables(self) -> dict[str, str]:
        return {}  # grown by padding: see grow()

    def reset_parameters(self, init: str, generator: torch.Generator) -> None:
        self._empty_state()

    def grow(self, sizes: Mapping[str, int], init: str, generator: torch.Generator) -> None:
        """New items and users start unseen: zero counts, clocks -1; the matrix just widens."""
        sizes = {**self.sizes, **sizes}
        if sizes["user"] < self.n_users or sizes["item"] < self.n_items:
            raise ValueError("cannot shrink the ranker's tables")
        for name, axis, fill in (
            ("pop", "item", 0.0),
            ("item_first", "item", -1.0),
            ("item_last", "item", -1.0),
            ("user_events", "user", 0.0),
            ("user_last", "user", -1.0),
            ("svd_v", "item", 0.0),  # an item new to the matrix has no factors yet
        ):
            old = getattr(self, name)
            extra = sizes[axis] - old.shape[0]
            if extra:
                setattr(self, name, torch.cat([old, torch.full((extra, *old.shape[1:]), fill, dtype=old.dtype)]))
        self.sizes = sizes
        self._cache = {}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "svd_v" not in state_dict:  # saved before 0.10: solved from the matrix on use
            state_dict[prefix + "svd_v"] = torch.zeros(len(state_dict[prefix + "pop"]), 0)
        # Every buffer's length is the data's: take the saved shapes.
        for name, _ in self.named_buffers():
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        self._cache = {}
        super()._load_from_state_dict(state_dict, prefix, *args)
        if len(self.booster):
            self._parse_booster()  # a damaged booster is a damaged checkpoint: fail on load

    # ----------------------------------------------------------------- state
    def absorb(self, data: TrainData, prior: Context, half_life_events: float) -> None:
        """Fold the time-ordered events of ``data`` into the co-occurrence matrix (decayed by
        2^(-events / ``half_life_events``), fixed at the first call; 0 = no decay), the
        popularity counters and the clocks. ``prior`` holds each user's items before ``data``."""
        if not len(data):
            return
        if float(self.clock[0]) == 0:
            self.half_life[0] = max(float(half_life_events), 0.0)
        hl = float(self.half_life[0]) or float("inf")
        chunk = max(1, int(hl // 4)) if hl < float("inf") else len(data)
        # The cached matrix is scaled in place below; the rest of the cache (neighbours, factors)
        # goes too: all of it is stale once the slice is in, and holding it while the new matrix
        # is counted and pruned added 340 MB to a medium update's peak.
        gram, ctx = self._gram(), prior
        self._cache = {}
        for lo in range(0, len(data), chunk):
            if lo:
                before = data.subset(np.arange(lo - chunk, lo))
                n_users = max(self.n_users, ctx.n_users)
                ctx = ctx.extend(
                    before.user_idx, before.item_idx, before.types(), before.ts_ms, n_users, self.cfg.max_len
                )
            part = data.subset(np.arange(lo, min(lo + chunk, len(data))))
            if hl < float("inf"):
                gram.data *= np.float32(2.0 ** (-len(part) / hl))
            gram = self._add_part(gram, ctx, part.user_idx, part.item_idx)
            self._count(part, hl)
        gram = self._bounded(gram, slack=1.0).tocsr()
        gram.eliminate_zeros()
        gram.sort_indices()
        coo = gram.tocoo()
        # int32 indices: 12 bytes an entry instead of 20 (catalogues stay far below 2^31 items)
        self.g_row, self.g_col = torch.from_numpy(coo.row.astype(np.int32)), torch.from_numpy(coo.col.astype(np.int32))
        self.g_val = torch.from_numpy(coo.data.astype(np.float32))
        # Rebuilt from the buffers, as a loaded checkpoint is: the same bytes give the same
        # neighbours, in memory and after a round trip.
        self._cache = {}
        # PureSVD's factors are kept, not solved on every load: at 200k items they cost more
        # than all the rest of serving's set-up (a function of the matrix all the same).
        self.svd_v = torch.from_numpy(item_graph.svd_factors(self._gram()))

    def _add_part(
        self, gram: sparse.csr_matrix, ctx: Context, users: np.ndarray, items: np.ndarray
    ) -> sparse.csr_matrix:
        """``gram`` plus the co-occurrences of the events ``(users, items)`` (m,) with each user's
        items in ``ctx``, in batches of users of at most :data:`_PAIR_BUDGET` pairs each (a batch
        of 2.5M events with 200-item histories would otherwise hold 500M pairs at once)."""
        uniq, rows = np.unique(users, return_inverse=True)
        lengths = ctx.lengths()
        known = uniq < len(lengths)
        depth = np.where(known, lengths[np.where(known, uniq, 0)] if len(lengths) else 0, 0)
        events = np.bincount(rows, minlength=len(uniq))
        reach = np.cumsum(events * (depth + events)) // _PAIR_BUDGET  # batch of each user
        cuts = np.flatnonzero(np.diff(reach)) + 1
        order = np.argsort(rows, kind="stable")  # add_pairs reads each user's events, in any order
        at = np.searchsorted(rows[order], np.concatenate([[0], cuts, [len(uniq)]]))
        for a, b, lo, hi in zip(at[:-1], at[1:], [0, *cuts], [*cuts, len(uniq)], strict=True):
            history = item_graph.binary_rows(ctx.padded(torch.as_tensor(uniq[lo:hi]))[0].numpy(), self.n_items)
            pick = order[a:b]
            gram = self._bounded(item_graph.add_pairs(gram, rows[pick] - lo, items[pick], history))
        return gram

    def _bounded(self, gram: sparse.csr_matrix, slack: float = 2.0) -> sparse.csr_matrix:
        """``gram``, pruned to each item's strongest partners (:func:`item_graph.prune`) once it
        holds ``slack`` x what pruning leaves at most (_GRAM_ENTRIES up to 167,772 items at the
        default 100 neighbours, 200 entries an item beyond): the matrix, and the model, stop
        growing with the log. ``per_row`` >= ``neighbors`` keeps every partner the kNN
        generators read. While counting, the slack of 2 spaces the prunes out; the matrix a
        fit keeps is pruned at slack 1, so a checkpoint holds at most that."""
        n = self.n_items
        per_row = max(self.cfg.neighbors, _GRAM_ENTRIES // (2 * n))
        return gram if gram.nnz <= slack * 2 * n * per_row else item_graph.prune(gram, per_row)

    def _count(self, part: TrainData, hl: float) -> None:
        n = len(part)
        start = float(self.clock[0])
        tick = start + np.arange(1, n + 1, dtype=np.float64)
        end = start + n
        items, users = part.item_idx, part.user_idx
        pop = self.pop.numpy()
        for k, scale in enumerate(POP_SCALES):
            h = hl * scale
            pop[:, k] = pop[:, k] * 2.0 ** (-n / h) + np.bincount(items, 2.0 ** (-(end - tick) / h), len(pop))
        pop[:, -1] += np.bincount(items, minlength=len(pop))
        first = self.item_first.numpy()
        unseen = np.flatnonzero(first[items] < 0)  # events of items never absorbed before
        fresh, at = np.unique(items[unseen], return_index=True)
        first[fresh] = tick[unseen[at]]
        np.maximum.at(self.item_last.numpy(), items, tick)
        self.user_events += torch.from_numpy(np.bincount(users, minlength=self.n_users).astype(np.float64))
        np.maximum.at(self.user_last.numpy(), users, tick)
        self.clock[0] = end

    def _gram(self) -> sparse.csr_matrix:
        """The co-occurrence matrix (n_items, n_items) CSR, rebuilt from the buffers once per change."""
        if "gram" not in self._cache:
            n = self.n_items
            gram = sparse.csr_matrix(
                (self.g_val.numpy(), (self.g_row.numpy(), self.g_col.numpy())), shape=(n, n), dtype=np.float32
            )
            gram.sort_indices()
            self._cache["gram"] = gram
        return self._cache["gram"]

    def _derived(self, key: str) -> Any:
        """Neighbours, SVD factors and EASE weights, solved from the matrix once per change."""
        if key not in self._cache:
            gram = self._gram()
            if key == "cos":
                self._cache[key] = item_graph.cosine_neighbours(gram, self.cfg.neighbors)
            elif key == "svd":
                stored = self.svd_v.numpy()
                self._cache[key] = stored if stored.shape[1] or not gram.nnz else item_graph.svd_factors(gram)
            else:
                # Densify only when EASE applies: at 55k items the dense copy alone is 12 GB.
                small = self.n_items - 1 <= EASE_MAX_ITEMS and gram.nnz > 0
                # C order: the solve returns the transpose's layout, and scipy's sparse @ dense
                # copied the whole (n, n) matrix for every block of users (22 ms at 3,545 items:
                # 140 ms of a one-user request).
                self._cache[key] = (
                    np.ascontiguousarray(ease_solve(torch.from_numpy(gram.toarray()), self.cfg.ease_l2).numpy())
                    if small
                    else None
                )
        return self._cache[key]

    def _items(self) -> dict[str, Any]:
        """Per-item statistics every request reads, computed once per change (a request for
        one user at 111k items spent most of its time recomputing them): ``fallback`` (n,)
        scores below every candidate, ``unborn`` (n,) bool items never seen and ``unborn_idx``
        their indices, ``pop_mid`` (n,) log(1 + decayed popularity), ``share`` (n, 4) log
        popularity shares, ``total`` (n,) log(1 + count) and ``mean_total`` its mean over seen
        items."""
        if "items" not in self._cache:
            pop, first = self.pop.numpy(), self.item_first.numpy()
            mid = np.log1p(pop[:, 1]).astype(np.float32)
            n_seen = max(int((first >= 0).sum()), 1)
            total = np.log1p(pop[:, -1])
            seen_total = total[first >= 0]
            self._cache["items"] = {
                "fallback": _FLOOR + mid / max(float(mid.max(initial=0.0)), 1.0),
                "unborn": torch.from_numpy(first < 0),
                "unborn_idx": torch.from_numpy(np.flatnonzero(first < 0)),
                "pop_mid": torch.from_numpy(mid),
                "share": np.log(pop / np.maximum(pop.sum(0), 1e-12)[None, :] * n_seen + 1e-3),
                "total": total,
                "mean_total": float(seen_total.mean()) if len(seen_total) else 0.0,
            }
        return self._cache["items"]

    # ---------------------------------------------------------------- scoring
    def candidates(self, seq_item: np.ndarray, user_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate pairs and their features for users ``user_idx`` (B,) with context
        ``seq_item`` (B, W): rows (m,) into the batch, items (m,), features (m, len(FEATURES))
        float32 (NaN = missing, e.g. ``ease`` above 10,000 items), sorted by row, then item.

        Each generator's (B, n_items) scores are dense for one block of users (callers bound
        the block: :func:`block_rows`); its top ``candidates`` per row come from ``torch.topk``
        and its ranks are looked up by (row, item) key, so no other (B, n_items) array is built.
        """
        n = self.n_items
        x = item_graph.binary_rows(seq_item, n)
        # Never candidates: the padding item 0, items no event has reached yet, the user's own.
        r, c = np.nonzero(seq_item)
        own_r, own_c = torch.from_numpy(r), torch.from_numpy(seq_item[r, c])
        unborn = self._items()["unborn_idx"]
        blocked = self._items()["unborn"][None, :].repeat(len(seq_item), 1)
        blocked[own_r, own_c] = True
        blocked[:, 0] = True
        gens = self._generator_scores(x, seq_item)
        k = min(self.cfg.candidates, n - 1)
        tops: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # generator -> its sorted keys, their ranks
        best: dict[str, torch.Tensor] = {}  # generator -> each row's largest magnitude (B,)
        for g, s in gens.items():
            if s is None:
                continue
            # The (B, n_items) passes here are most of a block's time at 200k items: a finite
            # generator (all but EASE's) is scaled by one min-max pass and masked in place.
            finite = bool(torch.isfinite(s.sum())) and s.shape[1] > 0
            if finite:
                lo_hi = torch.aminmax(s, dim=1)
                best[g] = torch.maximum(lo_hi.max, -lo_hi.min).clamp_min(1e-9)
            else:
                best[g] = _row_best(s)
            if finite and g != "pop":  # pop's rows are a view of the model's own popularity
                # The blocked cells written in place, not a pass over a dense mask.
                masked = s.index_fill_(1, unborn, -torch.inf)
                masked[own_r, own_c] = -torch.inf
                masked[:, 0] = -torch.inf
            else:
                masked = s.masked_fill(blocked if finite else blocked | s.isnan(), -torch.inf)
            vals, top = torch.topk(masked, k, dim=1)
            ok = torch.isfinite(vals).numpy()
            keys = (np.arange(len(s))[:, None] * n + top.numpy())[ok]
            ranks = np.broadcast_to(np.arange(k, dtype=np.float32), ok.shape)[ok]
            order = np.argsort(keys, kind="stable")
            tops[g] = keys[order], ranks[order]
        union = sorted_unique(np.concatenate([keys for keys, _ in tops.values()] or [np.zeros(0, np.int64)]))
        rows, items = union // n, union % n
        return rows, items, self._features(rows, items, union, gens, best, tops, k, seq_item, user_idx)

    def _generator_scores(self, x: sparse.csr_matrix, seq_item: np.ndarray) -> dict[str, torch.Tensor | None]:
        """Each generator's (B, n_items) float32 scores for the rows of ``x``; None = missing."""
        n = self.n_items
        nbr = self._derived("cos")
        v = self._derived("svd")
        b = self._derived("ease")
        pop = self._items()["pop_mid"]
        return {
            "cos": _dense(x @ nbr),
            "rec": _dense(item_graph.recent_rows(seq_item, n) @ nbr),
            "svd": torch.from_numpy(np.asarray(x @ v, np.float32)) @ torch.from_numpy(v).T if v.shape[1] else None,
            "ease": torch.from_numpy(np.asarray(x @ b, np.float32)) if b is not None else None,
            "pop": pop[None, :].expand(x.shape[0], n),
        }

    def _features(
        self,
        rows: np.ndarray,
        items: np.ndarray,
        keys: np.ndarray,
        gens: dict[str, torch.Tensor | None],
        best: dict[str, torch.Tensor],
        tops: dict[str, tuple[np.ndarray, np.ndarray]],
        k: int,
        seq_item: np.ndarray,
        user_idx: np.ndarray,
    ) -> np.ndarray:
        clock = float(self.clock[0])
        unit = max(float(self.half_life[0]) * 0.1, 1.0)  # 1 event without decay
        stats = self._items()
        share = stats["share"]
        f: dict[str, np.ndarray] = {}
        r, c = torch.from_numpy(rows), torch.from_numpy(items)
        for g in GENERATORS:
            s = gens[g]
            if s is None:
                f[f"score_{g}"] = f[f"rank_{g}"] = np.full(len(rows), np.nan, np.float32)
                continue
            # Scaled to the row's largest magnitude, the user's own items included (``best``
            # is taken before the masking); a candidate is never masked, so s[r, c] is its score.
            f[f"score_{g}"] = (s[r, c] / best[g][r]).numpy()
            g_keys, g_ranks = tops[g]
            at = np.minimum(np.searchsorted(g_keys, keys), max(len(g_keys) - 1, 0))
            hit = g_keys[at] == keys if len(g_keys) else np.zeros(len(keys), bool)
            f[f"rank_{g}"] = np.log1p(np.where(hit, g_ranks[at] if len(g_keys) else 0.0, float(k)))
        for j, name in enumerate(("pop_short", "pop_mid", "pop_long", "pop_total")):
            f[name] = share[items, j]
        f["pop_trend"] = share[items, 0] - share[items, 2]
        f["item_age"] = np.log1p((clock - self.item_first.numpy()[items]) / unit)
        f["item_idle"] = np.log1p((clock - self.item_last.numpy()[items]) / unit)
        known = user_idx < self.n_users
        u = np.where(known, user_idx, 0)
        events = np.where(known, self.user_events.numpy()[u], 0.0)
        last = np.where(known & (self.user_last.numpy()[u] >= 0), self.user_last.numpy()[u], np.nan)
        total = stats["total"]
        depth = (seq_item > 0).sum(1)
        taste = (total[seq_item] * (seq_item > 0)).sum(1)
        mainstream = taste / np.maximum(depth, 1) - stats["mean_total"]
        f["user_events"] = np.log1p(events)[rows]
        f["user_idle"] = np.log1p((clock - last) / unit)[rows]
        f["user_mainstream"] = np.where(depth > 0, mainstream, np.nan)[rows]
        out = np.column_stack([f[name] for name in FEATURES]).astype(np.float32)
        out[:, [FEATURES[name] not in self.cfg.rank_features for name in FEATURES]] = np.nan  # --rank-features
        return out

    def score(self, query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
        """Booster scores of each user's candidates; every other item below them, by popularity.
        ``(B, n_items)`` float32 for ``user`` (B,) with context ``seq_item`` (B, W)."""
        seq = query["seq_item"].numpy()
        users = query["user"].numpy()
        n = self.n_items
        scores = np.empty((len(seq), n), np.float32) if out is None else out.numpy()
        scores[:] = self._items()["fallback"]
        step = block_rows(n)
        for lo in range(0, len(seq), step):
            rows, items, feats = self.candidates(seq[lo : lo + step], users[lo : lo + step])
            scores[lo + rows, items] = self.rank_scores(feats)
        return torch.from_numpy(scores) if out is None else out

    def rank_scores(self, feats: np.ndarray) -> np.ndarray:
        """(m,) float32 score of each candidate row of ``feats`` (m, len(FEATURES)): the
        booster's, or before any training the generators' scaled scores summed."""
        if not len(feats):
            return np.zeros(0, np.float32)
        booster = self._parse_booster()
        if booster is None:
            cols = [j for j, name in enumerate(FEATURES) if name.startswith("score_")]
            return np.nansum(feats[:, cols], axis=1).astype(np.float32)
        return np.asarray(booster.predict(feats, num_threads=torch.get_num_threads()), np.float32)

    # --------------------------------------------------------------- learning
    def learn(self, feats: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int) -> None:
        """Add query groups (sizes ``groups``, rows ``feats``/``labels``) to the pool, keep the
        newest :data:`POOL_ROWS` rows (whole groups) and fit the booster on the pool: continued
        by :data:`CONTINUE_ROUNDS` rounds when there is one, refit when there is none or it would
        grow past :data:`MAX_TREES` trees."""
        x = torch.cat([self.pool_x, torch.from_numpy(feats)])
        y = torch.cat([self.pool_y, torch.from_numpy(labels)])
        g = torch.cat([self.pool_group, torch.from_numpy(groups.astype(np.int64))])
        keep = int((g.flip(0).cumsum(0) <= POOL_ROWS).sum())
        g = g[len(g) - keep :]
        rows = int(g.sum())
        self.pool_x, self.pool_y, self.pool_group = x[len(x) - rows :], y[len(y) - rows :], g
        self._fit(seed)

    def _fit(self, seed: int) -> None:
        import lightgbm as lgb

        if not len(self.pool_group) or not bool((self.pool_y > 0).any()):
            return
        rows = len(self.pool_y)
        params = {
            **PARAMS,
            "min_data_in_leaf": max(5, min(200, rows // 100)),
            "seed": seed,
            "num_threads": torch.get_num_threads(),
        }
        data = lgb.Dataset(
            self.pool_x.numpy(), self.pool_y.numpy(), group=self.pool_group.numpy(), feature_name=list(FEATURES)
        )
        stored = self._parse_booster()
        if stored is not None and stored.num_trees() + CONTINUE_ROUNDS <= MAX_TREES:
            booster = lgb.train(params, data, num_boost_round=CONTINUE_ROUNDS, init_model=stored)
        else:
            booster = lgb.train(params, data, num_boost_round=ROUNDS)
        text = booster.model_to_string().encode()
        self.booster = torch.frombuffer(bytearray(text), dtype=torch.uint8).clone()
        self.booster_sha256 = torch.frombuffer(bytearray(hashlib.sha256(text).digest()), dtype=torch.uint8).clone()
        self._cache["booster"] = booster

    def _parse_booster(self) -> Any:
        if "booster" not in self._cache:
            if not len(self.booster):
                self._cache["booster"] = None
            else:
                import lightgbm as lgb

                text = bytes(self.booster.numpy())
                # LightGBM aborts the process on some malformed model texts instead of raising:
                # check the text's own digest and shape before handing it over.
                if hashlib.sha256(text).digest() != bytes(self.booster_sha256.numpy()):
                    raise ValueError("the ranker's booster does not parse (its text does not match its sha256)")
                if not text.startswith(b"tree\n") or b"\nend of trees\n" not in text:
                    raise ValueError("the ranker's booster does not parse (not a LightGBM model text)")
                try:
                    booster = lgb.Booster(model_str=text.decode())
                except (lgb.basic.LightGBMError, UnicodeDecodeError) as e:
                    raise ValueError(f"the ranker's booster does not parse ({str(e).splitlines()[0]})") from e
                if booster.num_feature() != len(FEATURES):
                    found = booster.num_feature()
                    raise ValueError(f"the ranker's booster reads {found} features, not {len(FEATURES)}")
                self._cache["booster"] = booster
        return self._cache["booster"]
