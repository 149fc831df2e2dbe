"""--expire-after / --prune: items silent for too long are never recommended; pruning drops their state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import torch
from synthetic import DAY_MS, TINY, ids, random_rows, write_events

from recinc_cli.store.format import read_payload

USERS, ITEMS = ids("u", 15), ids("i", 10)
OLD_USERS, NEW_USERS = USERS[:10], USERS[10:]
GONE = {"gone1", "gone2"}
N_ITEMS = len(ITEMS) + len(GONE)


@dataclass
class Models:
    dir: Path
    expiring: Path  # init --expire-after 10d
    control: Path  # same, no expiry
    pruned: Path  # expiring + update --prune with a slice without the gone items
    back: Path  # pruned + update with a slice where gone1 (and a new item) reappear
    test: Path  # a slice in which NEW_USERS view gone1 (new to them)


def recs(cli, ckpt: Path, *args: str) -> pl.DataFrame:
    r = cli("recommend", ckpt, *args, "-q")
    assert r.exit_code == 0, r.stderr
    return pl.read_csv(r.stdout.encode(), schema_overrides={"user_id": pl.String, "item_id": pl.String})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    from conftest import run_cli

    d = tmp_path_factory.mktemp("expiry")
    base = (
        random_rows(OLD_USERS, ITEMS, 200, 0, 20, seed=1)
        # The gone items are the most popular of all, but only in the first three days.
        + random_rows(OLD_USERS, sorted(GONE), 120, 0, 3, seed=2)
        + random_rows(NEW_USERS, ITEMS, 40, 5, 20, seed=3)  # these users never saw a gone item
    )
    m = Models(
        d,
        d / "exp.pt",
        d / "ctl.pt",
        d / "pruned.pt",
        d / "back.pt",
        write_events(d / "test.parquet", [(u, "gone1", 20.5) for u in NEW_USERS]),
    )
    files = {
        "base": write_events(d / "base.parquet", base),
        "s1": write_events(d / "s1.parquet", random_rows(OLD_USERS, ITEMS, 40, 20, 21, seed=4)),
        "s2": write_events(
            d / "s2.parquet",
            [*random_rows(OLD_USERS, ITEMS, 40, 21, 22, seed=5), ("u010", "gone1", 21.5), ("u011", "fresh", 21.6)],
        ),
    }
    steps = [
        ("init", files["base"], "-o", m.expiring, *TINY, "--expire-after", "10d", "--pop-half-life", "14d"),
        (
            "init",
            files["base"],
            "-o",
            m.control,
            *TINY,
            "--pop-half-life",
            "14d",
        ),  # a long memory: the gone items stay popular
        ("update", m.expiring, files["s1"], "-o", m.pruned, "--prune"),
        ("update", m.pruned, files["s2"], "-o", m.back),
    ]
    for args in steps:
        r = run_cli(*args, "-q")
        assert (r.exit_code, r.stderr) == (0, ""), args
    return m


def test_the_setup_would_recommend_the_gone_items_without_expiry(cli, models: Models) -> None:
    df = recs(cli, models.control, "--all", "-k", str(N_ITEMS))
    shown = set(df.filter(pl.col("user_id").is_in(NEW_USERS))["item_id"])
    assert shown >= GONE
    top2 = recs(cli, models.control, "--users", "nobody", "-k", "2")
    assert set(top2["item_id"]) == GONE and set(top2["source"]) == {"popular"}


def test_expired_items_are_never_recommended(cli, models: Models) -> None:
    raw = read_payload(models.expiring)
    assert raw["train_config"]["expire_after_s"] == 10 * 86400
    df = recs(cli, models.expiring, "--all", "-k", str(N_ITEMS))
    assert set(df["source"]) == {"model"}
    assert not GONE & set(df["item_id"])
    # Everything else unseen is still ranked: only the gone items went missing.
    for user in USERS:
        assert len(df.filter(pl.col("user_id") == user)) == len(set(ITEMS) - seen(raw, user))
    cold = recs(cli, models.expiring, "--users", "nobody,ghost", "-k", str(N_ITEMS))
    assert set(cold["source"]) == {"popular"}
    assert set(cold["item_id"]) == set(ITEMS)


def seen(raw: dict, user: str) -> set[str]:
    u = raw["users"].index(user)
    lo, hi = int(raw["seen_indptr"][u]), int(raw["seen_indptr"][u + 1])
    return {raw["items"][j] for j in raw["seen_indices"][lo:hi].tolist()}


def test_evaluate_never_ranks_expired_items(cli, models: Models) -> None:
    def evaluate(ckpt: Path) -> dict:
        r = cli("evaluate", ckpt, models.test, "-k", str(N_ITEMS), "--json")
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)

    control, expiring = evaluate(models.control), evaluate(models.expiring)
    assert control["users"] == expiring["users"] == len(NEW_USERS)
    # Without expiry every unseen item is within the top N_ITEMS; with it, gone1 never is.
    assert control["model"]["recall"] == control["popular"]["recall"] == 1.0
    assert expiring["model"]["recall"] == expiring["popular"]["recall"] == 0.0
    assert expiring["model"]["hit_rate"] == expiring["popular"]["hit_rate"] == 0.0


def test_prune_zeroes_the_rows_and_adam_moments_of_expired_items(models: Models) -> None:
    raw = read_payload(models.pruned)
    parent = read_payload(models.expiring)
    assert raw["train_config"]["prune"] is True
    assert raw["items"] == parent["items"]  # indices stay reserved
    gone = [raw["items"].index(i) for i in sorted(GONE)]
    live = [raw["items"].index(i) for i in ITEMS]
    expired = raw["item_last_ms"] < raw["pop_time_ms"] - 10 * DAY_MS
    assert expired.nonzero().squeeze(1).tolist() == [0, *sorted(gone)]  # row 0 is padding
    entry = raw["lineage"][-1]
    assert entry["pruned_items"] == 2
    w = raw["weights"]
    assert torch.all(w["item_emb"][gone] == 0) and torch.all(w["item_bias"][gone] == 0)
    assert torch.all(w["item_emb"][live].abs().sum(1) > 0)
    assert float(parent["weights"]["item_emb"][gone].abs().sum()) > 0  # there was state to drop
    # Dense optimizer (Adam): parameters item_emb, item_bias in that order.
    for k, table in ((0, "item_emb"), (1, "item_bias")):
        state = raw["optimizer"][0]["state"][k]
        assert state["exp_avg"].shape[0] == len(raw["items"]), table
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.all(state[moment][gone] == 0), (table, moment)
            assert torch.all(state[moment][live].reshape(len(live), -1).abs().sum(1) > 0), (table, moment)


def test_expired_items_count_only_real_items(models: Models) -> None:
    raw = read_payload(models.pruned)
    assert raw["lineage"][-1]["expired_items"] == len(GONE)


def test_expire_after_is_stored_by_init_and_kept_by_updates(models: Models) -> None:
    raw = read_payload(models.back)
    assert raw["train_config"]["expire_after_s"] == 10 * 86400  # stored by init, kept
    control = read_payload(models.control)
    assert control["train_config"]["expire_after_s"] == 0.0


def test_an_expired_item_that_reappears_is_recommended_again(cli, models: Models) -> None:
    raw = read_payload(models.back)
    parent = read_payload(models.pruned)
    # "fresh" gets the next index; the pruned indices were not reused.
    assert raw["items"] == [*parent["items"], "fresh"]
    gone1, gone2 = raw["items"].index("gone1"), raw["items"].index("gone2")
    assert float(raw["weights"]["item_emb"][gone1].abs().sum()) > 0  # trains from a blank row
    assert torch.all(raw["weights"]["item_emb"][gone2] == 0)  # --prune was stored: pruned again
    assert raw["lineage"][-1]["pruned_items"] == 1
    df = recs(cli, models.back, "--all", "-k", str(N_ITEMS + 1))
    got = set(df.filter(pl.col("user_id") != "u010")["item_id"])
    assert "gone1" in got and "gone2" not in got
    assert "gone1" not in set(df.filter(pl.col("user_id") == "u010")["item_id"])  # seen by u010
    cold = recs(cli, models.back, "--users", "nobody", "-k", str(N_ITEMS + 1))
    assert "gone1" in set(cold["item_id"]) and "gone2" not in set(cold["item_id"])
