"""The Adam state survives save -> update (grow) -> load instead of restarting."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.events import TrainData
from recinc_cli.models import MODELS, build_model
from recinc_cli.store.format import read_payload
from recinc_cli.training.train import Trainer, grow_optimizer_state, seeded_generator


def test_grow_pads_zero_rows_and_keeps_old_rows_and_scalars() -> None:
    exp_avg = torch.arange(6, dtype=torch.float32).reshape(3, 2) + 1
    bias = torch.tensor([0.5, -0.5, 2.0])
    state = {
        "state": {
            0: {"step": torch.tensor(7.0), "exp_avg": exp_avg, "exp_avg_sq": exp_avg * 2},
            1: {"step": torch.tensor(7.0), "exp_avg": bias},
        },
        "param_groups": [{"lr": 0.1, "params": [0, 1]}],
    }
    grown = grow_optimizer_state(state, [(5, 2), (5,)])
    s0, s1 = grown["state"][0], grown["state"][1]
    assert s0["exp_avg"].shape == (5, 2) and s0["exp_avg_sq"].shape == (5, 2)
    assert torch.equal(s0["exp_avg"][:3], exp_avg)
    assert torch.equal(s0["exp_avg_sq"][:3], exp_avg * 2)
    assert torch.count_nonzero(s0["exp_avg"][3:]) == 0
    assert s1["exp_avg"].tolist() == [0.5, -0.5, 2.0, 0.0, 0.0]
    assert s0["step"].item() == 7.0
    assert grown["param_groups"] == state["param_groups"]
    # Same shape: nothing to pad.
    assert torch.equal(grow_optimizer_state(state, [(3, 2), (3,)])["state"][0]["exp_avg"], exp_avg)


@pytest.mark.parametrize("shapes", [[(2, 2), (3,)], [(4, 3), (4,)]])
def test_grow_rejects_a_shrunk_or_reshaped_parameter(shapes: list[tuple[int, ...]]) -> None:
    state = {
        "state": {0: {"exp_avg": torch.ones(3, 2)}, 1: {"exp_avg": torch.ones(3)}},
        "param_groups": [{"params": [0, 1]}],
    }
    with pytest.raises(ValueError, match=r"optimizer state exp_avg has shape \(3, 2\)"):
        grow_optimizer_state(state, shapes)


CONFIGS = {
    "mf": ModelConfig(name="mf", dim=4),
    "sasrec": ModelConfig(name="sasrec", dim=4, max_len=4, blocks=1, dropout=0.0, item_features=("c",)),
}


def test_every_model_is_checked() -> None:
    # ease is solved in closed form: it has no optimizer state (test_ease.py)
    assert sorted(CONFIGS) == sorted(n for n in MODELS if not MODELS[n].CLOSED_FORM)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_trainer_restores_state_into_a_grown_model(name: str) -> None:
    model = build_model(CONFIGS[name], {"user": 4, "item": 5, "type": 2, "feat:c": 3})
    model.reset_parameters("random", seeded_generator(0))
    # Users with two events each, so a sequential model has targets too.
    users, items = np.array([1, 2, 3, 1, 2, 3]), np.array([1, 2, 4, 2, 3, 1])
    data = TrainData(users, items, np.ones(6, np.float32), np.arange(6, dtype=np.int64))
    trainer = Trainer(model, TrainConfig(lr=0.01))
    trainer.fit(data, epochs=2, generator=seeded_generator(0))
    saved = [
        {
            "state": {
                k: {kk: vv.clone() if torch.is_tensor(vv) else vv for kk, vv in v.items()}
                for k, v in s["state"].items()
            },
            "param_groups": s["param_groups"],
        }
        for s in trainer.state_dict()
    ]

    model.grow({"user": 6, "item": 8, "type": 3, "feat:c": 5}, "random", seeded_generator(1))
    grown_tables = [p for n, p in model.named_parameters() if n in model.tables()]
    fresh = Trainer(model, TrainConfig(lr=0.02))
    fresh.load_state_dict(saved)
    padded = 0
    for opt, old in zip(fresh.optimizers, saved, strict=True):
        params = [p for g in opt.param_groups for p in g["params"]]
        assert opt.param_groups[0]["lr"] == 0.02  # this run's lr, not the stored one
        for k, p in enumerate(params):
            st, prev = opt.state[p], old["state"][k]
            assert st["exp_avg"].shape == p.shape
            rows = prev["exp_avg"].shape[0]
            assert torch.equal(st["exp_avg"][:rows], prev["exp_avg"])
            assert torch.count_nonzero(st["exp_avg"][rows:]) == 0
            assert float(st["step"]) == float(prev["step"])
            padded += any(p is t for t in grown_tables) and rows < p.shape[0]
    assert padded == len(grown_tables)  # every grown table had its moments padded
    fresh.fit(data, epochs=1, generator=seeded_generator(2))  # and training goes on from there


def raw(path: object) -> dict:
    return read_payload(path)


def test_update_checkpoint_continues_the_parent_adam_state(pipeline, cli, tmp_path) -> None:
    # Without replay, so that users absent from the slice are absent from every batch.
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", tmp_path / "m11.pt", "--replay-ratio", "0")
    assert r.exit_code == 0, r.stderr
    parent, child = raw(pipeline.ckpt[10]), raw(tmp_path / "m11.pt")
    n_users, n_items = len(child["users"]), len(child["items"])
    dense_p, sparse_p = parent["optimizer"]
    dense_c, sparse_c = child["optimizer"]

    # Tables grew, and so did every moment tensor.
    assert n_users > len(parent["users"]) and n_items > len(parent["items"])
    for k, rows in ((0, n_items), (1, n_items)):
        assert dense_c["state"][k]["exp_avg"].shape[0] == rows
        assert dense_c["state"][k]["exp_avg_sq"].shape[0] == rows
    assert sparse_c["state"][0]["exp_avg"].shape == (n_users, 8)

    # The step count went on from the parent's: at least one step per update epoch (users are
    # packed into batches of about batch_size events, so the exact count depends on the shuffle).
    day11 = pl.read_parquet(pipeline.events["day11"]).height
    cfg = child["train_config"]
    added = float(dense_c["state"][0]["step"]) - float(dense_p["state"][0]["step"])
    assert float(dense_p["state"][0]["step"]) >= parent["train_config"]["epochs"] > 0
    assert cfg["update_epochs"] * math.ceil(day11 / cfg["batch_size"]) <= added <= cfg["update_epochs"] * day11
    assert float(sparse_c["state"][0]["step"]) - float(sparse_p["state"][0]["step"]) == added

    # SparseAdam touches only the users of a batch: users absent from the slice keep their
    # moments (and rows) bit for bit, so the state was carried over, not reset.
    slice_users = set(pl.read_parquet(pipeline.events["day11"])["user_id"].to_list())
    untouched = [i for i, u in enumerate(parent["users"]) if i > 0 and u not in slice_users]
    touched = [i for i, u in enumerate(parent["users"]) if u in slice_users]
    assert len(untouched) > 500 and len(touched) > 300
    idx = torch.tensor(untouched)
    for key in ("exp_avg", "exp_avg_sq"):
        old, new = sparse_p["state"][0][key][idx], sparse_c["state"][0][key][idx]
        assert torch.count_nonzero(old) > 0
        assert torch.equal(new, old)
    assert torch.equal(child["weights"]["user_emb"][idx], parent["weights"]["user_emb"][idx])
    t = torch.tensor(touched)
    assert not torch.equal(sparse_c["state"][0]["exp_avg"][t], sparse_p["state"][0]["exp_avg"][t])


def test_sasrec_update_continues_the_parent_adam_state(sasrec_pipeline) -> None:
    parent, child = raw(sasrec_pipeline.ckpt[10]), raw(sasrec_pipeline.ckpt[11])
    (dense_p,), (dense_c,) = parent["optimizer"], child["optimizer"]  # sasrec has no sparse tables
    names = list(child["weights"])
    params = [n for n in names if n != "item_feat"]  # the one buffer
    item_emb = params.index("item_emb")
    assert len(child["items"]) > len(parent["items"])
    for key in ("exp_avg", "exp_avg_sq"):
        old, new = dense_p["state"][item_emb][key], dense_c["state"][item_emb][key]
        assert new.shape == (len(child["items"]), 8) and old.shape == (len(parent["items"]), 8)
    steps = [float(dense_c["state"][k]["step"]) - float(dense_p["state"][k]["step"]) for k in range(len(params))]
    assert len(set(steps)) == 1 and steps[0] >= 1  # every parameter went on from the parent's step count
