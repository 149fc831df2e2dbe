"""SASRec: a causal transformer over each user's newest events (Kang & McAuley, ICDM 2018).

Input at each position: item vector + event-type embedding + learned position (counted from
the newest event, so a sequence keeps its positions when older events are cut). Item vectors
are the item row plus one embedding per item feature (``--item-features``), so an item first
seen today starts from its category instead of a blank row. Input and output item vectors are
tied: the score of item i after a sequence is ``<h_last, v_i>``.

Loss ("SASRec+", Klenitskiy & Vasilev, RecSys 2023): cross-entropy over the full catalogue at
every position, weighted by the target event's weight. Where that costs too much
(:meth:`~recinc_cli.config.TrainConfig.exact_softmax`: above 8,192 items at the defaults) it is
a sampled softmax over ``n_negatives`` negatives per batch drawn by item frequency, with log-Q
correction.

>>> from recinc_cli.config import ModelConfig
>>> m = SASRec({"item": 6, "type": 2}, ModelConfig(name="sasrec", dim=8, max_len=4))
>>> q = {"user": torch.tensor([1, 2]), "seq_item": torch.tensor([[0, 1, 2], [3, 4, 5]]),
...      "seq_type": torch.tensor([[0, 1, 1], [1, 1, 1]])}
>>> m.score(q).shape
torch.Size([2, 6])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recinc_cli.config import ModelConfig
from recinc_cli.data.sequences import build_windows, concat_windows, length_batches, replay_windows
from recinc_cli.models.base import Batch, GradientRecommender, Query, TrainInput
from recinc_cli.models.blas import scores_product
from recinc_cli.models.losses import full_softmax_ce, full_softmax_multi_ce, sampled_softmax_ce

#: Share of the loss on the future window (``--future-window`` > 1); the rest is on the next
#: item, so the model still learns sequences (PinnerFormer's dense all-action loss beside
#: SASRec's next-item one).
FUTURE_SHARE = 0.5


def future_targets(target: torch.Tensor, weight: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The next ``k`` targets after each position: ``(B, W)`` -> items and weights ``(B, W, k)``.

    Column 0 is the position's own (next-item) target; targets past the window's end are 0.

    >>> t = torch.tensor([[0, 5, 6, 7]])
    >>> future_targets(t, (t > 0).float(), 2)[0].tolist()
    [[[0, 5], [5, 6], [6, 7], [7, 0]]]
    """
    pad_t = F.pad(target, (0, k - 1))
    pad_w = F.pad(weight, (0, k - 1))
    return pad_t.unfold(1, k, 1), pad_w.unfold(1, k, 1)


#: Time buckets: 0 = unknown, then floor(log2(1 + seconds)) + 1, capped (2^29 s is 17 years).
TIME_BUCKETS = 32


def time_bucket(dt_ms: torch.Tensor) -> torch.Tensor:
    """Log-scale bucket (1 .. TIME_BUCKETS - 1) of time differences ``dt_ms`` (any shape, int64 ms).

    >>> time_bucket(torch.tensor([0, 999, 1000, 60_000, 86_400_000])).tolist()
    [1, 1, 2, 6, 17]
    """
    sec = dt_ms.clamp(min=0).double() / 1000.0
    return (torch.log2(1.0 + sec).floor().long() + 1).clamp(max=TIME_BUCKETS - 1)


#: Batch entries laid out (B, W, ...) by window position.
POSITIONAL = ("seq_item", "seq_type", "seq_ts", "target", "weight", "snap", "future", "future_w")


