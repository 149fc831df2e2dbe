"""Growing a bundle's vocabularies for the ids of new events: users, items, event types, and
the values of item features, with each item's newest feature values recorded in the model.

>>> import datetime as dt
>>> from recinc_cli.data.vocab import Vocab
>>> ev = pl.DataFrame({"user_id": ["a"], "item_id": ["x"], "event_type": ["view"], "category": ["c1"]})
>>> users, items, types, cats = Vocab.empty(), Vocab.empty(), Vocab.empty(), Vocab.empty()
>>> grow_vocabularies(ev, users, items, types, {"category": cats})
(1, 1)
>>> cats.ids
['', 'c1']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
import torch

from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import BadInputError
from recinc_cli.models.base import Recommender


def check_feature_columns(events: pl.DataFrame, names: Sequence[str], path: object) -> None:
    """Raise :class:`BadInputError` when an ``--item-features`` column is missing from ``events``."""
    for name in names:
        if name not in events.columns:
            raise BadInputError(
                f"{path}: column {name!r} not found; the model embeds it as an item feature "
                f"(--item-features), so every events file needs it (columns: {', '.join(events.columns)})"
            )


def grow_vocabularies(
    events: pl.DataFrame, users: Vocab, items: Vocab, types: Vocab, features: Mapping[str, Vocab]
) -> tuple[int, int]:
    """Append the unseen ids of ``events`` to each vocabulary; return (new users, new items)."""
    new_users = users.extend(events["user_id"])
    new_items = items.extend(events["item_id"])
    types.extend(events["event_type"])
    for name, vocab in features.items():
        vocab.extend(events[name].cast(pl.String).drop_nulls())
    return new_users, new_items


def apply_item_features(model: Recommender, events: pl.DataFrame, items: Vocab, features: Mapping[str, Vocab]) -> None:
    """Record in ``model`` each item's newest non-null value of every feature in ``events``.

    A null value keeps what the model knew about that item.
    """
    if not features:
        return
    names = list(features)
    last = events.group_by("item_id", maintain_order=True).agg(pl.col(n).drop_nulls().last() for n in names)
    item_idx = torch.tensor(items.lookup(last["item_id"]))
    values = torch.stack([torch.tensor(features[n].lookup(last[n])) for n in names], dim=1)
    model.set_item_features(item_idx, values)
