"""Data-parallel training under ``torchrun``: each rank trains on its shard of the users, and
the ranks average their gradients after every step, so every rank holds the same model.

``torchrun --nproc-per-node N -m recinc_cli init|update ...`` starts N copies of the command;
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) makes :func:`session`
join them into one process group (gloo on CPU, nccl on CUDA). Outside torchrun nothing here
does anything: a single process behaves exactly as before.

What each rank does:

- reads the whole slice and builds the same vocabularies, growth and initial weights (all are
  deterministic: same data, same seed), and starts from rank 0's parameters (broadcast once);
- trains on its shard: the events of the users whose hashed index falls to it
  (:func:`shard_mask`), so a user's sequence stays whole on one rank; each rank's batches are
  ``batch_size / N`` events, so a step of N ranks sees about ``batch_size`` events, as one
  process does, and the learning-rate schedule keeps its meaning;
- after each backward pass :func:`sync_gradients` averages the gradients over the ranks that
  had a batch (a rank whose shard ran out first contributes nothing, so no event counts twice
  and none is dropped): dense gradients in one all-reduce, the embedding tables' sparse
  gradients (SparseAdam rows) by all-gather of their rows, which nccl supports and an
  all-reduce of sparse tensors does not;
- takes every decision from rank 0's numbers (:func:`agree`): the held-out NDCG@10 of early
  stopping and of the popularity weight;
- writes nothing: rank 0 alone takes the lock and writes the checkpoint and registry, and the
  others wait for it at a barrier (:func:`finish`).

Why not ``DistributedDataParallel``: it all-reduces in hooks armed by its own ``forward``
(recinc's models train through ``loss()``), cannot all-reduce the sparse gradients of the
embedding tables on nccl, and hangs when one rank has more batches than another unless every
loop is wrapped in ``Join``. The gradient averaging here is the same algorithm, one bucketed
all-reduce per step, on torch.distributed's own collectives.

>>> shard_mask(np.array([1, 2, 3, 4, 5, 6]), rank=0, world=2).tolist()
[False, True, True, False, False, True]
>>> current() is None  # outside torchrun
True
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from recinc_cli.errors import DistributedError

T = TypeVar("T")

#: How long a rank waits in one collective before giving up. Long: rank 0 may gate, write and
#: prune a registry while the others wait at the final barrier. A dead rank is noticed sooner:
#: its sockets close (gloo raises) and torchrun stops the rest.
TIMEOUT = dt.timedelta(hours=2)


@dataclass(frozen=True)
class Group:
    """This process's place in the run: ``rank`` of ``world`` processes."""

    rank: int
    world: int

    @property
    def writer(self) -> bool:
        return self.rank == 0


