"""Training windows for sequential models, built with vectorised numpy from events + context.

Each user's sequence is their stored context (events already trained on, up to ``max_len``)
followed by the new events. Every new event is a target, predicted from the events before it,
so an ``update`` trains on the slice with the previous slice's events as input. Sequences longer
than the window are cut from the newest end into windows of ``max_len`` targets.

>>> from recinc_cli.data.context import Context
>>> d = TrainData.of_pairs([1, 1, 1, 2, 1], [3, 4, 5, 6, 7])
>>> w = build_windows(Context.empty(3), d, max_len=2)
>>> w.items.tolist(), w.targets.tolist()
([[4, 5], [0, 3]], [[5, 7], [0, 4]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.unique import sorted_unique


@dataclass(frozen=True)
class Windows:
    """Left-padded windows, all ``(n_windows, max_len)``.

    ``items``/``types`` int64 inputs (0 = padding); ``targets`` int64 the item that follows
    each input position (0 = no target there); ``weight`` float32 target weights (0 = no target);
    ``lengths`` (n_windows,) int64 number of non-padding inputs; ``target_event`` int64 the
    row of the training data each target is (-1 where there is no target, or for replayed
    events), so a target can be given what was known at its time (the popularity prior);
    ``times`` int64 each input's unix ms (0 = padding), for models that read time.
    """

    items: torch.Tensor
    types: torch.Tensor
    targets: torch.Tensor
    weight: torch.Tensor
    lengths: torch.Tensor
    target_event: torch.Tensor
    times: torch.Tensor

    def __len__(self) -> int:
        return len(self.lengths)


def build_windows(prior: Context, data: TrainData, max_len: int) -> Windows:
    """Windows whose targets are exactly the events of ``data`` (minus each user's very first).

    ``prior`` holds the events before ``data`` (users beyond it have none); it is input only.
    """
    users = sorted_unique(data.user_idx)
    # Stored context of the users in `data`, gathered without a loop over users.
    known = users[users < prior.n_users]
    indptr = prior.indptr.numpy()
    n_prior = indptr[known + 1] - indptr[known]
    prior_pos = np.repeat(indptr[known] - np.cumsum(n_prior) + n_prior, n_prior) + np.arange(n_prior.sum())
    seq_user = np.concatenate([np.repeat(known, n_prior), data.user_idx])
    seq_item = np.concatenate([prior.items.numpy()[prior_pos].astype(np.int64), data.item_idx])
    seq_type = np.concatenate([prior.types.numpy()[prior_pos].astype(np.int64), data.types()])
    seq_ts = np.concatenate([prior.ts_ms.numpy()[prior_pos], np.asarray(data.ts_ms, dtype=np.int64)])
    seq_weight = np.concatenate([np.zeros(len(prior_pos), np.float32), data.weight.astype(np.float32)])
    is_new = np.concatenate([np.zeros(len(prior_pos), bool), np.ones(len(data), bool)])
    seq_event = np.concatenate([np.full(len(prior_pos), -1, np.int64), np.arange(len(data), dtype=np.int64)])
    order = np.argsort(seq_user, kind="stable")  # prior before new, both in time order
    seq_user, seq_item, seq_type, seq_ts = seq_user[order], seq_item[order], seq_type[order], seq_ts[order]
    seq_weight, is_new, seq_event = seq_weight[order], is_new[order], seq_event[order]

    _, start, n = np.unique(seq_user, return_index=True, return_counts=True)
    n_old = n - np.add.reduceat(is_new.astype(np.int64), start)
    first_target = np.maximum(n_old, 1)  # a user's first event ever has nothing to predict it from
    n_windows = -(-np.maximum(n - first_target, 0) // max_len)
    owner = np.repeat(np.arange(len(n)), n_windows)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)
    t_end = n[owner] - j * max_len  # exclusive end of each window's target positions
    tpos = t_end[:, None] - max_len + np.arange(max_len)[None, :]
    ipos = tpos - 1
    in_ok = ipos >= 0
    tgt_ok = tpos >= first_target[owner][:, None]
    base = start[owner][:, None]
    inp = base + np.maximum(ipos, 0)
    tgt = base + np.maximum(tpos, 0)
    return Windows(
        items=torch.from_numpy(np.where(in_ok, seq_item[inp], 0)),
        types=torch.from_numpy(np.where(in_ok, seq_type[inp], 0)),
        targets=torch.from_numpy(np.where(tgt_ok, seq_item[tgt], 0)),
        weight=torch.from_numpy(np.where(tgt_ok, seq_weight[tgt], 0).astype(np.float32)),
        lengths=torch.from_numpy(in_ok.sum(1).astype(np.int64)),
        target_event=torch.from_numpy(np.where(tgt_ok, seq_event[tgt], -1)),
        times=torch.from_numpy(np.where(in_ok, seq_ts[inp], 0)),
    )


def replay_windows(prior: Context, replay: TrainData, max_len: int) -> Windows:
    """Windows over the stored context of the users of ``replay`` whose only targets are the
    replayed events, each predicted from the events that really preceded it.

    Replayed events older than their user's stored context (the newest ``max_len``) have no
    input left and are skipped. Windows with no target are dropped.
    """
    users = sorted_unique(replay.user_idx[replay.user_idx < prior.n_users])
    indptr = prior.indptr.numpy()
    n = indptr[users + 1] - indptr[users]
    pos = np.repeat(indptr[users] - np.cumsum(n) + n, n) + np.arange(n.sum())
    user = np.repeat(users, n)
    item = prior.items.numpy()[pos].astype(np.int64)
    ts = prior.ts_ms.numpy()[pos]
    # Match replayed events to context events on (user, time, item).
    ctx_key = np.stack([user, ts, item], 1)
    rep_key = np.stack([replay.user_idx, replay.ts_ms, replay.item_idx], 1)
    keys, inverse = np.unique(np.concatenate([ctx_key, rep_key]), axis=0, return_inverse=True)
    weight_of = np.zeros(len(keys), np.float32)
    weight_of[inverse.ravel()[len(ctx_key) :]] = replay.weight
    data = TrainData(
        user, item, weight_of[inverse.ravel()[: len(ctx_key)]], ts, prior.types.numpy()[pos].astype(np.int64)
    )
    win = build_windows(Context.empty(0), data, max_len)
    keep = win.weight.sum(1) > 0
    no_event = torch.full_like(win.target_event[keep], -1)  # replayed: not rows of this slice's data
    return Windows(
        items=win.items[keep],
        types=win.types[keep],
        targets=win.targets[keep],
        weight=win.weight[keep],
        lengths=win.lengths[keep],
        target_event=no_event,
        times=win.times[keep],
    )


def concat_windows(a: Windows, b: Windows) -> Windows:
    """All windows of ``a`` then ``b`` (same ``max_len``)."""
    return Windows(
        *(
            torch.cat([x, y])
            for x, y in zip(
                (a.items, a.types, a.targets, a.weight, a.lengths, a.target_event, a.times),
                (b.items, b.types, b.targets, b.weight, b.lengths, b.target_event, b.times),
                strict=True,
            )
        )
    )


def length_batches(lengths: torch.Tensor, tokens: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Window indices grouped into batches of about ``tokens`` input events, in random order.

    Windows of similar length share a batch (random order among equals), so a batch can be
    trimmed to its longest window and little compute goes to padding.
    """
    if len(lengths) == 0:
        return []
    jitter = torch.rand(len(lengths), generator=generator)
    order = torch.argsort(lengths.double() + jitter.double())
    batch_of = torch.cumsum(lengths[order].clamp(min=1), 0) // max(tokens, 1)
    _, counts = torch.unique_consecutive(batch_of, return_counts=True)
    groups = list(torch.split(order, counts.tolist()))
    perm = torch.randperm(len(groups), generator=generator).tolist()
    return [groups[p] for p in perm]