def shift_right(batch: Batch, shift: torch.Tensor) -> Batch:
    """Each row of the :data:`POSITIONAL` entries of ``batch`` moved ``shift`` (B,) positions
    right, left-filled with 0: the newest ``shift`` positions drop out. Others pass through.

    >>> shift_right({"seq_item": torch.tensor([[0, 1, 2, 3]]), "log_q": torch.ones(3)}, torch.tensor([1]))
    {'seq_item': tensor([[0, 0, 1, 2]]), 'log_q': tensor([1., 1., 1.])}
    """
    b, w = batch["seq_item"].shape
    src = torch.arange(w)[None, :] - shift[:, None]
    keep = src >= 0
    src = src.clamp(min=0)
    out = {}
    for key, t in batch.items():
        if key in POSITIONAL:
            idx = src.view(b, w, *([1] * (t.dim() - 2))).expand_as(t)
            mask = keep.view(b, w, *([1] * (t.dim() - 2)))
            out[key] = torch.where(mask, t.gather(1, idx), torch.zeros((), dtype=t.dtype))
        else:
            out[key] = t
    return out


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a position-wise feed-forward.

    With ``time_bias``, each head adds a learned bias per bucket of the age of a key event
    as seen from the query position (``time_bucket(t_query - t_key)``) to its attention logits.
    """

    def __init__(self, dim: int, heads: int, dropout: float, time_bias: bool = False) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        if time_bias:
            self.age_bias = nn.Parameter(torch.zeros(heads, TIME_BUCKETS))
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, age: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, W, d); ``mask`` (B, 1, W, W) bool, True where a position may attend;
        ``age`` optional (B, W, W) int64 time bucket of each (query, key) pair."""
        b, w, d = x.shape
        if age is not None and hasattr(self, "age_bias"):
            bias = self.age_bias[:, age].permute(1, 0, 2, 3)  # (B, heads, W, W)
            mask = bias.masked_fill(~mask, float("-inf"))
        q, k, v = self.qkv(self.ln1(x)).view(b, w, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, w, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRec(GradientRecommender):
    """Item, event-type, feature and position embeddings feeding ``blocks`` transformer blocks."""

    name = "sasrec"
    CONTEXT: ClassVar[bool] = True
    POP_PRIOR: ClassVar[bool] = True
    INIT_STD: ClassVar[float] = 0.02
    item_feat: torch.Tensor

    def __init__(self, sizes: Mapping[str, int], cfg: ModelConfig) -> None:
        super().__init__(sizes, cfg)
        d = cfg.dim
        self.item_emb = nn.Parameter(torch.zeros(self.n_items, d))
        self.type_emb = nn.Parameter(torch.zeros(self.sizes["type"], d))
        self.pos_emb = nn.Parameter(torch.zeros(cfg.max_len, d))
        self.feat_emb = nn.ParameterList(
            [nn.Parameter(torch.zeros(self.sizes.get(f"feat:{f}", 1), d)) for f in cfg.item_features]
        )
        #: value index of each item feature, (n_items, n_features) int64; 0 = unknown.
        self.register_buffer("item_feat", torch.zeros(self.n_items, len(cfg.item_features), dtype=torch.int64))
        self._vectors: tuple[tuple[tuple[int, int, int], ...], torch.Tensor] | None = None
        self.reads_times = cfg.time_inputs
        if cfg.time_inputs:
            #: Embedding of the bucketed gap since the user's previous event (row 0: unknown).
            self.gap_emb = nn.Parameter(torch.zeros(TIME_BUCKETS, d))
        self.blocks = nn.ModuleList([Block(d, cfg.heads, cfg.dropout, cfg.time_inputs) for _ in range(cfg.blocks)])
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def tables(self) -> dict[str, str]:
        out = {"item_emb": "item", "type_emb": "type", "item_feat": "item"}
        out.update({f"feat_emb.{k}": f"feat:{f}" for k, f in enumerate(self.cfg.item_features)})
        return out

    def reset_parameters(self, init: str, generator: torch.Generator) -> None:
        """Tables as in the base class; other weights N(0, 0.02), biases 0, norms 1 (nanoGPT)."""
        super().reset_parameters(init, generator)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
                elif isinstance(module, nn.Linear):
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.02)
                    module.bias.zero_()
            self.pos_emb.copy_(torch.randn(self.pos_emb.shape, generator=generator) * 0.02)
            if self.reads_times:
                self.gap_emb.copy_(torch.randn(self.gap_emb.shape, generator=generator) * 0.02)

    # -- item vectors -------------------------------------------------------------------------

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of ``items`` (any shape, int64) -> ``(*shape, d)``; all items when None."""
        if items is None and not torch.is_grad_enabled():
            return self._all_vectors()
        return self._vectors_of(torch.arange(self.n_items, device=self.item_emb.device) if items is None else items)

    def _vectors_of(self, idx: torch.Tensor) -> torch.Tensor:
        vec = self.item_emb[idx]
        for k, table in enumerate(self.feat_emb):
            vec = vec + table[self.item_feat[idx, k]]
        return vec

    def _all_vectors(self) -> torch.Tensor:
        """Every item's vector (n_items, d), kept between calls while no table changes: serving
        one user paid 5 ms per request rebuilding 195,000 vectors (more than the rest of its
        scoring). A table's storage and in-place version (bumped by optimizer steps, loads
        and feature writes) tell when the kept copy is stale."""
        tables = [self.item_emb, self.item_feat, *(t for t in self.feat_emb)]
        key = tuple((t.data_ptr(), t.shape[0], t._version) for t in tables)
        if self._vectors is None or self._vectors[0] != key:
            self._vectors = (key, self._vectors_of(torch.arange(self.n_items, device=self.item_emb.device)))
        return self._vectors[1]

    def set_item_features(self, item_idx: torch.Tensor, values: torch.Tensor) -> None:
        """Record feature values ``values`` (n, n_features) int64 of items ``item_idx`` (n,); a 0
        (unknown) keeps the item's known value."""
        self.item_feat[item_idx] = torch.where(values > 0, values, self.item_feat[item_idx])

    # -- encoder ------------------------------------------------------------------------------

    def encode(self, items: torch.Tensor, types: torch.Tensor, ts: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state after each position: ``(B, W)`` int64 items/types -> ``(B, max(W, 1), d)``.

        ``ts`` (B, W) int64 unix ms of the events, read when the model has time inputs
        (``--time-inputs``); None = unknown times (bucket 0 everywhere).
        """
        b, w = items.shape
        if w > self.cfg.max_len:
            items, types, w = items[:, -self.cfg.max_len :], types[:, -self.cfg.max_len :], self.cfg.max_len
            ts = None if ts is None else ts[:, -self.cfg.max_len :]
        if w == 0:
            # No user of the batch has an event yet: one padding position, which is what each
            # of them sees in a wider batch too (a padding position attends only to itself).
            items = types = torch.zeros(b, 1, dtype=torch.int64, device=items.device)
            ts, w = None, 1
        valid = items > 0
        x = self.item_vectors(items) * math.sqrt(self.cfg.dim) + self.type_emb[types]
        age = None
        if self.reads_times:
            gap, age = self._time_buckets(ts, valid)
            x = x + self.gap_emb[gap]
        x = (x + self.pos_emb[self.cfg.max_len - w :]) * valid[..., None]
        x = self.drop(x)
        causal = torch.ones(w, w, dtype=torch.bool, device=items.device).tril()
        # Padding keys are hidden; each position still sees itself, so no row is all-masked.
        mask = (causal & valid[:, None, :]) | torch.eye(w, dtype=torch.bool, device=items.device)
        mask = mask[:, None]
        for block in self.blocks:
            x = block(x, mask, age)
        return self.norm(x)

    @staticmethod
    def _time_buckets(ts: torch.Tensor | None, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gap bucket of each event since the one before (B, W) and age bucket of each key as
        seen from each query position (B, W, W); 0 where unknown (padding, first event, no times)."""
        b, w = valid.shape
        if ts is None:
            return (
                torch.zeros(b, w, dtype=torch.int64, device=valid.device),
                torch.zeros(b, w, w, dtype=torch.int64, device=valid.device),
            )
        gap = torch.zeros(b, w, dtype=torch.int64, device=valid.device)
        both = valid[:, 1:] & valid[:, :-1]
        gap[:, 1:] = torch.where(both, time_bucket(ts[:, 1:] - ts[:, :-1]), 0)
        pair = valid[:, :, None] & valid[:, None, :]
        age = torch.where(pair, time_bucket(ts[:, :, None] - ts[:, None, :]), 0)
        return gap, age

    def score(self, query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encode(query["seq_item"], query["seq_type"], query.get("seq_ts"))[:, -1]
        return scores_product(h, self.item_vectors(), out=out)

    # -- training -----------------------------------------------------------------------------

    def batches(self, job: TrainInput, generator: torch.Generator) -> Iterator[Batch]:
        data, prior, cfg, replay = job.data, job.prior, job.cfg, job.replay
        win = build_windows(prior, data, self.cfg.max_len)
        if replay is not None and len(replay):
            win = concat_windows(win, replay_windows(prior, replay, self.cfg.max_len))
        positions = int(win.lengths.sum())  # one softmax row per target position
        sampled = not cfg.exact_softmax(self.n_items, rows=positions, events=positions)
        if sampled:
            # Proposal: item frequency in this data, +1 so every item can be drawn.
            counts = torch.bincount(torch.as_tensor(data.item_idx), minlength=self.n_items).double() + 1
            counts[0] = 0
            q = counts / counts.sum()
            log_q = torch.log(q * cfg.n_negatives).float()
        pop = None if job.pop_prior is None else job.pop_prior(data)
        for idx in length_batches(win.lengths, cfg.batch_size, generator):
            w = int(win.lengths[idx].max().clamp(min=1))
            batch = {
                "seq_item": win.items[idx, -w:],
                "seq_type": win.types[idx, -w:],
                "seq_ts": win.times[idx, -w:],
                "target": win.targets[idx, -w:],
                "weight": win.weight[idx, -w:],
            }
            if pop is not None:
                # Each target's snapshot of the popularity before it; replayed events read the
                # slice's first snapshot (PopPrior.extended).
                event = win.target_event[idx, -w:]
                batch["snap"] = torch.from_numpy(pop.snap)[event.clamp(min=0)] * (event >= 0)
                batch["log_pop"] = pop.log_pop
            if cfg.future_window > 1:
                batch["future"], batch["future_w"] = future_targets(batch["target"], batch["weight"], cfg.future_window)
                # Serving reads the last position, whose future is never in the data: hide
                # the newest 0..K-1 positions of each window (their events stay targets of the
                # window of the new last position), so that position learns the window too.
                shift = torch.randint(0, cfg.future_window, (len(idx),), generator=generator)
                batch = shift_right(batch, shift)
            if sampled:
                batch["neg"] = torch.multinomial(q, cfg.n_negatives, replacement=True, generator=generator)
                batch["log_q"] = log_q
            yield batch

    def loss(self, batch: Batch) -> torch.Tensor:
        """Weighted cross-entropy of each target given the events before it.

        ``seq_item``/``seq_type``/``target`` (B, W) int64, ``weight`` (B, W) float32 (0 where
        there is no target); optional ``neg`` (M,) sampled negatives and ``log_q`` (n_items,);
        optional popularity prior (``--pop-prior``, :mod:`recinc_cli.data.pop_prior`): ``snap``
        (B, W) int64 each target's snapshot and ``log_pop`` (n_snapshots, n_items) the offsets.
        """
        h = self.encode(batch["seq_item"], batch["seq_type"], batch.get("seq_ts"))
        at = batch["weight"] > 0
        h, target, w = h[at], batch["target"][at], batch["weight"][at]
        snap = batch["snap"][at] if "snap" in batch else None
        future = (batch["future"][at], batch["future_w"][at]) if "future" in batch else None
        if "neg" in batch:
            neg = batch["neg"]
            neg_logit = h @ self.item_vectors(neg).T
            if snap is not None:
                neg_logit = neg_logit + batch["log_pop"][:, neg][snap]
            ce = self._sampled_ce(h, target[:, None], neg_logit, neg, batch["log_q"], snap, batch.get("log_pop"))[:, 0]
            if future is not None:
                # Padding targets (0) are scored as item 1 and then dropped: item 0's log-Q is -inf.
                per = self._sampled_ce(
                    h, future[0].clamp(min=1), neg_logit, neg, batch["log_q"], snap, batch.get("log_pop")
                )
                per = torch.where(future[1] > 0, per, 0.0)
                ce = (1 - FUTURE_SHARE) * ce + FUTURE_SHARE * (per * future[1]).sum(1) / future[1].sum(1)
        else:
            offset = None if snap is None else batch["log_pop"][snap]
            if future is None:
                ce = full_softmax_ce(h, self.item_vectors(), target, offset=offset)
            else:
                # The next item is the window's first target: weight it up to share
                # 1 - FUTURE_SHARE of the loss, the whole window the rest.
                k = future[0].shape[1]
                fw = future[1] * FUTURE_SHARE / k
                fw[:, 0] += 1 - FUTURE_SHARE
                fw = fw / fw.sum(1, keepdim=True)
                ce = full_softmax_multi_ce(h, self.item_vectors(), future[0], fw, offset=offset)
        return (w * ce).sum() / w.sum().clamp(min=1e-12)

    def _sampled_ce(
        self,
        h: torch.Tensor,
        targets: torch.Tensor,
        neg_logit: torch.Tensor,
        neg: torch.Tensor,
        log_q: torch.Tensor,
        snap: torch.Tensor | None,
        log_pop: torch.Tensor | None,
    ) -> torch.Tensor:
        """Sampled-softmax cross-entropy ``(N, K)`` of each of ``targets`` (N, K) against the
        shared negatives' logits ``neg_logit`` (N, M)."""
        pos = (h[:, None, :] * self.item_vectors(targets)).sum(-1)
        if snap is not None and log_pop is not None:
            pos = pos + log_pop[snap[:, None], targets]
        cols = [sampled_softmax_ce(pos[:, j], neg_logit, targets[:, j], neg, log_q) for j in range(targets.shape[1])]
        return torch.stack(cols, 1)
