"""Matrix factorisation trained with a softmax ranking loss over the catalogue.

score(u, i) = <p_u, q_i> + b_i. Each event (u, i, w) contributes ``w * -log softmax_i``, the
softmax taken over every item when the catalogue has at most
``TrainConfig.full_softmax_max_items`` items, and over the positive plus a shared set of
uniformly sampled negatives otherwise (uniform proposals need no log-Q correction).

Why softmax and not BPR: a softmax pushes every unobserved item down at once, and the item
bias b_i it learns tracks what is being consumed now; in our streaming benchmark it ranks
better than BPR (see README, "Where recinc stands").

>>> from recinc_cli.config import ModelConfig
>>> m = MF(n_users=3, n_items=5, cfg=ModelConfig(dim=4))
>>> m.score(torch.tensor([1, 2])).shape
torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data import TrainData
from recinc_cli.models.base import Batch, Recommender, shuffled_slices


class MF(Recommender):
    """User and item embeddings (``dim``) plus an item bias."""

    name = "mf"
    TABLES: ClassVar[dict[str, str]] = {"user_emb": "user", "item_emb": "item", "item_bias": "item"}
    SPARSE: ClassVar[frozenset[str]] = frozenset({"user_emb"})

    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig) -> None:
        super().__init__(n_users, n_items, cfg)
        self.user_emb = nn.Parameter(torch.zeros(n_users, cfg.dim))
        self.item_emb = nn.Parameter(torch.zeros(n_items, cfg.dim))
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        return self.user_emb[user_idx] @ self.item_emb.T + self.item_bias

    def batches(self, data: TrainData, cfg: TrainConfig, generator: torch.Generator) -> Iterator[Batch]:
        users = torch.as_tensor(np.array(data.user_idx, dtype=np.int64))
        items = torch.as_tensor(np.array(data.item_idx, dtype=np.int64))
        weights = torch.as_tensor(np.array(data.weight, dtype=np.float32))
        sampled = self.n_items - 1 > cfg.full_softmax_max_items
        for idx in shuffled_slices(len(data), cfg.batch_size, generator):
            batch = {"user": users[idx], "item": items[idx], "weight": weights[idx], "l2": torch.tensor(cfg.l2)}
            if sampled:
                batch["neg"] = torch.randint(1, self.n_items, (cfg.n_negatives,), generator=generator)
            yield batch

    def loss(self, batch: Batch) -> torch.Tensor:
        # sparse=True: the optimizer then only touches the user rows in this batch.
        u = F.embedding(batch["user"], self.user_emb, sparse=True)
        pos = batch["item"]
        if "neg" in batch:
            neg = batch["neg"]
            pos_logit = (u * self.item_emb[pos]).sum(-1) + self.item_bias[pos]
            neg_logit = u @ self.item_emb[neg].T + self.item_bias[neg]
            neg_logit = neg_logit.masked_fill(neg[None, :] == pos[:, None], float("-inf"))
            logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
            target = torch.zeros_like(pos)
        else:
            logits = u @ self.item_emb.T + self.item_bias
            logits[:, 0] = float("-inf")
            target = pos
        ce = F.cross_entropy(logits, target, reduction="none")
        w = batch["weight"]
        reg = batch["l2"] * ((u * u).sum(-1) + (self.item_emb[pos] ** 2).sum(-1))
        return ((ce + reg) * w).sum() / w.sum()
