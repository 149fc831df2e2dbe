"""Serving with fresh events the model has not trained on (``recommend --history``).

Users unknown to the model get temporary indices after the known ones; known users keep theirs.
The events are appended, in memory only, to each user's context (sequential models read them as
input: session-based cold start) and to their seen items (so they are not recommended again).
For known users only events newer than their stored context count, so passing a log that
overlaps what the model was trained on does not repeat events. Nothing is written back.

>>> import datetime as dt
>>> from recinc_cli.data.vocab import Vocab
>>> users, items = Vocab(["", "u1"]), Vocab(["", "a", "b"])
>>> ev = pl.DataFrame({"user_id": ["new", "new"], "item_id": ["a", "zzz"], "event_type": ["view"] * 2,
...     "timestamp": [dt.datetime(2026, 1, 1)] * 2, "weight": [1.0, 1.0]})
>>> s = with_history(ev, users, items, Vocab.empty(), SeenItems.empty(2), Context.empty(2), max_len=5)
>>> s.extra_ids, s.context.items_of(2).tolist(), s.seen.items_of(2).tolist()
(['new'], [1], [1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recinc_cli.data.context import Context
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab


@dataclass(frozen=True)
class ServingState:
    """Context and seen items extended with fresh events.

    ``extra_ids``: raw ids of the users unknown to the model, at indices ``n_known + j``;
    ``context`` is None for models that read no context.
    """

    n_known: int
    extra_ids: list[str]
    context: Context | None
    seen: SeenItems

    def lookup(self, users: Vocab, raw: pl.Series) -> np.ndarray:
        """Index of each raw user id: known, temporary (unknown with history) or 0 (neither)."""
        idx = users.lookup(raw)
        if self.extra_ids:
            extra = Vocab(["", *self.extra_ids]).lookup(raw)
            idx = np.where((idx == 0) & (extra > 0), extra - 1 + self.n_known, idx)
        return idx


def with_history(
    events: pl.DataFrame,
    users: Vocab,
    items: Vocab,
    types: Vocab,
    seen: SeenItems,
    context: Context | None,
    max_len: int,
) -> ServingState:
    """Extend ``context`` and ``seen`` with the time-sorted ``events`` (nothing is modified).

    Items unknown to the model are dropped (there is nothing to embed or recommend for them).
    """
    item_idx = items.lookup(events["item_id"])
    user_idx = users.lookup(events["user_id"])
    unknown = pl.Series(events["user_id"].cast(pl.String).to_numpy()[user_idx == 0], dtype=pl.String)
    extra_ids = unknown.unique(maintain_order=True).to_list()
    n_known = len(users)
    if extra_ids:
        extra = Vocab(["", *extra_ids]).lookup(events["user_id"])
        user_idx = np.where(user_idx == 0, extra - 1 + n_known, user_idx)
    ts_ms = events["timestamp"].dt.epoch("ms").to_numpy().astype(np.int64)
    keep = item_idx > 0
    if context is not None:
        keep &= _newer(context, user_idx, item_idx, ts_ms)
    n_users = n_known + len(extra_ids)
    u, i = user_idx[keep], item_idx[keep]
    if context is not None:
        t = types.lookup(events["event_type"])[keep]
        context = context.extend(u, i, t, ts_ms[keep], n_users, max_len)
    return ServingState(n_known, extra_ids, context, seen.merge(u, i, n_users))


def _newer(context: Context, user_idx: np.ndarray, item_idx: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """Which events are not yet in ``context``: later than the user's newest stored event, or
    at that same millisecond but not stored (logs with second resolution have many ties)."""
    lengths = context.lengths()
    known = user_idx < context.n_users
    u = np.where(known, user_idx, 0)
    has = known & (lengths[u] > 0)
    if not has.any():
        return np.ones(len(user_idx), dtype=bool)
    ends = context.indptr.numpy()[u + 1]
    last = np.where(has, context.ts_ms.numpy()[np.maximum(ends - 1, 0)], np.iinfo(np.int64).min)
    newer = ts_ms > last
    tie = np.flatnonzero(~newer & (ts_ms == last))
    if len(tie):
        stored = pl.DataFrame(
            {
                "u": np.repeat(np.arange(context.n_users, dtype=np.int64), lengths),
                "i": context.items.numpy().astype(np.int64),
                "t": context.ts_ms.numpy(),
            }
        )
        probe = pl.DataFrame({"u": user_idx[tie], "i": item_idx[tie], "t": ts_ms[tie], "row": tie})
        fresh = probe.join(stored, on=["u", "i", "t"], how="anti")["row"].to_numpy()
        newer[fresh] = True
    return newer
