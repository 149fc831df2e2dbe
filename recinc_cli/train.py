"""The one training loop, used by ``init`` and ``update``; it reports through a callback.

:class:`Trainer` owns the optimizers. Their state is saved in the checkpoint and, when the model
has grown since, padded with zero moments for the new rows (:func:`grow_optimizer_state`), so an
update continues the same Adam trajectory instead of restarting it.

>>> from recinc_cli.config import ModelConfig, TrainConfig
>>> from recinc_cli.data import TrainData
>>> from recinc_cli.models import build_model
>>> m = build_model(ModelConfig(dim=4), {"user": 3, "item": 4})
>>> g = torch.Generator().manual_seed(0)
>>> m.reset_parameters("random", g)
>>> d = TrainData(np.array([1, 2]), np.array([1, 3]), np.ones(2, np.float32), np.zeros(2, np.int64))
>>> losses = Trainer(m, TrainConfig(lr=0.05)).fit(d, epochs=3, generator=g)
>>> len(losses), losses[-1] < losses[0]
(3, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from recinc_cli.config import TrainConfig
from recinc_cli.context import Context
from recinc_cli.data import TrainData
from recinc_cli.errors import TrainingError
from recinc_cli.models.base import Recommender

#: callback(epoch, n_epochs, batch, n_batches, running_loss)
ProgressFn = Callable[[int, int, int, int, float], None]


class Trainer:
    """Adam for dense parameters, SparseAdam for the sparse-gradient tables (``model.SPARSE``)."""

    def __init__(self, model: Recommender, cfg: TrainConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.optimizers = self._build()

    def _build(self) -> list[torch.optim.Optimizer]:
        named = dict(self.model.named_parameters())
        sparse = [p for n, p in named.items() if n in self.model.SPARSE]
        dense = [p for n, p in named.items() if n not in self.model.SPARSE]
        opts: list[torch.optim.Optimizer] = [torch.optim.Adam(dense, lr=self.cfg.lr)]
        if sparse:
            opts.append(torch.optim.SparseAdam(sparse, lr=self.cfg.lr))
        return opts

    def fit(
        self,
        data: TrainData,
        epochs: int,
        generator: torch.Generator,
        progress: ProgressFn | None = None,
        prior: Context | None = None,
    ) -> list[float]:
        """Train ``epochs`` passes over ``data``; return the mean loss of each epoch.

        ``prior``: each user's events before ``data`` (input for sequential models).
        Raises :class:`TrainingError` as soon as a loss is NaN or infinite.
        """
        self.model.train()
        prior = prior if prior is not None else Context.empty(0)
        n_batches = self.model.n_batches(data, prior, self.cfg)
        if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.model.modules()):
            # Dropout draws from torch's global generator: seed it from ours, so the same seed
            # gives the same model.
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        history: list[float] = []
        for epoch in range(epochs):
            total, weight = 0.0, 0
            for b, batch in enumerate(self.model.batches(data, prior, self.cfg, generator)):
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                loss = self.model.loss(batch)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"loss became {value} in epoch {epoch + 1}, batch {b + 1}; "
                        f"lower --lr (now {self.cfg.lr:g}) or check the event weights"
                    )
                loss.backward()
                for opt in self.optimizers:
                    opt.step()
                total += value
                weight += 1
                if progress:
                    progress(epoch, epochs, b, n_batches, total / weight)
            history.append(total / max(weight, 1))
        self._check_weights()
        return history

    def _check_weights(self) -> None:
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise TrainingError(f"parameter {name} holds NaN/inf after training; lower --lr")

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def state_dict(self) -> list[dict[str, Any]]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        """Restore optimizer states saved by :meth:`state_dict`, padding grown tables."""
        if len(states) != len(self.optimizers):
            raise ValueError("optimizer count differs from the checkpoint's")
        for opt, state in zip(self.optimizers, states, strict=True):
            params = [p for g in opt.param_groups for p in g["params"]]
            opt.load_state_dict(grow_optimizer_state(state, [tuple(p.shape) for p in params]))
        self.set_lr(self.cfg.lr)


def grow_optimizer_state(state: dict[str, Any], shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    """Zero-pad per-parameter state tensors (Adam moments) to the grown parameter shapes.

    ``shapes[k]`` is the current shape of the optimizer's k-th parameter. A state tensor with
    the parameter's old shape gets zero rows appended; scalars (``step``) are left alone.

    >>> s = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 2)}},
    ...      "param_groups": [{"params": [0]}]}
    >>> grow_optimizer_state(s, [(3, 2)])["state"][0]["exp_avg"].tolist()
    [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    """
    grown: dict[int, dict[str, Any]] = {}
    for k, per_param in state["state"].items():
        target = shapes[int(k)]
        entry = {}
        for key, t in per_param.items():
            if isinstance(t, torch.Tensor) and t.dim() == len(target) and t.dim() > 0:
                if tuple(t.shape[1:]) != target[1:] or t.shape[0] > target[0]:
                    raise ValueError(f"optimizer state {key} has shape {tuple(t.shape)}, model {target}")
                pad = torch.zeros((target[0] - t.shape[0], *target[1:]), dtype=t.dtype)
                t = torch.cat([t, pad])
            entry[key] = t
        grown[k] = entry
    return {"state": grown, "param_groups": state["param_groups"]}


def seeded_generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for run ``stream`` of a lineage; same seed and stream, same numbers."""
    return torch.Generator().manual_seed(int(np.uint64(seed) * np.uint64(1_000_003) + np.uint64(stream)) % (2**63))
