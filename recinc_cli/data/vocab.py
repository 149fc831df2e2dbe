"""Append-only raw id <-> dense index mapping. Index 0 is reserved for padding/unknown.

New ids are appended in order of first appearance; an existing id never changes its index,
so embedding rows of a grown model line up with those of its parent.

>>> v = Vocab.empty()
>>> v.extend(pl.Series(["b", "a", "b"]))
2
>>> v.extend(pl.Series(["c", "a"]))
1
>>> v.lookup(pl.Series(["a", "zzz", "c"])).tolist()
[2, 0, 3]
>>> len(v), v.ids[1:]
(4, ['b', 'a', 'c'])
>>> v.point_lookups().lookup(pl.Series(["c", "zzz"])).tolist()  # a server's one id at a time
[3, 0]
"""

from __future__ import annotations

import numpy as np
import polars as pl

PAD = ""  # raw id stored at index 0
#: Lookups of at most this many ids use the point index once :meth:`Vocab.point_lookups`
#: built it: a polars join costs about 0.5 ms however few ids it is given.
POINT_MAX = 4096


class Vocab:
    """Dense indices for raw string ids; ``len(vocab)`` counts the reserved row 0."""

    def __init__(self, ids: list[str]) -> None:
        if not ids or ids[0] != PAD:
            raise ValueError("a vocabulary starts with the reserved padding id")
        self.ids = ids
        self._table = pl.DataFrame({"raw": pl.Series(ids, dtype=pl.String), "idx": np.arange(len(ids), dtype=np.int64)})
        self._points: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def empty(cls) -> Vocab:
        return cls([PAD])

    def __len__(self) -> int:
        return len(self.ids)

    def point_lookups(self) -> Vocab:
        """Build (once) the index that answers lookups of a few ids in microseconds, for a
        server's requests; returns ``self``. It holds each id's Python hash, sorted, and the
        order: 16 bytes an id (16 MB for 1M users, where a dict would take about 100 MB)."""
        if self._points is None:
            hashes = np.fromiter(map(hash, self.ids), dtype=np.int64, count=len(self.ids))
            order = np.argsort(hashes, kind="stable")
            self._points = hashes[order], order
        return self

    def lookup(self, raw: pl.Series) -> np.ndarray:
        """Indices of ``raw`` ids, shape ``(len(raw),)`` int64; 0 where an id is unknown."""
        if self._points is not None and len(raw) <= POINT_MAX:
            return self._point_lookup(raw.cast(pl.String).to_list())
        frame = pl.DataFrame({"raw": raw.cast(pl.String)})
        joined = frame.join(self._table, on="raw", how="left", maintain_order="left")
        return joined["idx"].fill_null(0).to_numpy().astype(np.int64, copy=False)

    def extend(self, raw: pl.Series) -> int:
        """Append the ids of ``raw`` not yet known, in first-seen order; return how many."""
        seen = pl.DataFrame({"raw": raw.cast(pl.String)}).unique(maintain_order=True)
        unseen = seen.join(self._table, on="raw", how="anti", maintain_order="left")
        new = unseen["raw"].filter(unseen["raw"] != PAD)
        if new.len() == 0:
            return 0
        self._points = None  # rebuilt by the next point_lookups()
        start = len(self.ids)
        self.ids.extend(new.to_list())
        self._table = pl.concat(
            [
                self._table,
                pl.DataFrame({"raw": new, "idx": np.arange(start, len(self.ids), dtype=np.int64)}),
            ]
        )
        return new.len()

    def _point_lookup(self, values: list[str | None]) -> np.ndarray:
        assert self._points is not None
        hashes, order = self._points
        out = np.zeros(len(values), dtype=np.int64)
        wanted = np.fromiter((hash(v) for v in values), dtype=np.int64, count=len(values))
        for j, at in enumerate(np.searchsorted(hashes, wanted).tolist()):
            # Equal hashes of different ids are possible, if rare: every id with this hash is compared.
            while at < len(hashes) and hashes[at] == wanted[j]:
                if self.ids[order[at]] == values[j]:
                    out[j] = order[at]
                    break
                at += 1
        return out