def current() -> Group | None:
    """The group of a torchrun run that :func:`session` joined; None in a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return Group(dist.get_rank(), dist.get_world_size())


def is_writer() -> bool:
    """Whether this process writes outputs: a single process, or rank 0 of a torchrun run."""
    group = current()
    return group is None or group.writer


def follower() -> bool:
    """Whether this process is a torchrun rank other than 0: it prints and writes nothing."""
    return launched() and os.environ.get("RANK", "0") != "0"


def launched() -> bool:
    """Whether torchrun (or another launcher that sets its variables) started us with peers."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[Group | None]:
    """Join the run's process group for the block when torchrun started us; yield it (None in a
    single process, and nothing is set up). A group joined earlier (the Python API, twice) is
    reused and left open."""
    if not launched() or current() is not None:
        yield current()
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except Exception as e:  # a rendezvous that fails: wrong address, a peer that never came
        raise DistributedError(f"cannot join the torchrun group ({backend}): {e}") from e
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def shard_mask(user_idx: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Which events (of users ``user_idx`` (n,) int64) fall to ``rank`` of ``world``: by a
    multiplicative hash of the user index (Fibonacci hashing), so every rank gets about the
    same share however the indices were handed out, and a user's events stay together."""
    h = (user_idx.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return (h % np.uint64(world)) == np.uint64(rank)


def shard_input(job: Any, group: Group) -> Any:
    """``job`` (a :class:`~recinc_cli.models.base.TrainInput`) narrowed to ``group.rank``'s
    users, with batches of ``batch_size / world`` events. The popularity prior, which depends
    on every event before each one, is computed on the whole data and then narrowed."""
    mask = shard_mask(job.data.user_idx, group.rank, group.world)
    replay = job.replay
    if replay is not None:
        replay = replay.subset(shard_mask(replay.user_idx, group.rank, group.world))
    pop_prior = job.pop_prior
    if pop_prior is not None:
        whole = pop_prior(job.data)
        narrowed = type(whole)(whole.snap[mask], whole.log_pop)
        pop_prior = _Fixed(narrowed)
    cfg = replace(job.cfg, batch_size=max(1, -(-job.cfg.batch_size // group.world)))
    return replace(job, data=job.data.subset(mask), replay=replay, pop_prior=pop_prior, cfg=cfg)


class _Fixed:
    """A popularity prior source that returns one precomputed prior (a shard's)."""

    def __init__(self, prior: Any) -> None:
        self.prior = prior

    def __call__(self, data: Any) -> Any:
        return self.prior


def most(n: int) -> int:
    """The largest ``n`` over the ranks (every rank then runs that many steps)."""
    t = torch.tensor([n], dtype=torch.int64, device=_device())
    _collective(dist.all_reduce, t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _device() -> torch.device:
    """Where this group's collectives take their tensors: the rank's GPU on nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree(compute: Callable[[], T]) -> T:
    """Rank 0's ``compute()``, on every rank: the others do not compute it. For decisions
    that must be the same everywhere (a float that differs in its last bit on another
    machine would otherwise stop one rank's training an epoch before another's)."""
    group = current()
    if group is None:
        return compute()
    box = [compute() if group.writer else None]
    _collective(dist.broadcast_object_list, box, src=0)
    return box[0]  # type: ignore[return-value]


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Every rank's parameters and buffers set to rank 0's (they start equal by construction;
    this makes it so whatever the floating point of each machine did)."""
    device = _device()
    for t in [*model.parameters(), *model.buffers()]:
        with torch.no_grad():
            buf = t.data if t.device == device else t.data.to(device)
            _collective(dist.broadcast, buf, src=0)
            if buf is not t.data:
                t.data.copy_(buf)


def sync_gradients(model: torch.nn.Module, had_batch: bool, sparse_names: frozenset[str] | set[str]) -> None:
    """Average the gradients of ``model`` over the ranks that had a batch this step.

    ``sparse_names``: the parameters whose gradients are sparse (embedding rows, the model's
    ``SPARSE``). A rank without a batch (its shard ran out) sends zeros and is not counted.
    Dense gradients go in one flat all-reduce; sparse ones by all-gather of indices and values,
    summed into one sparse gradient per table. Afterwards every rank holds the same gradients,
    so the same optimizer step keeps the models equal.
    """
    group = current()
    if group is None:
        return
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    dense = [p for n, p in named if n not in sparse_names]
    sparse = [p for n, p in named if n in sparse_names]
    device = named[0][1].device  # nccl reduces tensors on the GPU, gloo on the CPU
    count = torch.tensor([1.0 if had_batch else 0.0], device=device)
    flat = torch.cat(
        [
            *(torch.zeros(p.numel(), device=device) if p.grad is None else p.grad.reshape(-1).float() for p in dense),
            count,
        ]
    )
    _collective(dist.all_reduce, flat)
    ranks = max(float(flat[-1]), 1.0)
    at = 0
    for p in dense:
        n = p.numel()
        p.grad = (flat[at : at + n] / ranks).view_as(p).to(p.dtype)
        at += n
    for p in sparse:
        p.grad = _gathered_sparse(p, group.world) / ranks


def _gathered_sparse(p: torch.Tensor, world: int) -> torch.Tensor:
    """The sum over ranks of ``p``'s sparse gradient (rows of an embedding table)."""
    dev = p.device
    if p.grad is not None:
        grad = p.grad.coalesce()
        idx, val = grad.indices()[0], grad.values()
    else:
        idx, val = (
            torch.zeros(0, dtype=torch.int64, device=dev),
            torch.zeros((0, *p.shape[1:]), dtype=p.dtype, device=dev),
        )
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world)]
    _collective(dist.all_gather, sizes, torch.tensor([len(idx)], device=dev))
    top = max(int(s) for s in sizes)
    pad_idx = torch.zeros(top, dtype=torch.int64, device=dev)
    pad_idx[: len(idx)] = idx
    pad_val = torch.zeros((top, *p.shape[1:]), dtype=p.dtype, device=dev)
    pad_val[: len(idx)] = val
    all_idx = [torch.empty_like(pad_idx) for _ in range(world)]
    all_val = [torch.empty_like(pad_val) for _ in range(world)]
    _collective(dist.all_gather, all_idx, pad_idx)
    _collective(dist.all_gather, all_val, pad_val)
    keep = [slice(0, int(s)) for s in sizes]
    indices = torch.cat([i[k] for i, k in zip(all_idx, keep, strict=True)])[None, :]
    values = torch.cat([v[k] for v, k in zip(all_val, keep, strict=True)])
    return torch.sparse_coo_tensor(indices, values, p.shape, check_invariants=False).coalesce()


def finish() -> None:
    """The end of a run: rank 0 calls it after writing, the others wait here for that."""
    if current() is not None:
        _collective(dist.barrier)


def _collective(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one collective; a peer that died or timed out becomes :class:`DistributedError`."""
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistError) as e:
        group = current()
        where = f"rank {group.rank} of {group.world}" if group else "this rank"
        raise DistributedError(
            f"{where}: another rank stopped or cannot be reached ({type(e).__name__}); nothing was "
            "written: see torchrun's report of the rank that failed first"
        ) from e
