"""Update machinery: anchoring, distillation, time decay, lr schedules, replay, stored policies, pop weight."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data.context import Context
from recinc_cli.data.events import TrainData
from recinc_cli.data.sequences import replay_windows
from recinc_cli.models import build_model
from recinc_cli.store.format import read_payload
from recinc_cli.training.early_stop import POP_WEIGHTS
from recinc_cli.training.train import Trainer

DAY_MS = 86_400_000
#: Same seed, fixed epochs (no early stopping), a step large enough to drift.
DRIFT = ("--epochs", "3", "--update-valid-fraction", "0", "--lr", "0.01", "-q")


def update(cli, parent: Path, events: Path, out: Path, *args: str) -> dict:
    r = cli("update", parent, events, "-o", out, *args)
    assert r.exit_code == 0, r.stderr
    return read_payload(out)


def n_events(path: Path) -> int:
    return pl.read_parquet(path).height


# -- anchoring and distillation ----------------------------------------------------------------


def test_anchor_weight_keeps_the_parents_rows_closer(cli, pipeline, tmp_path: Path) -> None:
    parent = read_payload(pipeline.ckpt[10])
    plain = update(cli, pipeline.ckpt[10], pipeline.events["day11"], tmp_path / "plain.pt", *DRIFT)
    anchored = update(
        cli, pipeline.ckpt[10], pipeline.events["day11"], tmp_path / "anchor.pt", *DRIFT, "--anchor-weight", "1"
    )
    assert anchored["train_config"]["anchor_weight"] == 1.0 and plain["train_config"]["anchor_weight"] == 0.0
    n = len(parent["items"])
    for table in ("item_emb", "item_bias"):
        old = parent["weights"][table]

        def drift(raw: dict, table: str = table, old: torch.Tensor = old) -> float:
            return float((raw["weights"][table][:n] - old).norm())

        # Measured: item_emb 0.23 anchored vs 0.88 free.
        assert drift(anchored) < 0.5 * drift(plain), table
        assert drift(anchored) > 0  # it still learns


def known_items_slice(tmp_path: Path, parent: Path, events: Path) -> Path:
    """The events of ``events`` whose user and item the model at ``parent`` knows."""
    raw = read_payload(parent)
    ev = pl.read_parquet(events)
    out = tmp_path / "known.parquet"
    ev.filter(pl.col("user_id").is_in(raw["users"]) & pl.col("item_id").is_in(raw["items"])).write_parquet(out)
    return out


def test_distillation_runs_and_changes_a_sasrec_update(cli, sasrec_pipeline, tmp_path: Path) -> None:
    parent = sasrec_pipeline.ckpt[10]
    events = known_items_slice(tmp_path, parent, sasrec_pipeline.events["day11"])
    plain = update(cli, parent, events, tmp_path / "plain.pt", "-q")
    distilled = update(cli, parent, events, tmp_path / "distill.pt", "--distill-weight", "1", "-q")
    assert distilled["train_config"]["distill_weight"] == 1.0
    assert distilled["lineage"][-1]["events"] == plain["lineage"][-1]["events"] == n_events(events)
    floats = [k for k, w in plain["weights"].items() if w.is_floating_point()]
    changed = [k for k in floats if not torch.equal(plain["weights"][k], distilled["weights"][k])]
    assert "item_emb" in changed
    assert all(torch.isfinite(w).all() for w in distilled["weights"].values() if w.is_floating_point())


def test_mf_distillation_runs_on_known_ids(cli, pipeline, tmp_path: Path) -> None:
    events = known_items_slice(tmp_path, pipeline.ckpt[10], pipeline.events["day11"])
    r = cli("update", pipeline.ckpt[10], events, "-o", tmp_path / "m.pt", "--distill-weight", "1", "-q")
    assert (r.exit_code, r.stderr) == (0, "")


def test_mf_distillation_runs_with_new_users(cli, pipeline, tmp_path: Path) -> None:
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", tmp_path / "m.pt", "--distill-weight", "1")
    assert r.exit_code == 0, r.stderr


def test_sasrec_distillation_runs_with_new_items(cli, sasrec_pipeline, tmp_path: Path) -> None:
    day11 = sasrec_pipeline.events["day11"]
    parent = read_payload(sasrec_pipeline.ckpt[10])
    assert not set(pl.read_parquet(day11)["item_id"]) <= set(parent["items"])  # it has new items
    r = cli("update", sasrec_pipeline.ckpt[10], day11, "-o", tmp_path / "s.pt", "--distill-weight", "1")
    assert r.exit_code == 0, r.stderr


# -- time decay -----------------------------------------------------------------------------------


def test_decayed_weights_halve_per_half_life() -> None:
    d = TrainData(
        np.array([1, 2, 3, 4]),
        np.array([1, 1, 2, 2]),
        np.array([1.0, 2.0, 4.0, 3.0], np.float32),
        np.array([0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS]),
        np.array([1, 1, 2, 1]),
    )
    got = d.decayed(2 * DAY_MS, 86400.0)
    # Ages 2, 1, 0 days; an event after "now" is not boosted.
    assert got.weight.tolist() == pytest.approx([0.25, 1.0, 4.0, 3.0])
    assert got.weight.dtype == np.float32
    assert got.ts_ms is d.ts_ms and got.type_idx is d.type_idx and got.item_idx is d.item_idx
    assert d.weight.tolist() == [1.0, 2.0, 4.0, 3.0]  # the input is untouched
    assert d.decayed(2 * DAY_MS, 0.0) is d
    assert d.decayed(2 * DAY_MS, 7 * 86400.0).weight[0] == pytest.approx(2 ** (-2 / 7))


def test_half_life_changes_the_update_and_is_stored(cli, pipeline, tmp_path: Path) -> None:
    plain = update(cli, pipeline.ckpt[10], pipeline.events["day11"], tmp_path / "plain.pt", *DRIFT)
    decayed = update(cli, pipeline.ckpt[10], pipeline.events["day11"], tmp_path / "hl.pt", *DRIFT, "--half-life", "2h")
    assert decayed["train_config"]["half_life_s"] == 7200.0
    assert not torch.equal(plain["weights"]["item_emb"], decayed["weights"]["item_emb"])
    # Popularity and the reservoir keep the logged weights: only training is decayed.
    assert torch.equal(plain["item_pop"], decayed["item_pop"])
    assert torch.equal(plain["replay_weight"], decayed["replay_weight"])


# -- learning-rate schedules ------------------------------------------------------------------------


def trainer(schedule: str, warmup: float, lr: float = 0.1, batch_size: int = 4096) -> Trainer:
    model = build_model(ModelConfig(name="mf", dim=4), {"user": 9, "item": 5})
    model.reset_parameters("random", torch.Generator().manual_seed(0))
    return Trainer(model, TrainConfig(lr=lr, lr_schedule=schedule, warmup=warmup, batch_size=batch_size))


def test_lr_factor_warms_up_then_decays() -> None:
    total = 100
    lin = [trainer("linear", 0.1)._lr_factor(s, total) for s in range(total)]
    cos = [trainer("cosine", 0.1)._lr_factor(s, total) for s in range(total)]
    const = [trainer("constant", 0.1)._lr_factor(s, total) for s in range(total)]
    for f in (lin, cos, const):
        assert f[:10] == pytest.approx([(s + 1) / 11 for s in range(10)])  # linear warm-up
        assert f[10] == 1.0
        assert all(0.1 <= x <= 1.0 for x in f[10:])  # after warm-up, never below the floor
    assert const[10:] == [1.0] * 90
    assert lin[55] == pytest.approx(0.5) and cos[55] == pytest.approx(0.5)
    assert lin[37] == pytest.approx(0.7) and cos[37] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))
    assert lin[-1] == cos[-1] == 0.1  # the floor
    for f in (lin, cos):
        assert all(b <= a for a, b in itertools.pairwise(f[10:]))
    # Cosine keeps a larger step than linear early on, a smaller one late.
    assert cos[20] > lin[20] and cos[80] < lin[80]
    assert [trainer("linear", 0.0)._lr_factor(s, 4) for s in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_fit_applies_the_schedule_across_planned_calls() -> None:
    # 8 users with one event each, batches of one event: 8 steps per epoch.
    data = TrainData(np.arange(1, 9), np.array([1, 2, 3, 4, 1, 2, 3, 4]), np.ones(8, np.float32), np.arange(8))
    t = trainer("linear", 0.25, lr=0.1, batch_size=1)
    lrs: list[float] = []

    def record(*_: object) -> None:
        lrs.append(t.optimizers[0].param_groups[0]["lr"])

    t.plan(16)  # two fit calls of one epoch share one schedule
    gen = torch.Generator().manual_seed(0)
    t.fit(data, 1, gen, record)
    t.fit(data, 1, gen, record)
    warm = [0.02, 0.04, 0.06, 0.08]  # (s + 1) / 5 of lr 0.1
    decay = [0.1 * max(1 - (s - 4) / 12, 0.1) for s in range(4, 16)]
    assert lrs == pytest.approx(warm + decay)
    assert all(g["lr"] == lrs[-1] for o in t.optimizers for g in o.param_groups)  # SparseAdam too
    # Constant without warm-up leaves the learning rate alone.
    c = trainer("constant", 0.0, lr=0.1, batch_size=1)
    c.fit(data, 1, gen, lambda *_: lrs.append(c.optimizers[0].param_groups[0]["lr"]))
    assert lrs[-8:] == [0.1] * 8


def test_update_stores_the_lr_schedule(cli, pipeline, tmp_path: Path) -> None:
    flags = ("--lr-schedule", "cosine", "--warmup", "0.2", "-q")
    raw = update(cli, pipeline.ckpt[10], pipeline.events["day11"], tmp_path / "m.pt", *flags)
    assert (raw["train_config"]["lr_schedule"], raw["train_config"]["warmup"]) == ("cosine", 0.2)


# -- replay ---------------------------------------------------------------------------------------------


def test_replay_ratio_mixes_past_events_into_mf_and_sasrec_updates(cli, pipeline, sasrec_pipeline, tmp_path) -> None:
    n = n_events(pipeline.events["day11"])
    for name, parent in (("mf", pipeline.ckpt[10]), ("sasrec", sasrec_pipeline.ckpt[10])):
        raw = update(cli, parent, pipeline.events["day11"], tmp_path / f"{name}.pt", "--replay-ratio", "0.5", "-q")
        entry = raw["lineage"][-1]
        assert entry["replayed"] == round(0.5 * n), name  # the reservoir holds 19,157 events
        assert raw["train_config"]["replay_ratio"] == 0.5
    day11 = pl.read_parquet(pipeline.events["day11"]).height
    assert read_payload(pipeline.ckpt[11])["lineage"][-1]["replayed"] == round(0.5 * day11)  # default


def test_replay_windows_target_exactly_the_replayed_events_in_context() -> None:
    # User 1 logged items 5..9 at t = 1..5; the context keeps the newest four (6..9).
    # User 2 logged 3, 4 at t = 10, 11; user 3 logged 2 at t = 12 and is not replayed.
    user = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    item = np.array([5, 6, 7, 8, 9, 3, 4, 2])
    ts = np.array([1, 2, 3, 4, 5, 10, 11, 12])
    prior = Context.empty(4).extend(user, item, np.ones(8, np.int64), ts, n_users=4, max_len=4)
    replay = TrainData(
        np.array([1, 1, 1, 2, 2, 7]),
        np.array([5, 7, 9, 3, 4, 1]),
        np.array([9.0, 2.0, 1.5, 8.0, 3.0, 7.0], np.float32),
        np.array([1, 3, 5, 10, 11, 1]),
    )
    # Skipped: (1, 5) fell out of the context, (2, 3) is user 2's first event (nothing before
    # it), user 7 has no context.
    win = replay_windows(prior, replay, max_len=4)
    rows, cols = torch.nonzero(win.weight > 0, as_tuple=True)
    got = sorted(
        (int(win.targets[r, c]), float(win.weight[r, c]), int(win.items[r, c])) for r, c in zip(rows, cols, strict=True)
    )
    # (target, its weight, the input just before it: the event that really preceded it)
    assert got == [(4, 3.0, 3), (7, 2.0, 6), (9, 1.5, 8)]
    assert len(win) == 2  # one window per replayed user; user 3's has no target and is dropped
    assert bool((win.weight.sum(1) > 0).all())
    # Inputs are each user's real sequence, left-padded.
    assert sorted(win.items[:, -1].tolist()) == [3, 8] and sorted(win.lengths.tolist()) == [1, 3]


# -- stored policies and the popularity weight -------------------------------------------------------


def test_policies_given_to_update_become_defaults_but_run_options_do_not(cli, pipeline, tmp_path: Path) -> None:
    parent = read_payload(pipeline.ckpt[10])
    a = update(
        cli,
        pipeline.ckpt[10],
        pipeline.events["day11"],
        tmp_path / "a.pt",
        *("--replay-ratio", "0.5", "--anchor-weight", "0.5", "--half-life", "7d", "--pop-weight", "0"),
        *("--lr-schedule", "linear", "--warmup", "0.1", "--expire-after", "30d", "--late", "drop"),
        *("--epochs", "2", "--lr", "0.005", "--batch-size", "512", "-q"),
    )
    policies = {
        "replay_ratio": 0.5,
        "anchor_weight": 0.5,
        "half_life_s": 7 * 86400.0,
        "pop_weight": 0.0,
        "lr_schedule": "linear",
        "warmup": 0.1,
        "expire_after_s": 30 * 86400.0,
        "late": "drop",
    }
    assert a["train_config"] == {**parent["train_config"], **policies}
    assert (a["train_config"]["update_epochs"], a["train_config"]["batch_size"]) == (1, 4096)  # not --epochs 2
    entry = a["lineage"][-1]
    assert entry["lr"] == 0.005 and 1 <= entry["epochs"] <= 2
    assert entry["replayed"] == round(0.5 * n_events(pipeline.events["day11"]))
    assert entry["pop_weight"] == a["pop_weight"] == 0.0
    # The next update, with no options, runs with the stored policies and the stored run settings.
    b = update(cli, tmp_path / "a.pt", pipeline.events["day12"], tmp_path / "b.pt", "-q")
    assert b["train_config"] == a["train_config"]
    entry = b["lineage"][-1]
    assert entry["replayed"] == round(0.5 * n_events(pipeline.events["day12"]))
    assert (entry["lr"], entry["epochs"], entry["pop_weight"]) == (parent["train_config"]["lr"], 1, 0.0)
    # auto: the weight is chosen again on the newest events.
    c = update(cli, tmp_path / "b.pt", pipeline.events["day13"], tmp_path / "c.pt", "--pop-weight", "auto", "-q")
    assert c["train_config"]["pop_weight"] is None
    assert c["pop_weight"] in POP_WEIGHTS and c["lineage"][-1]["pop_weight"] == c["pop_weight"]


def test_auto_pop_weights_are_candidates_and_recorded(pipeline) -> None:
    for d in (10, 11, 12, 13):
        raw = read_payload(pipeline.ckpt[d])
        assert raw["train_config"]["pop_weight"] is None
        assert raw["pop_weight"] in POP_WEIGHTS and raw["lineage"][-1]["pop_weight"] == raw["pop_weight"]


def test_pop_weight_zero_recommends_by_model_scores_alone(cli, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    raw = update(cli, pipeline.ckpt[10], pipeline.events["day11"], out, "--pop-weight", "0", "-q")
    assert raw["pop_weight"] == 0.0 and raw["train_config"]["pop_weight"] == 0.0
    users = raw["users"][1:6]
    r = cli("recommend", out, "--users", ",".join(users), "-k", "10", "-q")
    assert r.exit_code == 0, r.stderr
    df = pl.read_csv(r.stdout.encode(), schema_overrides={"user_id": pl.String, "item_id": pl.String})
    w = raw["weights"]
    for user in users:
        u = raw["users"].index(user)
        scores = w["user_emb"][u] @ w["item_emb"].T + w["item_bias"]
        scores[0] = float("-inf")
        lo, hi = int(raw["seen_indptr"][u]), int(raw["seen_indptr"][u + 1])
        scores[raw["seen_indices"][lo:hi].long()] = float("-inf")
        vals, idx = torch.topk(scores, 10)
        rows = df.filter(pl.col("user_id") == user)
        assert rows["item_id"].to_list() == [raw["items"][j] for j in idx.tolist()], user
        assert rows["score"].to_list() == pytest.approx(vals.tolist(), rel=1e-5, abs=1e-6)
    # The pipeline's auto weight is not 0 here, so the two rankings are not the same thing.
    assert read_payload(pipeline.ckpt[11])["pop_weight"] > 0


def test_distillation_skips_a_batch_of_users_the_parent_never_had() -> None:
    from recinc_cli.config import ModelConfig, TrainConfig
    from recinc_cli.data.events import TrainData
    from recinc_cli.models import build_model
    from recinc_cli.training.train import Trainer

    gen = torch.Generator().manual_seed(0)
    parent = build_model(ModelConfig(name="mf", dim=4), {"user": 3, "item": 5})
    parent.reset_parameters("random", gen)
    model = build_model(ModelConfig(name="mf", dim=4), {"user": 6, "item": 5})
    model.reset_parameters("random", gen)
    # Users 4 and 5 are new: no row of the batch can be distilled; the loss must stay finite.
    data = TrainData(np.array([4, 5, 4]), np.array([1, 2, 3]), np.ones(3, np.float32), np.arange(3))
    losses = Trainer(model, TrainConfig(distill_weight=1.0), teacher=parent).fit(data, 2, gen)
    assert all(np.isfinite(losses))
