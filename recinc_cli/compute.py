"""Where a run trains: its device and precision (``init``/``update`` ``--device``, ``--precision``).

The training steps run on the device; everything else (reading, vocabularies, validation
scoring, serving, the checkpoint) stays on the CPU, so a checkpoint trained on a GPU is the
same kind of file as one trained on a CPU and loads anywhere. :class:`~recinc_cli.training.train.Trainer`
moves the model and its optimizer state to the device for each fit and back after it.

``bf16`` runs each step's forward pass under ``torch.autocast`` with bfloat16 (matrix products
in bfloat16, reductions and the softmax in float32); the weights and the optimizer's moments
stay float32.

>>> resolve("cpu", "bf16").dtype
torch.bfloat16
>>> current().device.type  # outside a run: the CPU in float32
'cpu'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from recinc_cli.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Compute:
    """A resolved ``--device`` / ``--precision`` pair."""

    device: torch.device
    precision: str = "fp32"

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The block's forward passes in bfloat16 where ``bf16`` (a no-op in fp32)."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


CPU = Compute(torch.device("cpu"))
_current: ContextVar[Compute] = ContextVar("recinc_compute", default=CPU)


def resolve(device: str = "auto", precision: str = "fp32") -> Compute:
    """``--device``/``--precision`` as a :class:`Compute`. ``auto`` is CUDA when torch sees a
    GPU, else the CPU. Under torchrun each rank of a machine takes the GPU of its local rank.
    Raises :class:`UsageError` for a device that is not there or a precision it lacks."""
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)} (got {device!r})")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UsageError("--device cuda: torch sees no CUDA device here (a CPU build, or no GPU); use --device cpu")
    if device == "cpu" or not cuda:
        return Compute(torch.device("cpu"), precision)
    index = int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise UsageError(
            f"--device cuda: local rank {index} has no GPU of its own ({torch.cuda.device_count()} visible); "
            "start at most that many processes per machine (torchrun --nproc-per-node)"
        )
    torch.cuda.set_device(index)
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"--precision bf16: {torch.cuda.get_device_name(index)} has no bfloat16; use fp32")
    return Compute(torch.device("cuda", index), precision)


def current() -> Compute:
    """The compute of the run in progress (the CPU in float32 outside one)."""
    return _current.get()


@contextlib.contextmanager
def using(compute: Compute) -> Iterator[Compute]:
    """Train on ``compute`` within the block."""
    token = _current.set(compute)
    try:
        yield compute
    finally:
        _current.reset(token)
