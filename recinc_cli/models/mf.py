"""Matrix factorisation trained with a softmax ranking loss over the catalogue.

score(u, i) = <p_u, q_i> + b_i. Each event (u, i, w) contributes ``w * -log softmax_i``, the
softmax taken over every item where it is affordable
(:meth:`~recinc_cli.config.TrainConfig.exact_softmax`: by cost, or up to
``full_softmax_max_items`` items), and over the positive plus a shared set of uniformly
sampled negatives otherwise (uniform proposals need no log-Q correction).

Why softmax and not BPR: a softmax pushes every unobserved item down at once, and the item
bias b_i it learns tracks what is being consumed now; in our streaming benchmark it ranks
better than BPR (see README, "Where recinc stands").

>>> from recinc_cli.config import ModelConfig
>>> m = MF({"user": 3, "item": 5}, ModelConfig(name="mf", dim=4))
>>> m.score({"user": torch.tensor([1, 2])}).shape
torch.Size([2, 5])
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.events import TrainData
from recinc_cli.data.pop_prior import PopPrior
from recinc_cli.models.base import Batch, GradientRecommender, Query, TrainInput, shuffled_slices
from recinc_cli.models.blas import scores_product
from recinc_cli.models.losses import sampled_softmax_ce


class MF(GradientRecommender):
    """User and item embeddings (``dim``) plus an item bias."""

    name = "mf"
    SPARSE: ClassVar[frozenset[str]] = frozenset({"user_emb"})
    POP_PRIOR: ClassVar[bool] = True

    def __init__(self, sizes: Mapping[str, int], cfg: ModelConfig) -> None:
        super().__init__(sizes, cfg)
        self.user_emb = nn.Parameter(torch.zeros(self.n_users, cfg.dim))
        self.item_emb = nn.Parameter(torch.zeros(self.n_items, cfg.dim))
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))

    def tables(self) -> dict[str, str]:
        return {"user_emb": "user", "item_emb": "item", "item_bias": "item"}

    def score(self, query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
        # sparse=True: a training-time caller (distillation) then gives user_emb the sparse
        # gradient its SparseAdam expects; scores are the same either way.
        users = F.embedding(query["user"], self.user_emb, sparse=True)
        return scores_product(users, self.item_emb, self.item_bias, out=out)

    def batches(self, job: TrainInput, generator: torch.Generator) -> Iterator[Batch]:
        data, cfg, replay = job.data, job.cfg, job.replay
        pop: PopPrior | None = None
        if job.pop_prior is not None:
            pop = job.pop_prior(data).extended(0 if replay is None else len(replay))
        data = data.concat(replay)  # order does not matter to mf: replayed events are more events
        n_snaps = 1 if pop is None else len(pop.log_pop)
        key = data.user_idx.astype(np.int64) * n_snaps + (0 if pop is None else pop.snap)
        order = np.argsort(key, kind="stable")
        keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
        if cfg.exact_softmax(self.n_items, rows=len(keys), events=len(data)):
            yield from self._user_batches(data, cfg, generator, pop, (order, keys, starts, counts))
        else:
            yield from self._event_batches(data, cfg, generator, pop)

    def _user_batches(
        self,
        data: TrainData,
        cfg: TrainConfig,
        generator: torch.Generator,
        prior: PopPrior | None,
        rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> Iterator[Batch]:
        """Shuffled users packed into batches of about ``batch_size`` events.

        All events of a user share one softmax, so a batch costs (users x items), not
        (events x items): the same loss as one softmax per event, many times cheaper. With a
        popularity ``prior`` a row is a user at one snapshot, whose events share its offsets.
        ``rows``: the events' order by row, each row's key (user x snapshots + snapshot), first
        position in that order and event count.
        """
        n_snaps = 1 if prior is None else len(prior.log_pop)
        order, keys, starts, counts = rows
        users, snaps = keys // n_snaps, torch.as_tensor(keys % n_snaps)
        perm = torch.randperm(len(users), generator=generator).numpy()
        batch_of = (np.cumsum(counts[perm]) - 1) // cfg.batch_size
        bounds = np.flatnonzero(np.diff(batch_of, prepend=-1, append=batch_of[-1] + 1))
        items = torch.as_tensor(data.item_idx[order].astype(np.int64))
        weights = torch.as_tensor(data.weight[order].astype(np.float32))
        l2 = torch.tensor(cfg.l2)
        for lo, hi in itertools.pairwise(bounds):
            chosen = perm[lo:hi]
            n = counts[chosen]
            # event positions of the chosen users, without a Python loop over users
            offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            ev = torch.as_tensor(np.repeat(starts[chosen], n) + offsets)
            batch = {
                "user": torch.as_tensor(users[chosen]),
                "row": torch.as_tensor(np.repeat(np.arange(len(chosen)), n)),
                "item": items[ev],
                "weight": weights[ev],
                "l2": l2,
            }
            if prior is not None:
                batch["offset"] = prior.log_pop[snaps[chosen]]
            yield batch

    def _event_batches(
        self, data: TrainData, cfg: TrainConfig, generator: torch.Generator, prior: PopPrior | None
    ) -> Iterator[Batch]:
        """Shuffled events with ``n_negatives`` uniform negatives shared by the batch."""
        users = torch.as_tensor(data.user_idx.astype(np.int64))
        items = torch.as_tensor(data.item_idx.astype(np.int64))
        weights = torch.as_tensor(data.weight.astype(np.float32))
        l2 = torch.tensor(cfg.l2)
        for idx in shuffled_slices(len(data), cfg.batch_size, generator):
            neg = torch.randint(1, self.n_items, (cfg.n_negatives,), generator=generator)
            batch = {
                "user": users[idx],
                "row": torch.arange(len(idx)),
                "item": items[idx],
                "weight": weights[idx],
                "neg": neg,
                "l2": l2,
            }
            if prior is not None:
                # (snapshots x negatives) first: never an (events x catalogue) block
                snap = torch.as_tensor(prior.snap[idx])
                batch["offset_pos"] = prior.log_pop[snap, items[idx]]
                batch["offset_neg"] = prior.log_pop[:, neg][snap]
            yield batch

    def loss(self, batch: Batch) -> torch.Tensor:
        """Weighted softmax cross-entropy: sum_e w_e (logsumexp_u - s_{u,i_e}) / sum_e w_e.

        ``user`` (U,) rows of the batch; ``row``/``item``/``weight`` (E,) one per event, ``row``
        indexing ``user``; optional ``neg`` (M,) shared sampled negatives (then U = E). Optional
        popularity-prior offsets (:mod:`recinc_cli.data.pop_prior`): ``offset`` (U, n_items), or with
        negatives ``offset_pos`` (E,) and ``offset_neg`` (E, M).
        """
        # sparse=True: the optimizer then only touches the user rows in this batch.
        u = F.embedding(batch["user"], self.user_emb, sparse=True)
        row, pos, w = batch["row"], batch["item"], batch["weight"]
        pos_logit = (u[row] * self.item_emb[pos]).sum(-1) + self.item_bias[pos]
        if "neg" in batch:
            neg = batch["neg"]
            neg_logit = u @ self.item_emb[neg].T + self.item_bias[neg]
            if "offset_pos" in batch:
                pos_logit, neg_logit = pos_logit + batch["offset_pos"], neg_logit + batch["offset_neg"]
            ce = sampled_softmax_ce(pos_logit, neg_logit, pos, neg)
        else:
            logits = u @ self.item_emb.T + self.item_bias
            if "offset" in batch:
                logits = logits + batch["offset"]
                pos_logit = pos_logit + batch["offset"][row, pos]
            logits[:, 0] = float("-inf")
            ce = torch.logsumexp(logits, dim=1)[row] - pos_logit
        reg = batch["l2"] * ((u[row] ** 2).sum(-1) + (self.item_emb[pos] ** 2).sum(-1))
        return (w * (ce + reg)).sum() / w.sum()
