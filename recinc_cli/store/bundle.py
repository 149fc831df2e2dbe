"""The state a checkpoint holds (:class:`Bundle`) and how a trained slice folds into it.

Persistence (format, migration, checksum) is :mod:`recinc_cli.store.format`; serving views of a
bundle (score functions, fresh history) are :mod:`recinc_cli.serving.views`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from recinc_cli.config import ModelConfig, TrainConfig, auto_or
from recinc_cli.data.admission import Admission
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.popularity import PopClock
from recinc_cli.data.reservoir import Reservoir
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.models.base import Recommender


def table_sizes(users: Vocab, items: Vocab, types: Vocab, features: dict[str, Vocab]) -> dict[str, int]:
    """The ``sizes`` a model is built or grown with: one entry per vocabulary."""
    return {
        "user": len(users),
        "item": len(items),
        "type": len(types),
        **{f"feat:{name}": len(v) for name, v in features.items()},
    }


@dataclass
class Bundle:
    """A model with its vocabularies, optimizer state and history: the state a checkpoint holds.

    How it is written and read is :mod:`recinc_cli.store.format`; how it is served,
    :mod:`recinc_cli.serving.views`.
    """

    model: Recommender
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    users: Vocab
    items: Vocab
    seen: SeenItems
    item_pop: torch.Tensor
    pop_time_ms: int
    optimizer: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    types: Vocab = field(default_factory=Vocab.empty)
    features: dict[str, Vocab] = field(default_factory=dict)
    #: each user's newest events; None for models that do not read them.
    context: Context | None = None
    #: (n_items,) int64 newest event time of each item, unix ms (0 = never).
    item_last_ms: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.int64))
    #: weight of log(1 + item_pop) added to the model's scores.
    pop_weight: float = 0.0
    #: events folded so far: the clock of ``item_pop`` under ``pop_half_life_events``.
    pop_clock: int = 0
    #: evidence for each candidate popularity weight (:func:`~recinc_cli.training.early_stop.choose_pop_weight`).
    pop_evidence: list[float] = field(default_factory=list)
    reservoir: Reservoir = field(default_factory=lambda: Reservoir.empty(0))
    admission: Admission = field(default_factory=Admission.empty)

    def __post_init__(self) -> None:
        if len(self.item_last_ms) < len(self.items):  # a bundle built by hand: items never seen
            self.item_last_ms = self._last_ms_of_every_item()

    def _last_ms_of_every_item(self) -> torch.Tensor:
        """``item_last_ms`` with a 0 (never seen) for every item added since it was last set."""
        last = torch.zeros(len(self.items), dtype=torch.int64)
        last[: len(self.item_last_ms)] = self.item_last_ms
        return last

    @property
    def watermark_ms(self) -> int:
        """Newest event time applied (unix ms); 0 before any."""
        return int(self.pop_time_ms)

    def sizes(self) -> dict[str, int]:
        """Rows of every growing table axis (see :class:`~recinc_cli.models.base.Recommender`)."""
        return table_sizes(self.users, self.items, self.types, self.features)

    def expired(self) -> torch.Tensor | None:
        """(n_items,) bool: items not seen for ``expire_after_s`` before the watermark; None
        when expiry is off."""
        after = self.train_cfg.expire_after_s
        if after <= 0:
            return None
        expired = self.item_last_ms < self.watermark_ms - int(after * 1000)
        expired[0] = False  # the padding row is no item
        return expired

    def replace(self, **changes: Any) -> Bundle:
        """A copy with ``changes`` (field name -> new value); the model and the other fields are shared."""
        return dataclasses.replace(self, **changes)

    def folded(self, data: TrainData) -> Bundle:
        """This bundle with trained-on events added to the seen items, the context and the
        decayed popularity; ``self`` is left as it was."""
        context = self.context
        if context is not None:
            context = context.extend(
                data.user_idx, data.item_idx, data.types(), data.ts_ms, len(self.users), self.model_cfg.max_len
            )
        item_last_ms = self._last_ms_of_every_item().scatter_reduce(
            0, torch.as_tensor(data.item_idx.copy()), torch.as_tensor(data.ts_ms.copy()), reduce="amax"
        )
        item_pop, _ = self.popularity_clock().fold(
            self.item_pop, data.item_idx, data.weight, data.ts_ms, len(self.items)
        )
        return self.replace(
            seen=self.seen.merge(data.user_idx, data.item_idx, len(self.users)),
            context=context,
            item_last_ms=item_last_ms,
            item_pop=item_pop,
            pop_clock=self.pop_clock + len(data),
            pop_time_ms=max(int(self.pop_time_ms), int(data.ts_ms.max(initial=0))),
        )

    def popularity_clock(self) -> PopClock:
        """The clock ``item_pop`` is read at now: events folded (half-life
        ``pop_half_life_events``), or the watermark in ms when that is 0 (``pop_half_life_s``).

        Event clock: an event's age is the number of events folded after it, so the prior
        follows the log's pace whether a slice spans an hour or a year.
        """
        hl_events = auto_or(self.train_cfg.pop_half_life_events, 0.0)
        if hl_events > 0:
            return PopClock(int(self.pop_clock), hl_events, events=True)
        return PopClock(int(self.pop_time_ms), self.train_cfg.pop_half_life_s * 1000.0, events=False)

    def applied_data(self) -> set[str]:
        """sha256 of every data file this lineage has been trained on."""
        return {e["data_sha256"] for e in self.lineage if e.get("data_sha256")}
