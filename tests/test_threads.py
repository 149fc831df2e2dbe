"""Thread policy (recinc_cli.threads): idle threads that sleep, a team sized by the work,
RECINC_THREADS as the override. The timing side is bench/concurrency.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_INIT

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.events import TrainData
from recinc_cli.errors import UsageError
from recinc_cli.models import build_model
from recinc_cli.threads import (
    FLOPS_PER_THREAD,
    available_cores,
    cgroup_cpu_quota,
    fixed_threads,
    threads_for,
    use_threads,
)
from recinc_cli.training.train import Trainer


@pytest.fixture
def auto_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """RECINC_THREADS unset (recinc chooses); torch back on the suite's one thread afterwards."""
    monkeypatch.delenv("RECINC_THREADS")
    yield
    torch.set_num_threads(1)


def mf_trainer(n_users: int, n_items: int, dim: int, calls: list[float]) -> tuple[Trainer, TrainData]:
    """An mf trainer whose first step sizes threads through ``use_threads`` and records the
    FLOPs it was given; one event per user, all in one batch."""
    model = build_model(ModelConfig(name="mf", dim=dim), {"user": n_users + 1, "item": n_items + 1})
    model.reset_parameters("random", torch.Generator().manual_seed(0))
    users = np.arange(1, n_users + 1)
    data = TrainData(users, users % n_items + 1, np.ones(n_users, np.float32), np.zeros(n_users, np.int64))

    def size(flops: float) -> int:
        calls.append(flops)
        return use_threads(flops)

    return Trainer(
        model, TrainConfig(batch_size=n_users, lr=0.01, full_softmax_max_items=50_000), size_threads=size
    ), data


def test_first_step_flops_are_the_matrix_products_of_forward_and_backward(auto_threads: None) -> None:
    calls: list[float] = []
    trainer, data = mf_trainer(n_users=6, n_items=10, dim=4, calls=calls)
    trainer.fit(data, epochs=3, generator=torch.Generator().manual_seed(0))
    trainer.fit(data, epochs=1, generator=torch.Generator().manual_seed(0))
    # logits (6 x 4) @ (4 x 11), then the gradients of both factors: 3 products of 2*6*4*11
    assert calls == [3 * 2 * 6 * 4 * 11]
    assert trainer.step_flops == calls[0]
    assert torch.get_num_threads() == 1  # far too small to split


def test_a_large_step_gets_one_thread_per_share_of_work_up_to_the_cores(auto_threads: None) -> None:
    calls: list[float] = []
    # 6 * 64 users * 64 dim * 40,001 items = 9.8e8 FLOPs a step: 3 threads' worth
    trainer, data = mf_trainer(n_users=64, n_items=40_000, dim=64, calls=calls)
    trainer.fit(data, epochs=1, generator=torch.Generator().manual_seed(0))
    assert calls == [6 * 64 * 64 * 40_001]
    assert int(calls[0] // FLOPS_PER_THREAD) == 3
    assert torch.get_num_threads() == min(3, available_cores())


def test_recinc_threads_overrides_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECINC_THREADS", "2")
    try:
        assert use_threads(1.0) == 2 and torch.get_num_threads() == 2
        assert use_threads(1e15) == 2
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_recinc_threads_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RECINC_THREADS", value)
    with pytest.raises(UsageError) as e:
        fixed_threads()
    assert str(e.value) == (
        f"RECINC_THREADS must be a positive whole number of threads (got {value!r}); unset it to let recinc choose"
    )
    assert e.value.exit_code == 2


def test_cli_reports_a_bad_recinc_threads_in_one_line(cli, expect_error, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    r = cli("init", pipeline.events["base"], "-o", out, *SMALL_INIT, env={"RECINC_THREADS": "many"})
    expect_error(
        r, 2, "RECINC_THREADS must be a positive whole number of threads (got 'many'); unset it to let recinc choose"
    )
    assert not out.exists()


def test_small_training_runs_on_one_thread_without_the_override(cli, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    try:
        r = cli("init", pipeline.events["base"], "-o", out, *SMALL_INIT, env={"RECINC_THREADS": None})
    finally:
        torch.set_num_threads(1)
    assert r.exit_code == 0, r.stderr
    assert " on 1 thread (" in r.stderr
    assert torch.load(out, weights_only=True)["lineage"][0]["threads"] == 1


def test_threads_for_is_monotone_and_bounded() -> None:
    flops = [0.0, 1e3, FLOPS_PER_THREAD, 2 * FLOPS_PER_THREAD - 1, 2 * FLOPS_PER_THREAD, 1e10, 1e15]
    for cores in (1, 2, 16):
        counts = [threads_for(f, cores) for f in flops]
        assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == cores
    assert threads_for(2 * FLOPS_PER_THREAD - 1, 16) == 1
    assert threads_for(2 * FLOPS_PER_THREAD, 16) == 2


def test_cgroup_quota_caps_the_cores(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpu_quota(v2) == 3
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path / "v1") == 1
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path / "v1") is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def wait_env_after_import(env: dict[str, str]) -> str:
    """GOMP_SPINCOUNT and KMP_BLOCKTIME as a fresh interpreter sees them after ``import recinc_cli``."""
    code = "import os, recinc_cli; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('KMP_BLOCKTIME'))"
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_recinc_sets_a_short_spin_before_torch_loads() -> None:
    assert wait_env_after_import({}) == "1000 1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "None None"),
        ({"GOMP_SPINCOUNT": "5"}, "5 None"),
        ({"KMP_BLOCKTIME": "0"}, "None 0"),
    ],
)
def test_a_wait_policy_the_user_set_is_left_alone(env: dict[str, str], expected: str) -> None:
    assert wait_env_after_import(env) == expected
