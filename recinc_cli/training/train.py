"""The one training loop, used by ``init`` and ``update``; it reports through a callback.

:class:`Trainer` owns the optimizers. Their state is saved in the checkpoint and, when the model
has grown since, padded with zero moments for the new rows (:func:`grow_optimizer_state`), so an
update continues the same Adam trajectory instead of restarting it.

>>> from recinc_cli.config import ModelConfig, TrainConfig
>>> from recinc_cli.data.events import TrainData
>>> from recinc_cli.models import build_model
>>> m = build_model(ModelConfig(name="mf", dim=4), {"user": 3, "item": 4})
>>> g = torch.Generator().manual_seed(0)
>>> m.reset_parameters("random", g)
>>> d = TrainData(np.array([1, 2]), np.array([1, 3]), np.ones(2, np.float32), np.zeros(2, np.int64))
>>> losses = Trainer(m, TrainConfig(lr=0.05)).fit(d, epochs=3, generator=g)
>>> len(losses), losses[-1] < losses[0]
(3, True)
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recinc_cli import compute, distributed
from recinc_cli.config import TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.errors import TrainingError
from recinc_cli.failpoints import pause_point
from recinc_cli.models.base import GradientRecommender, Recommender, TrainInput
from recinc_cli.threads import count_flops

#: callback(epoch, n_epochs, batch, n_batches, running_loss)
ProgressFn = Callable[[int, int, int, int, float], None]


class Trainer:
    """Adam for dense parameters, SparseAdam for the sparse-gradient tables (``model.SPARSE``).

    Optional anti-forgetting terms of an update, both against the parent checkpoint:
    ``anchor`` (parameter name -> the parent's values, rows of the parent's tables only) adds
    ``cfg.anchor_weight * sum ||theta[:rows] - anchor||^2`` (L2-SP, the cheap form of EWC);
    ``teacher`` (the parent model) adds ``cfg.distill_weight * KL(teacher || model)`` over the
    parent's items for the rows of each batch (knowledge distillation, as in IncCTR).
    The learning rate follows ``cfg.lr_schedule`` after a linear ``cfg.warmup`` over the steps
    planned with :meth:`plan` (default: the steps of each :meth:`fit` call).
    ``size_threads``, if given, is called once with the FLOPs of the first step
    (:attr:`step_flops`) to size torch's thread team (:func:`recinc_cli.threads.use_threads`).
    """

    def __init__(
        self,
        model: GradientRecommender,
        cfg: TrainConfig,
        anchor: dict[str, torch.Tensor] | None = None,
        teacher: Recommender | None = None,
        size_threads: Callable[[float], int] | None = None,
        pop_prior: Callable[[TrainData], Any] | None = None,
    ) -> None:
        self.model = model
        #: The popularity prior the model trains against (:class:`~recinc_cli.data.pop_prior.PriorSource`,
        #: set by ``init``/``update`` for a block of fits), handed to ``batches``; None = off.
        self.pop_prior = pop_prior
        self.cfg = cfg
        self.optimizers = self._build()
        self.anchor = anchor if anchor and cfg.anchor_weight > 0 else None
        self.teacher = teacher.eval() if teacher is not None and cfg.distill_weight > 0 else None
        self.step, self.total_steps = 0, 0
        self.size_threads = size_threads
        if distributed.current() is not None:
            distributed.broadcast_parameters(model)  # every rank starts from rank 0's weights
        #: FLOPs of the first training step (matrix products, forward and backward), once counted.
        self.step_flops: float | None = None

    def plan(self, total_steps: int) -> None:
        """Spread the learning-rate schedule over ``total_steps`` batches of later fit calls."""
        self.step, self.total_steps = 0, max(total_steps, 1)

    def _lr_factor(self, step: int, total: int) -> float:
        """Warm-up then schedule, as a factor of ``cfg.lr`` (floor 0.1 so no step is wasted)."""
        warm = self.cfg.warmup * total
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(total - warm, 1)
        if self.cfg.lr_schedule == "linear":
            return max(1.0 - progress, 0.1)
        if self.cfg.lr_schedule == "cosine":
            return max(0.5 * (1 + math.cos(math.pi * min(progress, 1.0))), 0.1)
        return 1.0

    def _extra_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        extra = None
        if self.anchor is not None:
            named = dict(self.model.named_parameters())
            pull = torch.stack([((named[n][: a.shape[0]] - a) ** 2).sum() for n, a in self.anchor.items()]).sum()
            extra = self.cfg.anchor_weight * pull
        if self.teacher is not None:
            query, old_query = _distill_queries(batch, self.teacher)
            if len(next(iter(query.values()))) == 0:  # only users the parent never had
                return extra
            n_old = self.teacher.n_items
            with torch.no_grad():
                target = torch.log_softmax(self.teacher.score(old_query)[:, 1:n_old], dim=1)
            student = torch.log_softmax(self.model.score(query)[:, 1:n_old], dim=1)
            kl = F.kl_div(student, target, log_target=True, reduction="batchmean")
            extra = self.cfg.distill_weight * kl if extra is None else extra + self.cfg.distill_weight * kl
        return extra

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
        replay: TrainData | None = None,
    ) -> list[float]:
        """Train ``epochs`` passes over ``data``; return the mean loss of each epoch.

        ``prior``: each user's events before ``data`` (input for sequential models);
        ``replay``: past events mixed into every epoch (see :meth:`Recommender.batches`).
        Raises :class:`TrainingError` as soon as a loss is NaN or infinite.
        """
        device = compute.current().device
        with _placed(self, device):
            return self._fit(data, epochs, generator, progress, prior, replay, device)

    def _fit(
        self,
        data: TrainData,
        epochs: int,
        generator: torch.Generator,
        progress: ProgressFn | None,
        prior: Context | None,
        replay: TrainData | None,
        device: torch.device,
    ) -> list[float]:
        self.model.train()
        prior = prior if prior is not None else Context.empty(0)
        job = TrainInput(data, prior, self.cfg, replay, self.pop_prior)
        group = distributed.current()
        if group is not None:  # torchrun: this rank's users, batches of batch_size / ranks
            job = distributed.shard_input(job, group)
        # Every rank runs as many steps as the rank with the most batches: the collectives of
        # one step must meet; a rank whose shard ran out takes part with no batch.
        n_batches = self.model.n_batches(job) if group is None else distributed.most(self.model.n_batches(job))
        if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in self.model.modules()):
            # Dropout draws from torch's global generator: seed it from ours, so the same seed
            # gives the same model.
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        history: list[float] = []
        total_steps = self.total_steps or epochs * n_batches
        if not self.total_steps:
            self.step = 0
        for epoch in range(epochs):
            total, weight = 0.0, 0
            batches = iter(self.model.batches(job, generator))
            for b in range(n_batches) if group is not None else itertools.count():
                batch = next(batches, None)
                if batch is None and group is None:
                    break
                if batch is not None and device.type != "cpu":
                    batch = {
                        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                        for k, v in batch.items()
                    }
                for opt in self.optimizers:
                    opt.zero_grad(set_to_none=True)
                if self.cfg.lr_schedule != "constant" or self.cfg.warmup > 0:
                    self.set_lr(self.cfg.lr * self._lr_factor(self.step, total_steps))
                self.step += 1
                if batch is None:  # torchrun: this rank's shard ran out; the others' step still counts
                    value = None
                elif self.size_threads is not None and self.step_flops is None:
                    # The first step's work sizes the thread team for the rest (recinc_cli.threads).
                    with count_flops() as flops:
                        value = self._backward(batch, epoch, b)
                    self.step_flops = flops[0]
                    self.size_threads(self.step_flops)
                else:
                    value = self._backward(batch, epoch, b)
                if group is not None:
                    distributed.sync_gradients(self.model, value is not None, self.model.SPARSE)
                for opt in self.optimizers:
                    opt.step()
                if value is None:
                    continue
                total += value
                weight += 1
                if progress:
                    progress(epoch, epochs, b, n_batches, total / weight)
            history.append(total / max(weight, 1))
            pause_point("epoch")
        self._check_weights()
        return history

    def _backward(self, batch: dict[str, torch.Tensor], epoch: int, b: int) -> float:
        """Loss of ``batch`` (plus the anti-forgetting terms) and its gradients; returns the loss.
        Raises :class:`TrainingError` when it is NaN or infinite."""
        with compute.current().autocast():  # bf16: the forward pass only; backward follows its dtypes
            loss = self.model.loss(batch)
            extra = self._extra_loss(batch)
            if extra is not None:
                loss = loss + extra
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(
                f"loss became {value} in epoch {epoch + 1}, batch {b + 1}; "
                f"lower --lr (now {self.cfg.lr:g}) or check the event weights"
            )
        loss.backward()
        return value

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


@contextlib.contextmanager
def _placed(trainer: Trainer, device: torch.device) -> Iterator[None]:
    """The trainer's model, optimizer moments and anti-forgetting terms on ``device`` for the
    block, back on the CPU after it (validation, serving and the checkpoint read them there).
    Parameters are moved in place, so the optimizers keep them; Adam's ``step`` counters stay
    on the CPU, where torch keeps them unless an optimizer is fused or capturable."""
    if device.type == "cpu":
        yield
        return
    cpu = torch.device("cpu")

    def move(to: torch.device) -> None:
        trainer.model.to(to)
        for opt in trainer.optimizers:
            for state in opt.state.values():
                for key, t in state.items():
                    if isinstance(t, torch.Tensor) and t.dim() > 0:
                        state[key] = t.to(to)
        if trainer.anchor is not None:
            trainer.anchor = {n: a.to(to) for n, a in trainer.anchor.items()}
        if trainer.teacher is not None:
            trainer.teacher.to(to)

    move(device)
    try:
        yield
    finally:
        move(cpu)


def _distill_queries(
    batch: dict[str, torch.Tensor], teacher: Recommender
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The score queries of a batch for the student and for the (smaller) parent model.

    Rows of users the parent never had are left out of both; items and event types newer than
    the parent read as padding in its input sequence.
    """
    query: dict[str, torch.Tensor] = {k: batch[k] for k in ("user", "seq_item", "seq_type", "seq_ts") if k in batch}
    if "user" in query and "seq_item" not in query:
        keep = query["user"] < teacher.n_users
        query = {k: v[keep] for k, v in query.items()}
    old = dict(query)
    if "seq_item" in old:
        known = old["seq_item"] < teacher.n_items
        old["seq_item"] = torch.where(known, old["seq_item"], 0)
        old["seq_type"] = torch.where(old["seq_type"] < teacher.sizes["type"], old["seq_type"], 0)
    return query, old


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
