"""Id admission (Monolith, Liu et al. 2022): a new user or item gets a row only once seen N times.

Logs carry a long tail of ids seen once (bots, typos, one-off visitors); giving each a trained
row costs memory and learns nothing. With ``--min-count N`` an unknown id's sightings are counted
across updates (the counts live in the checkpoint); the update in which the count reaches N
admits it, and its events of that slice train. Events of ids still waiting are not trained on.
Indices are never reused or renumbered: admission only appends.

>>> import polars as pl
>>> from recinc_cli.data.vocab import Vocab
>>> ev = pl.DataFrame({"user_id": ["u1", "u2", "u2"], "item_id": ["a", "a", "b"]})
>>> a = Admission.empty()
>>> kept, stats = a.admit(ev, Vocab.empty(), Vocab.empty(), min_count=2)
>>> kept["user_id"].to_list(), stats["users_waiting"], a.items
(['u2'], 1, {'b': 1})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from recinc_cli.data.vocab import Vocab


@dataclass
class Admission:
    """Sightings of ids not admitted yet: raw id -> count, for users and for items."""

    users: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Admission:
        return cls()

    def admit(
        self, events: pl.DataFrame, users: Vocab, items: Vocab, min_count: int
    ) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The events whose user and item are known or admitted now; counts the rest, in place.

        Returns the kept events (same order) and ``{"users_admitted", "items_admitted",
        "users_waiting", "items_waiting", "events_not_admitted"}``.
        """
        if min_count <= 1 and not self.users and not self.items:
            return events, {"events_not_admitted": 0}
        keep_u, n_u = _count(events["user_id"], users, self.users, min_count)
        keep_i, n_i = _count(events["item_id"], items, self.items, min_count)
        kept = events.filter(keep_u & keep_i)
        return kept, {
            "users_admitted": n_u,
            "items_admitted": n_i,
            "users_waiting": len(self.users),
            "items_waiting": len(self.items),
            "events_not_admitted": events.height - kept.height,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending_user_ids": list(self.users),
            "pending_user_counts": list(self.users.values()),
            "pending_item_ids": list(self.items),
            "pending_item_counts": list(self.items.values()),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Admission:
        def pairs(kind: str) -> dict[str, int]:
            ids, counts = raw.get(f"pending_{kind}_ids", []), raw.get(f"pending_{kind}_counts", [])
            if len(ids) != len(counts):
                raise ValueError(f"pending {kind} ids and counts differ in length")
            return {str(i): int(c) for i, c in zip(ids, counts, strict=True)}

        return cls(pairs("user"), pairs("item"))


def _count(ids: pl.Series, vocab: Vocab, pending: dict[str, int], min_count: int) -> tuple[pl.Series, int]:
    """Mask of events whose id is known or admitted now; updates ``pending``; returns the
    mask and how many ids were admitted."""
    known = pl.Series(vocab.lookup(ids) > 0)
    new = ids.filter(~known).value_counts(name="n")
    admitted = []
    for raw, n in new.iter_rows():
        total = pending.pop(raw, 0) + int(n)
        if total >= min_count:
            admitted.append(raw)
        else:
            pending[raw] = total
    return known | ids.is_in(admitted), len(admitted)
