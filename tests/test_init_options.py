"""init --init: random, zero and pretrained:PATH (rows of known ids copied by raw id)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recinc_cli.checkpoint import load_bundle
from recinc_cli.config import ModelConfig
from recinc_cli.errors import UsageError
from recinc_cli.lifecycle import copy_pretrained
from recinc_cli.models import build_model
from recinc_cli.train import seeded_generator
from recinc_cli.vocab import Vocab


def test_pretrained_rows_follow_the_raw_ids(pipeline) -> None:
    pre = load_bundle(pipeline.ckpt[10])
    # A new vocabulary in another order, with ids the pretrained model never saw.
    users, items = Vocab.empty(), Vocab.empty()
    users.extend(pl.Series(["new-user", *reversed(pre.users.ids[1:50])]))
    items.extend(pl.Series(["new-item", *pre.items.ids[10:30]]))
    model = build_model(ModelConfig(dim=8), len(users), len(items))
    model.reset_parameters("random", seeded_generator(1))
    fresh_user_row = model.user_emb[1].detach().clone()
    copy_pretrained(model, users, items, pipeline.ckpt[10])
    for j, raw in enumerate(users.ids[2:], start=2):
        assert torch.equal(model.user_emb[j], pre.model.user_emb[pre.users.ids.index(raw)])
    for j, raw in enumerate(items.ids[2:], start=2):
        k = pre.items.ids.index(raw)
        assert torch.equal(model.item_emb[j], pre.model.item_emb[k])
        assert model.item_bias[j] == pre.model.item_bias[k]
    assert torch.equal(model.user_emb[1], fresh_user_row)  # unknown id keeps its fresh row
    assert torch.count_nonzero(model.user_emb[0]) == 0


def test_pretrained_needs_the_same_architecture(pipeline) -> None:
    model = build_model(ModelConfig(dim=4), 3, 3)
    with pytest.raises(
        UsageError,
        match=r"its model \(ModelConfig\(name='mf', dim=8\)\) differs "
        r"from the requested one .*use the same --model and --dim",
    ):
        copy_pretrained(model, Vocab.empty(), Vocab.empty(), pipeline.ckpt[10])


def test_init_from_pretrained_via_cli(cli, expect_error, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "warm.pt"
    flags = ("--epochs", "1", "--batch-size", "4096", "--valid-fraction", "0", "-q")
    r = cli(
        "init", pipeline.events["day11"], "-o", out, "--dim", "8", "--init", f"pretrained:{pipeline.ckpt[10]}", *flags
    )
    assert (r.exit_code, r.stderr) == (0, "")
    raw = torch.load(out, weights_only=True)
    assert raw["train_config"]["init"] == f"pretrained:{pipeline.ckpt[10]}"
    # One small step from the pretrained rows: known items stay close to them, unlike a cold start.
    pre = load_bundle(pipeline.ckpt[10])
    known = [(j, pre.items.ids.index(i)) for j, i in enumerate(raw["items"]) if i in pre.items.ids[1:]]
    new_idx, old_idx = (torch.tensor(c) for c in zip(*known, strict=True))
    warm = raw["weights"]["item_emb"][new_idx]
    assert torch.allclose(warm, pre.model.item_emb.detach()[old_idx], atol=0.02)
    r = cli("init", pipeline.events["day11"], "-o", tmp_path / "cold.pt", "--dim", "8", *flags)
    assert r.exit_code == 0, r.stderr
    cold = torch.load(tmp_path / "cold.pt", weights_only=True)["weights"]["item_emb"][new_idx]
    assert not torch.allclose(cold, pre.model.item_emb.detach()[old_idx], atol=0.02)

    r = cli(
        "init",
        pipeline.events["day11"],
        "-o",
        tmp_path / "x.pt",
        "--dim",
        "4",
        "--init",
        f"pretrained:{pipeline.ckpt[10]}",
    )
    msg = expect_error(r, 2)
    assert msg.startswith(f"--init pretrained:{pipeline.ckpt[10]}: its model")
    r = cli("init", pipeline.events["day11"], "-o", tmp_path / "x.pt", "--init", f"pretrained:{tmp_path / 'nope.pt'}")
    expect_error(r, 4, f"{tmp_path / 'nope.pt'}: no such checkpoint; check the path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cold.pt", "warm.pt"]


def test_zero_init_scores_an_untrained_user_by_item_bias(tmp_path: Path) -> None:
    model = build_model(ModelConfig(dim=4), 4, 6)
    model.reset_parameters("zero", seeded_generator(0))
    assert torch.count_nonzero(model.user_emb) == 0
    assert torch.count_nonzero(model.item_emb[1:]) > 0
    with torch.no_grad():
        model.item_bias.copy_(torch.arange(6, dtype=torch.float32))
        assert np.array_equal(model.score(torch.tensor([2]))[0].numpy(), np.arange(6.0))
