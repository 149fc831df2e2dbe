"""Training against the popularity prior (``--pop-prior``): the snapshots are the bundle's own
event-clock popularity, and a model trained with them leaves popularity to the prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.events import TrainData
from recinc_cli.data.pop_prior import PopPrior, PriorSource
from recinc_cli.data.popularity import PopClock, decayed_popularity
from recinc_cli.models import build_model
from recinc_cli.store.format import load_bundle
from recinc_cli.training.train import Trainer, seeded_generator


def skewed(n_users: int = 60, n_items: int = 12, seed: int = 0) -> TrainData:
    """Every user draws 20 events from the same Zipf popularity: item 1 is the most popular,
    and nothing is personal."""
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, n_items)
    items = rng.choice(np.arange(1, n_items), size=(n_users, 20), p=p / p.sum()).ravel()
    users = np.repeat(np.arange(1, n_users + 1), 20)
    order = rng.permutation(len(users))  # interleaved in time
    n = len(users)
    return TrainData(users[order], items[order], np.ones(n, np.float32), np.arange(n, dtype=np.int64))


def test_snapshots_are_the_event_clock_popularity_before_each_chunk() -> None:
    data = skewed()
    start = torch.rand(12) * 5
    p = PopPrior.of(start, PopClock(0, 30.0, events=True), data, weight=2.0, n_items=12, max_snapshots=9)
    chunk = -(-len(data) // 9)
    assert p.snap.tolist() == (np.arange(len(data)) // chunk).tolist() and len(p.log_pop) == 9
    for s in range(9):
        before = data.subset(np.arange(len(data)) < s * chunk)
        clock = np.arange(1, len(before) + 1)  # the bundle's event clock (fold), in ms units
        pop, _ = decayed_popularity(start, 0, before.item_idx, before.weight, clock, 12, 30.0 / 1000)
        assert torch.allclose(p.log_pop[s], 2.0 * torch.log1p(pop), atol=1e-5), s


def test_replayed_events_read_the_first_snapshot() -> None:
    p = PopPrior.of(torch.zeros(12), PopClock(0, 30.0, events=True), skewed(), 1.0, 12)
    assert p.extended(3).snap[-3:].tolist() == [0, 0, 0] and len(p.extended(3).snap) == len(p.snap) + 3


def test_prior_source_caches_per_data_object() -> None:
    source = PriorSource(torch.zeros(12), PopClock(0, 30.0, events=True), 1.0, 12)
    data = skewed()
    assert source(data) is source(data)
    assert source(skewed(seed=1)) is not source(data)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_model_trained_against_the_prior_leaves_popularity_to_it(sampled: bool) -> None:
    """Without the prior the item bias learns the Zipf popularity; with it, far less of it."""
    data = skewed()
    gaps = []
    for weight in (0.0, 1.0):
        cfg = TrainConfig(
            lr=0.05, batch_size=4096, l2=0.0, full_softmax_max_items=5 if sampled else 50_000, n_negatives=8
        )
        m = build_model(ModelConfig(name="mf", dim=4), {"user": 61, "item": 12})
        gen = seeded_generator(0)
        m.reset_parameters("random", gen)
        prior = PriorSource(torch.zeros(12), PopClock(0, 1e9, events=True), weight, 12) if weight else None  # no decay
        Trainer(m, cfg, pop_prior=prior).fit(data, epochs=60, generator=gen)
        bias = m.item_bias.detach()
        gaps.append(float(bias[1] - bias[-1]))  # most vs least popular (log 11 = 2.4 apart)
    assert gaps[0] > 1.0, gaps
    assert gaps[1] < 0.5 * gaps[0], gaps


def test_mf_defaults_to_the_prior_and_update_stores_a_new_weight(pipeline, tmp_path: Path) -> None:
    m10, m11 = tmp_path / "m10.pt", tmp_path / "m11.pt"
    cfg = TrainConfig.for_model("mf", epochs=1, update_epochs=1, batch_size=4096)
    assert cfg.pop_prior == 1.0 and TrainConfig.for_model("sasrec").pop_prior == 1.0
    api.init(pipeline.events["base"], m10, ModelConfig(name="mf", dim=4), cfg)
    assert load_bundle(m10).train_cfg.pop_prior == 1.0
    api.update(m10, pipeline.events["day11"], m11, pop_prior=2.0)
    assert load_bundle(m11).train_cfg.pop_prior == 2.0
    assert not hasattr(load_bundle(m11).model, "train_prior")  # a fit's prior is not part of the model


def test_sasrec_windows_know_which_event_each_target_is() -> None:
    from recinc_cli.data.context import Context
    from recinc_cli.data.sequences import build_windows

    data = skewed(n_users=5)
    prior = Context.empty(6).extend(
        np.array([1, 1, 2]), np.array([3, 4, 5]), np.zeros(3, np.int64), np.array([-3, -2, -1]), 6, 10
    )
    win = build_windows(prior, data, max_len=7)
    has = win.target_event >= 0
    assert torch.equal(has, win.weight > 0) and int(has.sum()) == len(data) - 3  # users 3-5 lose their first
    ev = win.target_event[has].numpy()
    assert torch.equal(win.targets[has], torch.from_numpy(data.item_idx[ev]))
    assert len(np.unique(ev)) == len(ev)  # each event is a target once


@pytest.mark.parametrize("sampled", [False, True])
def test_sasrec_trained_against_the_prior_leaves_popularity_to_it(sampled: bool) -> None:
    """As for mf: on a log with nothing personal, sasrec's scores learn the Zipf popularity
    without the prior, and far less of it with it."""
    from recinc_cli.data.context import Context

    data = skewed(n_users=40)
    seq = torch.from_numpy(data.item_idx[:40].reshape(8, 5))
    gaps = []
    for weight in (0.0, 1.0):
        cfg = TrainConfig.for_model(
            "sasrec", lr=0.01, batch_size=4096, full_softmax_max_items=5 if sampled else 50_000, n_negatives=8
        )
        m = build_model(ModelConfig(name="sasrec", dim=8, max_len=10, dropout=0.0), {"user": 41, "item": 12})
        gen = seeded_generator(0)
        m.reset_parameters("random", gen)
        prior = PriorSource(torch.zeros(12), PopClock(0, 1e9, events=True), weight, 12) if weight else None
        Trainer(m, cfg, pop_prior=prior).fit(data, epochs=40, generator=gen, prior=Context.empty(41))
        m.eval()
        with torch.no_grad():
            s = m.score({"user": torch.zeros(8, dtype=torch.int64), "seq_item": seq, "seq_type": torch.zeros_like(seq)})
        gaps.append(float((s[:, 1] - s[:, -1]).mean()))
    assert gaps[0] > 1.0, gaps
    assert gaps[1] < 0.5 * gaps[0], gaps
