"""Each user's most recent events (item, event type, time) as a compact CSR store.

A sequential model reads a user's last ``max_len`` events; keeping exactly those in the
checkpoint lets ``update`` continue every sequence across slices without re-reading old logs.
``items[indptr[u]:indptr[u + 1]]`` are user ``u``'s newest events, oldest first.

>>> c = Context.empty(3).extend(np.array([1, 2, 1, 1]), np.array([5, 6, 7, 8]),
...     np.ones(4, np.int64), np.arange(4), n_users=3, max_len=2)
>>> c.items_of(1).tolist(), c.items_of(2).tolist()
([7, 8], [6])
>>> items, types = c.padded(torch.tensor([1, 2]), width=3)
>>> items.tolist()
[[0, 7, 8], [0, 0, 6]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Context:
    """CSR rows per user index.

    ``indptr`` (n_users + 1,) int64; ``items`` (nnz,) int32 item indices; ``types`` (nnz,)
    int16 event-type indices; ``ts_ms`` (nnz,) int64 unix milliseconds. Rows are time-ordered.
    """

    indptr: torch.Tensor
    items: torch.Tensor
    types: torch.Tensor
    ts_ms: torch.Tensor

    @classmethod
    def empty(cls, n_users: int) -> Context:
        return cls(
            torch.zeros(n_users + 1, dtype=torch.int64),
            torch.zeros(0, dtype=torch.int32),
            torch.zeros(0, dtype=torch.int16),
            torch.zeros(0, dtype=torch.int64),
        )

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        """(n_users,) int64 number of stored events per user."""
        return np.diff(self.indptr.numpy())

    def items_of(self, user: int) -> torch.Tensor:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def only(self, user: int) -> Context:
        """The same rows with every one but ``user``'s empty (see :meth:`SeenItems.only`)."""
        lo, hi = (int(self.indptr[user]), int(self.indptr[user + 1])) if 0 <= user < self.n_users else (0, 0)
        indptr = torch.zeros(self.n_users + 1, dtype=torch.int64)
        indptr[user + 1 :] = hi - lo
        return Context(indptr, self.items[lo:hi].clone(), self.types[lo:hi].clone(), self.ts_ms[lo:hi].clone())

    def extend(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        type_idx: np.ndarray,
        ts_ms: np.ndarray,
        n_users: int,
        max_len: int,
    ) -> Context:
        """A new store with the events appended, keeping each user's newest ``max_len``.

        The events (all ``(n,)``) must be in time order; they count as newer than every stored
        event. ``n_users`` (>= the current count) sizes the new ``indptr``.
        """
        old_users = np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths())
        users = np.concatenate([old_users, np.asarray(user_idx, dtype=np.int64)])
        # A stable sort by user keeps stored events before new ones and new ones in time order.
        order = np.argsort(users, kind="stable")
        users = users[order]
        counts = np.bincount(users, minlength=n_users)
        ends = np.cumsum(counts)
        from_end = ends[users] - np.arange(len(users)) - 1
        keep = order[from_end < max_len]
        kept_users = users[from_end < max_len]

        def cat(old: torch.Tensor, new: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            both = torch.cat([old, torch.from_numpy(np.array(new)).to(dtype)])
            return both[torch.from_numpy(keep)]

        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(kept_users, minlength=n_users), out=indptr[1:])
        return Context(
            torch.from_numpy(indptr),
            cat(self.items, item_idx, torch.int32),
            cat(self.types, type_idx, torch.int16),
            cat(self.ts_ms, ts_ms, torch.int64),
        )

    def padded(self, user_idx: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each user's newest events, left-padded with 0: items and types, both ``(B, width)`` int64.

        ``width`` defaults to the longest row among ``user_idx``; users beyond the store are empty.
        """
        src, valid = self._slots(user_idx, width)
        if len(self.items) == 0:
            zeros = torch.zeros(valid.shape, dtype=torch.int64)
            return zeros, zeros.clone()
        items = torch.where(valid, self.items[src].to(torch.int64), 0)
        types = torch.where(valid, self.types[src].to(torch.int64), 0)
        return items, types

    def padded_times(self, user_idx: torch.Tensor, width: int) -> torch.Tensor:
        """The times (unix ms, int64) of the events :meth:`padded` returns, ``(B, width)``, 0 at padding.

        >>> c = Context.empty(2).extend(np.array([1, 1]), np.array([5, 6]), np.ones(2, np.int64),
        ...     np.array([10, 20]), n_users=2, max_len=3)
        >>> c.padded_times(torch.tensor([1, 0]), width=3).tolist()
        [[0, 10, 20], [0, 0, 0]]
        """
        src, valid = self._slots(user_idx, width)
        if len(self.ts_ms) == 0:
            return torch.zeros(valid.shape, dtype=torch.int64)
        return torch.where(valid, self.ts_ms[src], 0)

    def _slots(self, user_idx: torch.Tensor, width: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each cell of the left-padded ``(B, width)`` view reads from: store positions
        (0 at padding) and whether it holds an event. ``width`` None = the longest row."""
        user_idx = user_idx.to(torch.int64)
        if self.n_users == 0:
            shape = (len(user_idx), width or 0)
            return torch.zeros(shape, dtype=torch.int64), torch.zeros(shape, dtype=torch.bool)
        known = user_idx < self.n_users
        u = torch.where(known, user_idx, 0)
        ends = torch.where(known, self.indptr[u + 1], 0)
        lengths = torch.where(known, ends - self.indptr[u], 0)
        if width is None:
            width = int(lengths.max()) if len(lengths) else 0
        back = torch.arange(width, 0, -1)  # column c holds the event `width - c` from the end
        valid = back[None, :] <= lengths[:, None]
        return torch.where(valid, ends[:, None] - back[None, :], 0), valid
