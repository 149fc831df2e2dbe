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
"""

from __future__ import annotations

import numpy as np
import polars as pl

PAD = ""  # raw id stored at index 0


class Vocab:
    """Dense indices for raw string ids; ``len(vocab)`` counts the reserved row 0."""

    def __init__(self, ids: list[str]) -> None:
        if not ids or ids[0] != PAD:
            raise ValueError("a vocabulary starts with the reserved padding id")
        self.ids = ids
        self._table = pl.DataFrame({"raw": pl.Series(ids, dtype=pl.String), "idx": np.arange(len(ids), dtype=np.int64)})

    @classmethod
    def empty(cls) -> Vocab:
        return cls([PAD])

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, raw: pl.Series) -> np.ndarray:
        """Indices of ``raw`` ids, shape ``(len(raw),)`` int64; 0 where an id is unknown."""
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
        start = len(self.ids)
        self.ids.extend(new.to_list())
        self._table = pl.concat(
            [
                self._table,
                pl.DataFrame({"raw": new, "idx": np.arange(start, len(self.ids), dtype=np.int64)}),
            ]
        )
        return new.len()
