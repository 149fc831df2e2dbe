"""The model contract every recinc model implements, and the generic row growth.

A model is a plain ``nn.Module`` over dense indices. Row 0 of every user and item table is
padding/unknown. :meth:`Recommender.tables` names the parameters (and integer buffers) whose
first axis is indexed by users, items, event types or feature values; :meth:`Recommender.grow`
appends rows to exactly those, so old rows keep their index and values.
Models import only configs and the data containers they read (events, context, training
priors), never the bundle, file I/O or the CLI.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recinc_cli.config import ModelConfig, TrainConfig

Batch = dict[str, torch.Tensor]
#: What :meth:`Recommender.score` reads: ``user`` (B,) int64 user indices and, for models with
#: ``CONTEXT``, ``seq_item`` / ``seq_type`` (B, W) int64 each user's newest events, left-padded;
#: for models that read event times (``reads_times``), ``seq_ts`` (B, W) int64 their unix ms.
Query = dict[str, torch.Tensor]


class Recommender(nn.Module, metaclass=ABCMeta):
    """Base class: subclasses define tables, ``score``, ``loss`` and ``batches``.

    Parameters
    ----------
    sizes:
        Rows of each growing axis including the reserved row 0: ``user``, ``item``, ``type``
        (event types) and ``feat:NAME`` (values of item feature NAME); missing axes have 1 row.
    cfg:
        Architecture settings; locked for the model's lifetime.
    """

    name: ClassVar[str]
    #: parameters trained with sparse gradients (rows touched by a batch only).
    SPARSE: ClassVar[frozenset[str]] = frozenset()
    #: True when scores depend on each user's recent events (``seq_item``/``seq_type``).
    CONTEXT: ClassVar[bool] = False
    INIT_STD: ClassVar[float] = 0.1
    #: Tensors in which NaN means "missing" (a feature a generator cannot give), not a broken
    #: fit: the last check before a write lets NaN through there, never inf.
    MISSING_AS_NAN: ClassVar[frozenset[str]] = frozenset()
    #: True when ``batches`` honours ``pop_prior`` (training against the popularity prior).
    POP_PRIOR: ClassVar[bool] = False
    #: True for models solved in closed form (``absorb``), not trained by gradient steps.
    CLOSED_FORM: ClassVar[bool] = False

    def __init__(self, sizes: Mapping[str, int], cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sizes = {"user": 1, "item": 1, "type": 1, **sizes}
        #: True when ``score`` reads the events' times (``seq_ts``) beside items and types.
        self.reads_times = False

    @property
    def n_users(self) -> int:
        return self.sizes["user"]

    @property
    def n_items(self) -> int:
        return self.sizes["item"]

    @abstractmethod
    def tables(self) -> dict[str, str]:
        """Parameter or buffer name -> axis (a key of ``sizes``): the tables that grow.

        Buffers (integer lookups such as an item's feature values) grow with zero rows.
        """

    @abstractmethod
    def score(self, query: Query, out: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every item for each user of ``query``: ``(B, n_items)`` float32, a tensor
        the caller may overwrite.

        ``out``, a (B, n_items) float32 buffer, is where a model may write the scores (the
        return value is then ``out``): a caller scoring chunk after chunk reuses one buffer
        instead of faulting in fresh pages for every chunk. Models may ignore it; ``out`` must
        be None where gradients flow. Column 0 (padding) is meaningless; callers mask it.
        """

    def set_item_features(self, item_idx: torch.Tensor, values: torch.Tensor) -> None:
        """Record item feature values (n, n_features) of items ``item_idx`` (n,), where 0 (unknown,
        a null in the events) keeps the value the model knew; models without item features have
        nothing to record."""

    def reset_parameters(self, init: str, generator: torch.Generator) -> None:
        """Fill every table: ``random`` draws N(0, INIT_STD) for 2-d tables and zeros for biases;
        ``zero`` also zeroes the user tables, so an untrained user scores items by bias alone."""
        with torch.no_grad():
            for name, axis in self.tables().items():
                p = self._table(name)
                if not p.is_floating_point():
                    continue
                p.copy_(self._new_rows(name, axis, p.shape[0], init, generator))
                p[0].zero_()

    def grow(self, sizes: Mapping[str, int], init: str, generator: torch.Generator) -> None:
        """Append rows so each table has ``sizes[axis]`` rows; old rows are kept as they are."""
        sizes = {**self.sizes, **sizes}
        for name, axis in self.tables().items():  # check all first: never leave a half-grown model
            if sizes[axis] < self._table(name).shape[0]:
                raise ValueError(f"cannot shrink {name} from {self._table(name).shape[0]} to {sizes[axis]} rows")
        for name, axis in self.tables().items():
            old = self._table(name)
            extra = sizes[axis] - old.shape[0]
            if extra == 0:
                continue
            new_rows = self._new_rows(name, axis, extra, init, generator).to(old.dtype)
            grown = torch.cat([old.detach(), new_rows])
            module_name, _, attr = name.rpartition(".")
            owner = self.get_submodule(module_name) if module_name else self
            if isinstance(old, nn.Parameter):
                setattr(owner, attr, nn.Parameter(grown))
            else:
                owner.register_buffer(attr, grown)
        self.sizes = sizes

    def _table(self, name: str) -> torch.Tensor:
        try:
            return self.get_parameter(name)
        except AttributeError:
            return self.get_buffer(name)

    def _new_rows(self, name: str, axis: str, n: int, init: str, generator: torch.Generator) -> torch.Tensor:
        table = self._table(name)
        shape = (n, *table.shape[1:])
        if not table.is_floating_point() or len(shape) == 1 or (init == "zero" and axis == "user"):
            return torch.zeros(shape, dtype=table.dtype)
        return torch.randn(shape, generator=generator) * self.INIT_STD


def shuffled_slices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Yield index arrays that cover ``range(n)`` once in a random order, ``batch_size`` at a time."""
    order = torch.randperm(n, generator=generator).numpy()
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@dataclass(frozen=True)
class TrainInput:
    """What a gradient model trains on for an epoch, as the trainer hands it over.

    ``data``: the :class:`~recinc_cli.data.events.TrainData` events; ``prior``: the
    :class:`~recinc_cli.data.context.Context` of the events before them (what sequential models
    read as input; others ignore it); ``cfg``: the training settings; ``replay``: past events
    (TrainData) trained on again alongside ``data``, or None; ``pop_prior``: the popularity
    prior to train against (:class:`~recinc_cli.data.pop_prior.PriorSource`, models with
    ``POP_PRIOR``), or None. Passed in, never kept on the model.
    """

    data: Any
    prior: Any
    cfg: TrainConfig
    replay: Any = None
    pop_prior: Callable[[Any], Any] | None = None


class GradientRecommender(Recommender):
    """A model trained by gradient steps (:class:`~recinc_cli.training.train.Trainer`): ``mf``, ``sasrec``.

    Adds the training contract: :meth:`batches` cuts the events into batches, :meth:`loss`
    scores one; ``init`` early-stops on held-out events, ``update`` runs a few epochs.
    """

    CLOSED_FORM: ClassVar[bool] = False

    @abstractmethod
    def loss(self, batch: Batch) -> torch.Tensor:
        """Scalar training loss of one batch from :meth:`batches`."""

    @abstractmethod
    def batches(self, job: TrainInput, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled batches of ``job`` (:class:`TrainInput`), drawn with ``generator``."""

    def n_batches(self, job: TrainInput) -> int:
        """About how many batches :meth:`batches` yields (for progress bars)."""
        return -(-(len(job.data) + (len(job.replay) if job.replay is not None else 0)) // job.cfg.batch_size)


class ClosedFormRecommender(Recommender):
    """A model solved from counts, not trained: ``ease``, ``sknn``, ``ranker``.

    :meth:`absorb` folds events in; ``init`` and ``update`` call it through
    :func:`~recinc_cli.training.closed_form.closed_form_fit`. It has no gradient path:
    :meth:`loss` and :meth:`batches` say why.
    """

    CLOSED_FORM: ClassVar[bool] = True
    #: What a fit did, in the words of ``init``'s summary line (``{name}`` fields from the
    #: fit's report).
    FIT_SUMMARY: ClassVar[str] = "co-occurrences counted"
    #: Completes "NAME ..." in the error of a gradient step asked of the model.
    NO_GRADIENT: ClassVar[str] = "is solved in closed form"

    @abstractmethod
    def absorb(self, data: Any, prior: Any, half_life_events: float) -> None:
        """Fold the time-ordered :class:`~recinc_cli.data.events.TrainData` ``data`` in; ``prior``
        (:class:`~recinc_cli.data.context.Context`) holds each user's events before it, and
        ``half_life_events`` decays older counts (0 = none; models that keep no counts ignore it)."""

    def loss(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Not a gradient model: raises :class:`NotImplementedError` saying why."""
        raise NotImplementedError(f"{self.name} {self.NO_GRADIENT}")

    def batches(self, *args: Any, **kwargs: Any) -> Iterator[Batch]:
        """Not a gradient model: raises :class:`NotImplementedError` saying why."""
        raise NotImplementedError(f"{self.name} {self.NO_GRADIENT}")


class RankingRecommender(ClosedFormRecommender):
    """A composite: closed-form candidate generators (:meth:`absorb`) and a ranking over their
    candidates learned from what users took next (:meth:`learn`): ``ranker``.

    ``init`` and ``update`` fit it through :func:`~recinc_cli.training.ranker_fit.ranker_fit`,
    which labels examples with the events that follow each cut before absorbing them.
    """

    @abstractmethod
    def learn(self, feats: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int) -> None:
        """Learn the ranking from query groups (sizes ``groups``) of feature rows ``feats``
        (n, n_features) and 0/1 ``labels`` (n,)."""


def gradient_model(model: Recommender) -> GradientRecommender:
    """``model`` as the gradient-trained model it must be here; TypeError if it is closed-form."""
    if not isinstance(model, GradientRecommender):
        raise TypeError(f"{model.name} is not trained by gradient steps")
    return model


def closed_form_model(model: Recommender) -> ClosedFormRecommender:
    """``model`` as the closed-form model it must be here; TypeError if it is gradient-trained."""
    if not isinstance(model, ClosedFormRecommender):
        raise TypeError(f"{model.name} is trained by gradient steps, not solved in closed form")
    return model
