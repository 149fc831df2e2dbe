"""init --init: random, zero and pretrained:PATH (rows of known ids copied by raw id)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import only_files

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.seen import SeenItems
from recinc_cli.data.vocab import Vocab
from recinc_cli.errors import UsageError
from recinc_cli.models import build_model
from recinc_cli.store.bundle import Bundle
from recinc_cli.store.format import load_bundle, read_payload
from recinc_cli.training.lifecycle import copy_pretrained
from recinc_cli.training.train import seeded_generator


def fresh_bundle(cfg: ModelConfig, users: Vocab, items: Vocab, **vocabs: object) -> Bundle:
    """A randomly initialised bundle over the given vocabularies (``types``, ``features``)."""
    b = Bundle(
        model=build_model(cfg, {"user": len(users), "item": len(items)}),
        model_cfg=cfg,
        train_cfg=TrainConfig(),
        users=users,
        items=items,
        seen=SeenItems.empty(len(users)),
        item_pop=torch.zeros(len(items)),
        pop_time_ms=0,
        **vocabs,  # type: ignore[arg-type]
    )
    b.model = build_model(cfg, b.sizes())
    b.model.reset_parameters("random", seeded_generator(1))
    return b


def test_pretrained_rows_follow_the_raw_ids(pipeline) -> None:
    pre = load_bundle(pipeline.ckpt[10])
    # A new vocabulary in another order, with ids the pretrained model never saw.
    users, items = Vocab.empty(), Vocab.empty()
    users.extend(pl.Series(["new-user", *reversed(pre.users.ids[1:50])]))
    items.extend(pl.Series(["new-item", *pre.items.ids[10:30]]))
    bundle = fresh_bundle(ModelConfig(name="mf", dim=8), users, items)
    model = bundle.model
    fresh_user_row = model.user_emb[1].detach().clone()
    copy_pretrained(bundle, pipeline.ckpt[10])
    for j, raw in enumerate(users.ids[2:], start=2):
        assert torch.equal(model.user_emb[j], pre.model.user_emb[pre.users.ids.index(raw)])
    for j, raw in enumerate(items.ids[2:], start=2):
        k = pre.items.ids.index(raw)
        assert torch.equal(model.item_emb[j], pre.model.item_emb[k])
        assert model.item_bias[j] == pre.model.item_bias[k]
    assert torch.equal(model.user_emb[1], fresh_user_row)  # unknown id keeps its fresh row
    assert torch.count_nonzero(model.user_emb[0]) == 0


def test_sasrec_pretrained_rows_follow_the_raw_ids(sasrec_pipeline) -> None:
    pre = load_bundle(sasrec_pipeline.ckpt[10])
    users, items, types, cats = Vocab.empty(), Vocab.empty(), Vocab.empty(), Vocab.empty()
    users.extend(pl.Series(["new-user", *pre.users.ids[1:5]]))
    items.extend(pl.Series(["new-item", *reversed(pre.items.ids[1:40])]))
    types.extend(pl.Series(["new-type", *reversed(pre.types.ids[1:])]))
    cats.extend(pl.Series(["new-cat", *reversed(pre.features["category"].ids[1:])]))
    bundle = fresh_bundle(pre.model_cfg, users, items, types=types, features={"category": cats})
    model = bundle.model
    fresh = {n: p.detach().clone() for n, p in model.named_parameters()}
    copy_pretrained(bundle, sasrec_pipeline.ckpt[10])
    tables = {"item_emb": (items, pre.items), "type_emb": (types, pre.types)}
    tables["feat_emb.0"] = (cats, pre.features["category"])
    for name, (new_vocab, old_vocab) in tables.items():
        p, old = model.get_parameter(name), pre.model.get_parameter(name)
        assert torch.equal(p[1], fresh[name][1]), name  # the unknown id keeps its fresh row
        for j, raw in enumerate(new_vocab.ids[2:], start=2):
            assert torch.equal(p[j], old[old_vocab.ids.index(raw)]), (name, raw)
    # Weights that are not tables (transformer, positions, norms) are copied whole.
    for name, p in model.named_parameters():
        if name not in model.tables():
            assert torch.equal(p, pre.model.get_parameter(name)), name


def test_pretrained_needs_the_same_architecture(pipeline) -> None:
    bundle = fresh_bundle(ModelConfig(name="mf", dim=4), Vocab.empty(), Vocab.empty())
    with pytest.raises(
        UsageError,
        match=r"its model \(ModelConfig\(name='mf', dim=8, .*\)\) differs from the requested one "
        r"\(ModelConfig\(name='mf', dim=4, .*\)\); use the same --model and architecture options",
    ):
        copy_pretrained(bundle, pipeline.ckpt[10])


def test_init_from_pretrained_via_cli(cli, expect_error, pipeline, tmp_path: Path) -> None:
    out, day11, pretrained = tmp_path / "warm.pt", pipeline.events["day11"], f"pretrained:{pipeline.ckpt[10]}"
    flags = ("--epochs", "1", "--batch-size", "4096", "--valid-fraction", "0", "-q")
    r = cli("init", "--model", "mf", day11, "-o", out, "--dim", "8", "--init", pretrained, *flags)
    assert (r.exit_code, r.stderr) == (0, "")
    raw = read_payload(out)
    assert raw["train_config"]["init"] == f"pretrained:{pipeline.ckpt[10]}"
    # One small step from the pretrained rows: known items stay close to them, unlike a cold start.
    pre = load_bundle(pipeline.ckpt[10])
    known = [(j, pre.items.ids.index(i)) for j, i in enumerate(raw["items"]) if i in pre.items.ids[1:]]
    new_idx, old_idx = (torch.tensor(c) for c in zip(*known, strict=True))
    warm = raw["weights"]["item_emb"][new_idx]
    assert torch.allclose(warm, pre.model.item_emb.detach()[old_idx], atol=0.02)
    r = cli("init", "--model", "mf", day11, "-o", tmp_path / "cold.pt", "--dim", "8", *flags)
    assert r.exit_code == 0, r.stderr
    cold = read_payload(tmp_path / "cold.pt")["weights"]["item_emb"][new_idx]
    assert not torch.allclose(cold, pre.model.item_emb.detach()[old_idx], atol=0.02)

    r = cli("init", "--model", "mf", day11, "-o", tmp_path / "x.pt", "--dim", "4", "--init", pretrained)
    msg = expect_error(r, 2)
    assert msg.startswith(f"--init pretrained:{pipeline.ckpt[10]}: its model")
    r = cli("init", "--model", "mf", day11, "-o", tmp_path / "x.pt", "--init", f"pretrained:{tmp_path / 'nope.pt'}")
    expect_error(r, 4, f"{tmp_path / 'nope.pt'}: no such checkpoint; check the path")
    assert only_files(tmp_path) == ["cold.pt", "warm.pt"]


def test_zero_init_scores_an_untrained_user_by_item_bias(tmp_path: Path) -> None:
    model = build_model(ModelConfig(name="mf", dim=4), {"user": 4, "item": 6})
    model.reset_parameters("zero", seeded_generator(0))
    assert torch.count_nonzero(model.user_emb) == 0
    assert torch.count_nonzero(model.item_emb[1:]) > 0
    with torch.no_grad():
        model.item_bias.copy_(torch.arange(6, dtype=torch.float32))
        assert np.array_equal(model.score({"user": torch.tensor([2])})[0].numpy(), np.arange(6.0))
