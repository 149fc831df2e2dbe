"""The closed-form ``ease`` model: its co-occurrence matrix, incremental equivalence, growth,
checkpoints and the CLI pipeline."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.seen import SeenItems
from recinc_cli.errors import UsageError
from recinc_cli.models import build_model
from recinc_cli.models import ease as ease_module
from recinc_cli.models.ease import EASE
from recinc_cli.serving.recommend import model_scorer, top_k
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.store.format import load_bundle

CFG = ModelConfig(name="ease", max_len=50)


def make(n_users: int, n_items: int, cfg: ModelConfig = CFG) -> EASE:
    m = build_model(cfg, {"user": n_users, "item": n_items})
    assert isinstance(m, EASE)
    return m


def groups(n_groups: int = 6, size: int = 4, users_per_group: int = 5, seed: int = 0) -> TrainData:
    """Users who each consume one whole group of items (random order); groups are disjoint."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    u = 1
    for g in range(n_groups):
        for _ in range(users_per_group):
            for i in rng.permutation(size):
                users.append(u)
                items.append(1 + g * size + int(i))
            u += 1
    n = len(users)
    return TrainData(np.array(users), np.array(items), np.ones(n, np.float32), np.arange(n, dtype=np.int64))


def context_of(data: TrainData, n_users: int, max_len: int = 50) -> Context:
    return Context.empty(n_users).extend(data.user_idx, data.item_idx, data.types(), data.ts_ms, n_users, max_len)


def test_gram_counts_each_new_pair_once_and_ignores_reconsumption() -> None:
    m = make(3, 5)
    # user 1: a, b, a again (no new pair), c; user 2: b, c
    d = TrainData(np.array([1, 1, 1, 1, 2, 2]), np.array([1, 2, 1, 3, 2, 3]), np.ones(6, np.float32), np.arange(6))
    m.absorb(d, Context.empty(3), half_life_events=0)
    g = m.gram[1:4, 1:4]
    assert g.tolist() == [[1.0, 1.0, 1.0], [1.0, 2.0, 2.0], [1.0, 2.0, 2.0]]
    assert torch.equal(m.gram, m.gram.T)


def test_absorbing_slice_by_slice_equals_absorbing_everything_at_once() -> None:
    """The incremental update and the full retrain build the same decayed matrix."""
    data = groups(seed=1)
    n_users, n_items = int(data.user_idx.max()) + 1, int(data.item_idx.max()) + 1
    whole = make(n_users, n_items)
    whole.absorb(data, Context.empty(n_users), half_life_events=8)
    parts = make(n_users, n_items)
    ctx = Context.empty(n_users)
    cut = [0, 12, 50, 52, len(data)]  # on the chunk edges (a quarter half-life: 2 events)
    for lo, hi in itertools.pairwise(cut):
        part = data.subset(np.arange(lo, hi))
        parts.absorb(part, ctx, half_life_events=8)
        ctx = ctx.extend(part.user_idx, part.item_idx, part.types(), part.ts_ms, n_users, 50)
    assert len(data) % 2 == 0 and whole.gram.sum() > 0
    assert torch.allclose(whole.gram, parts.gram, rtol=1e-5, atol=1e-6)


def test_decay_halves_old_cooccurrences_every_half_life() -> None:
    m = make(4, 4)
    first = TrainData(np.array([1, 1]), np.array([1, 2]), np.ones(2, np.float32), np.arange(2))
    m.absorb(first, Context.empty(4), half_life_events=4)
    before = float(m.gram[1, 2])
    later = TrainData(np.array([2, 2, 3, 3]), np.array([3, 3, 3, 3]), np.ones(4, np.float32), np.arange(2, 6))
    m.absorb(later, context_of(first, 4), half_life_events=4)
    assert float(m.gram[1, 2]) == pytest.approx(before / 2)


def test_recommends_the_missing_item_of_a_users_group() -> None:
    data = groups()
    n_users, n_items = int(data.user_idx.max()) + 1, int(data.item_idx.max()) + 1
    m = make(n_users, n_items)
    m.absorb(data, Context.empty(n_users), half_life_events=0)
    # a new user with three items of group 2 (items 9..12) is missing item 12
    ctx = context_of(TrainData(np.array([1, 1, 1]), np.array([9, 10, 11]), np.ones(3, np.float32), np.arange(3)), 2)
    scores = model_scorer(m.eval(), ctx)(torch.tensor([1]))
    seen = SeenItems.empty(2).merge(np.array([1, 1, 1]), np.array([9, 10, 11]), 2)
    top, _ = top_k(lambda u, out=None: scores, np.array([1]), seen, 1)
    assert top[0, 0] == 12


