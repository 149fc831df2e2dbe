"""The documented extension point: a model written outside recinc_cli, registered with
``recinc_cli.models.register``, runs init -> update -> recommend through the CLI.

The toy model is a learned item bias (a softmax over the catalogue with no user part): the
smallest gradient-trained model, so the test is about the contract, not about quality.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from torch import nn

from recinc_cli import config
from recinc_cli.data.events import TrainData
from recinc_cli.models import MODELS, register
from recinc_cli.models.base import Batch, GradientRecommender, Query, TrainInput, shuffled_slices
from recinc_cli.store.format import load_bundle


class ItemBias(GradientRecommender):
    """Scores every user by one learned bias per item, trained by softmax cross-entropy."""

    name = "toy-bias"
    SPARSE: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, sizes: Any, cfg: Any) -> None:
        super().__init__(sizes, cfg)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))

    def tables(self) -> dict[str, str]:
        return {"item_bias": "item"}

    def score(self, query: Query) -> torch.Tensor:
        return self.item_bias.expand(len(query["user"]), -1)

    def loss(self, batch: Batch) -> torch.Tensor:
        logits = self.item_bias.expand(len(batch["item"]), -1)
        return (F.cross_entropy(logits, batch["item"], reduction="none") * batch["weight"]).mean()

    def batches(self, job: TrainInput, generator: torch.Generator) -> Iterator[Batch]:
        data: TrainData = job.data.concat(job.replay)
        for rows in shuffled_slices(len(data), job.cfg.batch_size, generator):
            yield {"item": torch.from_numpy(data.item_idx[rows]), "weight": torch.from_numpy(data.weight[rows])}


@pytest.fixture
def toy_model() -> Iterator[type[ItemBias]]:
    """Register the toy model for one test, then put the registries back as they were."""
    names = list(config.MODEL_NAMES)
    traits = [(s, set(s)) for s in (config.SEQUENTIAL_MODELS, config.GRADIENT_MODELS, config.POP_PRIOR_MODELS)]
    yield register(ItemBias)  # type: ignore[misc]
    MODELS.pop(ItemBias.name, None)
    config.MODEL_NAMES[:] = names
    for live, saved in traits:
        live.clear()
        live.update(saved)


def test_a_registered_model_runs_init_update_recommend_through_the_cli(toy_model, pipeline, tmp_path) -> None:
    m0, m1, recs = tmp_path / "m0.pt", tmp_path / "m1.pt", tmp_path / "recs.csv"
    base, day = pipeline.events["base"], pipeline.events["day11"]
    init = run_cli(
        "init", base, "-o", m0, "--model", "toy-bias", "--epochs", "2", "--batch-size", "4096", "--pop-weight", "0"
    )
    assert init.exit_code == 0, init.stderr
    assert init.stderr.startswith("init: toy-bias on 19,157 events")
    up = run_cli("update", m0, day, "-o", m1, "--epochs", "1", "--pop-weight", "0")
    assert up.exit_code == 0, up.stderr
    assert up.stderr.startswith("update: 2,476 events")
    rec = run_cli("recommend", m1, "--users", "u00001,u00002", "-k", "5", "-o", recs)
    assert rec.exit_code == 0, rec.stderr

    # The checkpoint names the model, grew its item table for the day's new items, and carries
    # the optimizer state; training moved the bias towards what is consumed.
    before, after = load_bundle(m0), load_bundle(m1)
    assert type(after.model) is ItemBias and after.model_cfg.name == "toy-bias"
    assert after.model.item_bias.shape == (len(after.items),) and len(after.items) > len(before.items)
    assert after.optimizer and after.lineage[-1]["command"] == "update"
    counts = np.bincount(before.items.lookup(pl.read_parquet(base)["item_id"]), minlength=len(before.items))
    top_bias = int(before.model.item_bias[1:].argmax()) + 1
    assert counts[top_bias] >= np.sort(counts)[-20]  # among the 20 most consumed items

    # With no popularity weight every user gets the bias ranking minus what they have seen.
    rows = list(csv.DictReader(recs.open()))
    assert [r["user_id"] for r in rows] == ["u00001"] * 5 + ["u00002"] * 5
    for user in ("u00001", "u00002"):
        idx = int(after.users.lookup(pl.Series([user]))[0])
        seen = set(after.seen.items_of(idx).tolist())
        got = after.items.lookup(pl.Series([r["item_id"] for r in rows if r["user_id"] == user])).tolist()
        assert not seen & set(got)
        assert (
            got
            == [i for i in torch.argsort(after.model.item_bias, descending=True).tolist() if i and i not in seen][:5]
        )
