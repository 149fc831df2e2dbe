"""How many cores recinc's torch work takes, and how its idle threads wait.

torch runs each large operation on a team of OpenMP threads, and by default a thread that runs
out of work spins for a few milliseconds before it sleeps. Two jobs that each take every core
then burn each other's time slices spinning: two ``update`` runs side by side trained 5x to
68x slower each on 2 cores (issue 19). So recinc

1. lets an idle thread spin about 10 microseconds, then sleep (:func:`set_wait_policy`, which
   must run before torch loads: the package ``__init__`` calls it), unless the user set the
   OpenMP runtime's own variable;
2. sizes the team by the work (:func:`threads_for`): the FLOPs of a training step, counted on
   its first step (:func:`count_flops`), buy one thread per :data:`FLOPS_PER_THREAD`, from 1
   up to the cores this process may use (:func:`available_cores`). Small steps on many threads
   spend longer handing work out than computing; they also crowd out other jobs.

``RECINC_THREADS=N`` fixes the count for every step of every command. README: "Several jobs
on one machine", with the figures of bench/concurrency.py.

>>> threads_for(2e7, cores=8)   # mf on MovieLens: tiny matrix products
1
>>> threads_for(7e9, cores=8)   # sasrec: large ones
8
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from recinc_cli.errors import UsageError

#: Work of one training step (forward and backward, in FLOPs of matrix products) per thread.
#: Measured on 2 cores, one job alone, step time on 1 thread / on 2: 1.13x at 4.4e7 FLOPs
#: (mf on MovieLens), 0.89x at 1.6e8, 1.22x at 3.9e8, 1.57x at 7.2e8, 1.51x at 7e9 (sasrec).
FLOPS_PER_THREAD = 2.5e8
#: What recinc sets before torch loads, unless one of :data:`WAIT_VARS` is set already:
#: libgomp (torch on Linux) spins GOMP_SPINCOUNT rounds (~100 per microsecond, default
#: 300,000) before sleeping; LLVM/Intel libomp (torch on macOS) waits KMP_BLOCKTIME ms (default 200).
WAIT_POLICY = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "1"}
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
ENV = "RECINC_THREADS"


def set_wait_policy(environ: MutableMapping[str, str] = os.environ) -> None:
    """Make idle OpenMP threads sleep after ~10 us instead of ~3 ms, unless the user chose.

    Only takes effect if torch (its OpenMP runtime) has not been loaded yet.

    >>> env = {}
    >>> set_wait_policy(env); env["GOMP_SPINCOUNT"]
    '1000'
    >>> env = {"OMP_WAIT_POLICY": "ACTIVE"}
    >>> set_wait_policy(env); env
    {'OMP_WAIT_POLICY': 'ACTIVE'}
    """
    if not any(var in environ for var in WAIT_VARS):
        environ.update(WAIT_POLICY)


def threads_for(step_flops: float, cores: int) -> int:
    """Threads for training steps of ``step_flops`` FLOPs each on ``cores`` cores.

    >>> [threads_for(f, cores=4) for f in (0, 4e8, 5e8, 9e8, 1e12)]
    [1, 1, 2, 3, 4]
    """
    return max(1, min(cores, int(step_flops // FLOPS_PER_THREAD)))


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a
    container started with ``--cpus 2`` on a 64-core host gets 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota else max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole cores allowed by this cgroup's CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_*``);
    None when there is none or it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return parse_quota(quota, period)
    with contextlib.suppress(OSError, ValueError):
        quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
        period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        return parse_quota(quota, period)
    return None


def parse_quota(quota: str, period: str) -> int | None:
    """Whole cores of a CFS quota: ``max`` or ``-1`` is none; 150000 per 100000 is 2.

    >>> parse_quota("max", "100000"), parse_quota("-1", "100000"), parse_quota("150000", "100000")
    (None, None, 2)
    """
    if quota in ("max", "-1"):
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def fixed_threads() -> int | None:
    """The count ``RECINC_THREADS`` fixes, or None when it is not set.

    Raises :class:`UsageError` (exit 2) when it is not a positive integer.
    """
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UsageError(
            f"{ENV} must be a positive whole number of threads (got {value!r}); unset it to let recinc choose"
        )
    return int(value)


def use_threads(step_flops: float | None = None) -> int:
    """Set torch's thread count for work of ``step_flops`` FLOPs per step (None: every
    available core, for scoring, whose blocks are large); return it. ``RECINC_THREADS`` wins."""
    import torch

    n = fixed_threads()
    if n is None:
        # torchrun's ranks on one machine share its cores.
        cores = max(1, available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
        n = cores if step_flops is None else threads_for(step_flops, cores)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def count_flops() -> Iterator[list[float]]:
    """Count the FLOPs of the matrix products run inside the block (forward and backward);
    the total is in the yielded list's only element when the block ends.

    >>> import torch
    >>> a = torch.ones(4, 8, requires_grad=True)
    >>> with count_flops() as flops:
    ...     (a @ torch.ones(8, 16)).sum().backward()
    >>> flops[0]  # 2*4*8*16 forward, the same again for a's gradient
    2048.0
    """
    from torch.utils.flop_counter import FlopCounterMode

    total = [0.0]
    counter = FlopCounterMode(display=False)
    with counter:
        yield total
    total[0] = float(counter.get_total_flops())