def test_grow_pads_the_matrix_and_keeps_old_entries() -> None:
    data = groups(n_groups=2)
    m = make(int(data.user_idx.max()) + 1, 9)
    m.absorb(data, Context.empty(m.n_users), half_life_events=0)
    old = m.gram.clone()
    m.grow({"item": 12, "user": m.n_users + 2}, "random", torch.Generator())
    assert m.gram.shape == (12, 12) and torch.equal(m.gram[:9, :9], old) and not m.gram[9:].any()
    with pytest.raises(ValueError, match="cannot shrink"):
        m.grow({"item": 5}, "random", torch.Generator())


def test_a_catalogue_above_the_limit_is_refused_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ease_module, "MAX_ITEMS", 10)
    with pytest.raises(
        UsageError, match=r"ease handles catalogues of up to 10 items \(this one has 11\); use --model mf"
    ):
        make(3, 12)
    m = make(3, 11)
    with pytest.raises(UsageError, match="up to 10 items"):
        m.grow({"item": 13}, "random", torch.Generator())


def test_ridge_penalty_is_relative_and_must_be_positive() -> None:
    with pytest.raises(UsageError, match="--ease-l2 must be positive"):
        ModelConfig(name="ease", ease_l2=0)
    data = groups()
    n_users, n_items = int(data.user_idx.max()) + 1, int(data.item_idx.max()) + 1
    small, big = make(n_users, n_items, ModelConfig(name="ease", ease_l2=0.1)), make(n_users, n_items)
    for m in (small, big):
        m.absorb(data, Context.empty(n_users), half_life_events=0)
    # more regularisation shrinks the weights
    assert float(big.weights().abs().sum()) < float(small.weights().abs().sum())
    assert not big.weights().diagonal().any()


# -- through the API and the CLI ---------------------------------------------------------------


def test_init_update_recommend_evaluate_with_ease(pipeline, tmp_path: Path, cli) -> None:
    m10, m11 = tmp_path / "m10.pt", tmp_path / "m11.pt"
    info = api.init(pipeline.events["base"], m10, ModelConfig(name="ease"), TrainConfig.for_model("ease"))
    assert info["epochs"] == 1 and info["pop_weight"] in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 1000.0)
    raw = torch.load(m10, weights_only=True)
    assert raw["model_config"]["name"] == "ease" and raw["optimizer"] == []
    r = api.update(m10, pipeline.events["day11"], m11)
    assert not r["skipped"] and r["events"] > 0
    before, after = load_bundle(m10), load_bundle(m11)
    assert len(after.items) >= len(before.items)
    n = len(before.items)
    # the update added co-occurrences: the old block changed, and nothing was renumbered
    assert not torch.equal(after.model.gram[:n, :n], before.model.gram)
    assert after.items.ids[:n] == before.items.ids
    # scores survive the checkpoint round trip (weights are re-solved from the stored matrix)
    users = torch.arange(1, 20)
    s1 = bundle_scorer(after)(users)
    s2 = bundle_scorer(load_bundle(m11))(users)
    assert torch.allclose(s1, s2, atol=1e-5)
    result = api.evaluate(m11, pipeline.events["day12"], k=10)
    assert result["model"]["ndcg"] > result["popular"]["ndcg"], result
    rec = pl.read_csv(cli_recommend(cli, m11, tmp_path))
    seen = pl.read_parquet(pipeline.events["base"]).vstack(pl.read_parquet(pipeline.events["day11"]))
    pairs = set(zip(seen["user_id"].cast(str), seen["item_id"].cast(str), strict=True))
    assert rec.height > 0
    assert not any((str(u), str(i)) in pairs for u, i in zip(rec["user_id"], rec["item_id"], strict=True))


def cli_recommend(cli, ckpt: Path, tmp_path: Path) -> Path:
    out = tmp_path / "rec.csv"
    r = cli("recommend", ckpt, "-o", out, "-k", "5", "--users", "u00024,u00218,u00072")
    assert r.exit_code == 0, r.stderr
    return out


def test_pop_prior_is_refused_for_models_that_do_not_train_with_it(pipeline, tmp_path: Path, expect_error, cli) -> None:
    r = cli("init", pipeline.events["base"], "-o", tmp_path / "m.pt", "--model", "ease", "--pop-prior", "1")
    expect_error(r, 2, "--pop-prior applies to mf, sasrec only; ease trains without it (use 0)")
    assert not (tmp_path / "m.pt").exists()


def test_ease_through_the_cli(pipeline, tmp_path: Path, cli) -> None:
    m0, m1 = tmp_path / "e0.pt", tmp_path / "e1.pt"
    r = cli("init", pipeline.events["base"], "-o", m0, "--model", "ease", "--ease-l2", "10")
    assert r.exit_code == 0, r.stderr
    assert "co-occurrences counted in" in r.stderr and ", closed form, pop weight" in r.stderr
    assert load_bundle(m0).model_cfg.ease_l2 == 10
    r = cli("update", m0, pipeline.events["day11"], "-o", m1)
    assert r.exit_code == 0, r.stderr
    assert "counted in" in r.stderr and "closed form" in r.stderr
    r = cli("evaluate", m1, pipeline.events["day12"], "--json")
    assert r.exit_code == 0, r.stderr
