"""The model contract every recinc model implements, and the generic row growth.

A model is a plain ``nn.Module`` over dense indices. Row 0 of every user and item table is
padding/unknown. ``TABLES`` names the parameters whose first axis is indexed by users or items;
:meth:`Recommender.grow` appends rows to exactly those, so old rows keep their index and values.
Models import nothing from recinc but the config.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recinc_cli.config import ModelConfig, TrainConfig

Batch = dict[str, torch.Tensor]


class Recommender(nn.Module):
    """Base class: subclasses define tables, ``score``, ``loss`` and ``batches``.

    Parameters
    ----------
    n_users, n_items:
        Table sizes including the reserved row 0.
    cfg:
        Architecture settings; locked for the model's lifetime.
    """

    name: ClassVar[str]
    #: parameter name -> "user" | "item": the axis-0 tables that grow with the vocabularies.
    TABLES: ClassVar[dict[str, str]]
    #: parameters trained with sparse gradients (rows touched by a batch only).
    SPARSE: ClassVar[frozenset[str]] = frozenset()
    INIT_STD: ClassVar[float] = 0.1

    def __init__(self, n_users: int, n_items: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_users = n_users
        self.n_items = n_items

    @abstractmethod
    def score(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: ``(B,)`` int64 -> ``(B, n_items)`` float32.

        Column 0 (padding) is meaningless; callers mask it.
        """

    @abstractmethod
    def loss(self, batch: Batch) -> torch.Tensor:
        """Scalar training loss of one batch from :meth:`batches`."""

    @abstractmethod
    def batches(self, data: Any, cfg: TrainConfig, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled training batches built from :class:`~recinc_cli.data.TrainData`."""

    def reset_parameters(self, init: str, generator: torch.Generator) -> None:
        """Fill every table: ``random`` draws N(0, INIT_STD) for 2-d tables and zeros for biases;
        ``zero`` also zeroes the user tables, so an untrained user scores items by bias alone."""
        with torch.no_grad():
            for name, axis in self.TABLES.items():
                p = self.get_parameter(name)
                p.copy_(self._new_rows(name, axis, p.shape[0], init, generator))
                p[0].zero_()

    def grow(self, n_users: int, n_items: int, init: str, generator: torch.Generator) -> None:
        """Append rows so the tables hold ``n_users`` / ``n_items`` rows; old rows are kept."""
        sizes = {"user": n_users, "item": n_items}
        for name, axis in self.TABLES.items():
            old = self.get_parameter(name)
            extra = sizes[axis] - old.shape[0]
            if extra < 0:
                raise ValueError(f"cannot shrink {name} from {old.shape[0]} to {sizes[axis]} rows")
            if extra == 0:
                continue
            new_rows = self._new_rows(name, axis, extra, init, generator)
            grown = nn.Parameter(torch.cat([old.detach(), new_rows.to(old.dtype)]))
            module_name, _, attr = name.rpartition(".")
            setattr(self.get_submodule(module_name) if module_name else self, attr, grown)
        self.n_users, self.n_items = n_users, n_items

    def _new_rows(self, name: str, axis: str, n: int, init: str, generator: torch.Generator) -> torch.Tensor:
        shape = (n, *self.get_parameter(name).shape[1:])
        if len(shape) == 1 or (init == "zero" and axis == "user"):
            return torch.zeros(shape)
        return torch.randn(shape, generator=generator) * self.INIT_STD


def shuffled_slices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Yield index arrays that cover ``range(n)`` once in a random order, ``batch_size`` at a time."""
    order = torch.randperm(n, generator=generator).numpy()
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
