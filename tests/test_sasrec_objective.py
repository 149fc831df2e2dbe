"""sasrec trained for what comes next in time: the future-window objective and time inputs.

Each test builds tiny sequences in code where the right answer is known, trains the real
model for a few seconds and checks it learned what only the new part can teach it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SASREC_ARCH, SMALL_TRAIN, run_cli

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.models import build_model
from recinc_cli.models.sasrec import TIME_BUCKETS, SASRec
from recinc_cli.serving.recommend import model_scorer
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.store.checksum import payload_digest
from recinc_cli.store.format import load_bundle
from recinc_cli.training.train import Trainer, seeded_generator

ARCH = ModelConfig(name="sasrec", dim=16, max_len=8, blocks=1, heads=1, dropout=0.0)
TIMED = ModelConfig(**{**ARCH.to_dict(), "time_inputs": True})
MINUTE, DAY = 60_000, 86_400_000


def train(cfg: ModelConfig, data: TrainData, epochs: int, **train: object) -> SASRec:
    model = build_model(cfg, {"user": int(data.user_idx.max()) + 1, "item": 7, "type": 2})
    gen = seeded_generator(0)
    model.reset_parameters("random", gen)
    Trainer(model, TrainConfig(lr=0.02, batch_size=256, l2=0.0, **train)).fit(data, epochs, gen)  # type: ignore[arg-type]
    return model.eval()  # type: ignore[return-value]


def test_future_window_teaches_the_items_after_the_next() -> None:
    # Every user walks the chain 1 2 3 4 5 6 once: the item two steps ahead is as certain
    # as the next one, but a next-item loss never asks for it.
    users = np.repeat(np.arange(1, 41), 6)
    items = np.tile(np.arange(1, 7), 40)
    data = TrainData(users, items, np.ones(len(users), np.float32), np.arange(len(users)) * MINUTE)
    zero = torch.zeros(1, 1, dtype=torch.int64)
    after_1 = {"seq_item": torch.tensor([[1]]), "seq_type": zero, "seq_ts": zero}
    probs = {}
    for window in (1, 4):
        model = train(ARCH, data, 40, future_window=window)
        with torch.no_grad():
            probs[window] = torch.softmax(model.score(after_1)[0], 0)  # column = item
    # Next item only: after item 1 the mass is on item 2, item 3 gets next to nothing.
    assert float(probs[1][3]) < 0.02 and float(probs[1][2]) > 0.9
    # Future window of 4 (items 2..5 follow item 1): 3, 4 and 5 get real mass, 6 next to none.
    assert min(float(probs[4][j]) for j in (3, 4, 5)) > 0.05 > 0.01 > float(probs[4][6])
    assert float(probs[4][2]) == pytest.approx(float(probs[4].max()))


def test_the_sampled_softmax_path_trains_a_future_window_too() -> None:
    # Catalogues above --full-softmax-max-items train with sampled negatives; the window's
    # targets share them. On the chain, the sampled model learns the window as well.
    users = np.repeat(np.arange(1, 41), 6)
    items = np.tile(np.arange(1, 7), 40)
    data = TrainData(users, items, np.ones(len(users), np.float32), np.arange(len(users)) * MINUTE)
    zero = torch.zeros(1, 1, dtype=torch.int64)
    probs = {}
    for window in (1, 4):
        model = train(ARCH, data, 40, future_window=window, full_softmax_max_items=2, n_negatives=16)
        with torch.no_grad():
            probs[window] = torch.softmax(model.score({"seq_item": torch.tensor([[1]]), "seq_type": zero})[0], 0)
        assert torch.isfinite(probs[window]).all()  # padding targets once made the loss NaN here
    # After item 1: items 3-5 get mass only with the window; item 6 (outside it) gets none.
    assert max(float(probs[1][j]) for j in (3, 4, 5)) < 0.01
    assert min(float(probs[4][j]) for j in (3, 4, 5)) > 0.02 > 0.01 > float(probs[4][6])


def gap_data() -> TrainData:
    """Users take item 1 twice; the item after it is 2 when the second 1 came within a minute,
    3 when it came 2-10 days later. Only the gap tells them apart."""
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(1, 81):
        slow = u % 2 == 0
        t0 = u * 100 * DAY
        second = t0 + int(rng.uniform(2 * DAY, 10 * DAY) if slow else rng.uniform(1_000, MINUTE))
        users += [u, u, u]
        items += [1, 1, 3 if slow else 2]
        ts += [t0, second, second + MINUTE]
    return TrainData(np.array(users), np.array(items), np.ones(len(users), np.float32), np.array(ts, np.int64))


def gap_scores(model: SASRec) -> torch.Tensor:
    """Scores of items 2 and 3 for a fast (row 0) and a slow (row 1) repeat of item 1, through
    the serving path: a stored context with times and :func:`model_scorer`."""
    t0 = 10**12
    ctx = Context.empty(3).extend(
        np.array([1, 1, 2, 2]),
        np.array([1, 1, 1, 1]),
        np.zeros(4, np.int64),
        np.array([t0, t0 + 10_000, t0, t0 + 5 * DAY]),
        n_users=3,
        max_len=8,
    )
    with torch.no_grad():
        return model_scorer(model, ctx)(torch.tensor([1, 2]))[:, 2:4]


def test_time_inputs_learn_what_the_gap_since_the_last_event_says() -> None:
    with_time = train(TIMED, gap_data(), 60)
    s = gap_scores(with_time)
    assert float(s[0, 0] - s[0, 1]) > 1.0  # fast repeat: item 2
    assert float(s[1, 1] - s[1, 0]) > 1.0  # slow repeat: item 3
    blind = train(ARCH, gap_data(), 60)
    s = gap_scores(blind)
    assert torch.allclose(s[0], s[1])  # without times the two users look the same


@pytest.fixture(scope="module")
def timed_lineage(pipeline, tmp_path_factory) -> list[Path]:
    """``init --time-inputs --future-window 4`` on the sample base, then one update."""
    d = tmp_path_factory.mktemp("timed")
    paths = [d / "t10.pt", d / "t11.pt"]
    r = run_cli(
        "init",
        pipeline.events["base"],
        "-o",
        paths[0],
        *SASREC_ARCH,
        *SMALL_TRAIN,
        "--time-inputs",
        "--future-window",
        "4",
    )
    assert r.exit_code == 0, r.stderr
    r = run_cli("update", paths[0], pipeline.events["day11"], "-o", paths[1])
    assert r.exit_code == 0, r.stderr
    return paths


def test_time_inputs_and_future_window_are_stored_and_survive_a_round_trip(timed_lineage, tmp_path) -> None:
    raw = torch.load(timed_lineage[1], weights_only=True)
    assert raw["model_config"]["time_inputs"] is True
    assert raw["train_config"]["future_window"] == 4  # the lineage's default for later updates
    assert raw["weights"]["gap_emb"].shape == (TIME_BUCKETS, 8)
    assert raw["weights"]["blocks.0.age_bias"].shape == (2, TIME_BUCKETS)  # one row per head
    assert bool(raw["weights"]["blocks.0.age_bias"].abs().sum() > 0)  # trained, not left at 0
    b = load_bundle(timed_lineage[1])
    assert b.model.reads_times
    users = torch.arange(1, len(b.users))
    with torch.no_grad():
        first = bundle_scorer(b)(users)
        again = bundle_scorer(load_bundle(timed_lineage[1]))(users)
    assert torch.equal(first, again)
    # The stored times reach the model: the same contexts with every time zeroed score otherwise.
    items, types = b.context.padded(users)
    q = {"user": users, "seq_item": items, "seq_type": types}
    with torch.no_grad():
        timeless = b.model.score({**q, "seq_ts": torch.zeros_like(items)})
        timed = b.model.score({**q, "seq_ts": b.context.padded_times(users, items.shape[1])})
    assert not torch.allclose(timeless, timed)


def test_a_sasrec_checkpoint_from_before_time_inputs_loads_and_scores_as_written(timed_lineage, tmp_path) -> None:
    raw = torch.load(timed_lineage[0], weights_only=True)
    old = dict(raw)
    old.pop("checksum")
    old["model_config"] = {k: v for k, v in raw["model_config"].items() if k != "time_inputs"}
    old["weights"] = {k: v for k, v in raw["weights"].items() if k != "gap_emb" and "age_bias" not in k}
    old["checksum"] = payload_digest(old)
    torch.save(old, tmp_path / "old.pt")
    b = load_bundle(tmp_path / "old.pt")
    assert not b.model_cfg.time_inputs and not b.model.reads_times
    assert not any("age_bias" in k or k == "gap_emb" for k in b.model.state_dict())
    users = torch.arange(1, len(b.users))
    with torch.no_grad():
        scores = bundle_scorer(b)(users)
    assert scores.shape == (len(users), len(b.items)) and torch.isfinite(scores[:, 1:]).all()
