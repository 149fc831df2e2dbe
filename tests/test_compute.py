"""``--device`` and ``--precision``: resolution, bad values, and bfloat16 training on the CPU
(the CUDA path needs a GPU: ``bench/gpu.sh``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SASREC_ARCH, SMALL_TRAIN, check_error, run_cli

from recinc_cli import api, compute
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.events import TrainData
from recinc_cli.errors import UsageError
from recinc_cli.models import build_model
from recinc_cli.store.format import load_bundle
from recinc_cli.training.train import Trainer, seeded_generator


def test_auto_is_the_cpu_where_torch_sees_no_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert compute.resolve("auto", "fp32") == compute.Compute(torch.device("cpu"), "fp32")
    with pytest.raises(UsageError, match="--device cuda: torch sees no CUDA device"):
        compute.resolve("cuda")
    with pytest.raises(UsageError, match="--precision must be one of fp32, bf16"):
        compute.resolve("cpu", "fp16")


def test_cuda_where_there_is_none_exits_2(pipeline, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "m.pt"
    r = run_cli("init", pipeline.events["base"], "-o", out, "--model", "mf", "--device", "cuda")
    check_error(r, 2, "--device cuda: torch sees no CUDA device here (a CPU build, or no GPU); use --device cpu")
    assert not out.exists()


def test_bf16_runs_the_forward_pass_under_autocast_and_learns() -> None:
    rng = np.random.default_rng(0)
    data = TrainData(rng.integers(1, 41, 3000), rng.integers(1, 31, 3000), np.ones(3000, np.float32), np.arange(3000))
    model = build_model(ModelConfig(name="mf", dim=8), {"user": 41, "item": 31})
    model.reset_parameters("random", seeded_generator(0))
    modes: list[tuple[bool, torch.dtype]] = []
    inner = model.loss

    def watched(batch):  # type: ignore[no-untyped-def]
        modes.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return inner(batch)

    model.loss = watched  # type: ignore[method-assign]
    with compute.using(compute.resolve("cpu", "bf16")):
        losses = Trainer(model, TrainConfig(lr=0.05, batch_size=256)).fit(data, epochs=4, generator=seeded_generator(1))
    assert modes and all(m == (True, torch.bfloat16) for m in modes)
    assert losses[-1] < losses[0] and all(np.isfinite(losses))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32


@pytest.mark.parametrize("arch", [("--model", "mf", "--dim", "8"), SASREC_ARCH], ids=["mf", "sasrec"])
def test_bf16_init_and_update_through_the_cli(pipeline, tmp_path: Path, arch: tuple[str, ...]) -> None:
    m10, m11 = tmp_path / "m10.pt", tmp_path / "m11.pt"
    r = run_cli(
        "init", pipeline.events["base"], "-o", m10, *arch, *SMALL_TRAIN, "--precision", "bf16", "--device", "cpu"
    )
    assert r.exit_code == 0, r.stderr
    r = run_cli("update", m10, pipeline.events["day11"], "-o", m11, "--precision", "bf16")
    assert r.exit_code == 0, r.stderr
    lineage = load_bundle(m11).lineage
    assert [(e["device"], e["precision"], e["ranks"]) for e in lineage] == [("cpu", "bf16", 1)] * 2
    assert api.recommend(m11, users=["u00072"], k=5).height == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu.sh measures it there)")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_checkpoint_trained_on_the_gpu_goes_on_on_the_cpu_and_back(pipeline, tmp_path: Path, precision: str) -> None:
    """init on the GPU, update on the CPU, update on the GPU again: every file holds CPU tensors,
    loads anywhere and serves; each lineage entry names where it trained."""
    m = [tmp_path / f"m{d}.pt" for d in (10, 11, 12)]
    r = run_cli(
        "init",
        pipeline.events["base"],
        "-o",
        m[0],
        *SASREC_ARCH,
        *SMALL_TRAIN,
        "--device",
        "cuda",
        "--precision",
        precision,
    )
    assert r.exit_code == 0, r.stderr
    assert run_cli("update", m[0], pipeline.events["day11"], "-o", m[1], "--device", "cpu").exit_code == 0
    assert run_cli("update", m[1], pipeline.events["day12"], "-o", m[2], "--device", "cuda").exit_code == 0
    for path in m:
        raw = torch.load(path, weights_only=True)
        assert all(t.device.type == "cpu" for t in raw["weights"].values())
    lineage = load_bundle(m[2]).lineage
    assert [e["device"].split(":")[0] for e in lineage] == ["cuda", "cpu", "cuda"]
    assert lineage[0].get("gpu_peak_memory_mb", 0) > 0
    assert api.recommend(m[2], users=["u00072"], k=5).height == 5
