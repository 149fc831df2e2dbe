"""Same inputs and seed, bitwise-identical checkpoints on CPU (timestamps in the lineage aside)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import SASREC_ARCH, SMALL_INIT, SMALL_TRAIN, Pipeline

#: Lineage fields that measure the run (wall time, speed, memory) rather than define the model.
_MEASURED = {"time", "train_seconds", "epoch_seconds", "peak_memory_mb", "parent_sha256", "data_path", "parent_path"}


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            if k not in _MEASURED:
                out |= _flatten(v, f"{prefix}/{k}")
        return out
    if isinstance(value, list | tuple):
        out = {}
        for i, v in enumerate(value):
            out |= _flatten(v, f"{prefix}/{i}")
        return out
    return {prefix: value}


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b or (a != a and b != b)  # NaN == NaN for the "no loss" marker


@pytest.mark.parametrize(
    "model_args",
    [
        pytest.param(SMALL_INIT, id="mf"),
        pytest.param((*SASREC_ARCH[:-2], "--dropout", "0.2", *SMALL_TRAIN), id="sasrec-dropout"),
        pytest.param(("--model", "ease", "--seed", "3"), id="ease"),
    ],
)
def test_same_seed_gives_bitwise_identical_checkpoints(
    cli, pipeline: Pipeline, tmp_path: Path, model_args: tuple[str, ...]
) -> None:
    runs = []
    for name in ("a", "b"):
        d = tmp_path / name
        assert cli("init", pipeline.events["base"], "-o", d / "m10.pt", *model_args, "-q").exit_code == 0
        for day in (11, 12):
            r = cli("update", d / f"m{day - 1}.pt", pipeline.events[f"day{day}"], "-o", d / f"m{day}.pt", "-q")
            assert r.exit_code == 0, r.stderr
        runs.append(_flatten({k: v for k, v in torch.load(d / "m12.pt", weights_only=True).items() if k != "checksum"}))
    a, b = runs
    assert a.keys() == b.keys()
    differ = [k for k in a if not _same(a[k], b[k])]
    assert differ == []
    assert any(k.startswith("/weights/") for k in a)  # the comparison saw the model itself
