"""``replay --protocol session``: every strategy scored on the same cases, built from the log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import SAMPLE

from recinc_cli import api
from recinc_cli.bench.replay import cut_slices
from recinc_cli.bench.replay_sessions import popular_sessions, session_truth
from recinc_cli.config import ModelConfig, PreprocessConfig


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    out = tmp_path_factory.mktemp("replay_sessions")
    path = out / "sessions.parquet"
    api.preprocess([SAMPLE / "sessions.csv"], path, PreprocessConfig(user_col="session_id"))
    return out, pl.read_parquet(path)


@pytest.mark.parametrize("repeats", [False, True])
def test_every_strategy_is_scored_on_the_cases_of_the_log(sessions: tuple[Path, pl.DataFrame], repeats: bool) -> None:
    out, events = sessions
    report = api.replay(
        out / "sessions.parquet",
        out / f"report_{repeats}",
        ModelConfig(name="sknn"),
        strategies=["frozen", "incremental", "popular"],
        n_slices=2,
        protocol="session",
        repeats=repeats,
    )
    assert report["protocol"] == "session" and report["complete"]
    parts = cut_slices(events, 2, 0.5)
    for s in (1, 2):
        truth = session_truth(pl.concat(parts[:s]), parts[s], max_len=ModelConfig().max_len, repeats=repeats)
        n_cases = int(truth.counted.sum())
        assert n_cases > 100
        # One unit per next click (repeat clicks only with repeats), the same for every strategy.
        assert {r["per_slice"][s - 1]["users"] for r in report["strategies"].values()} == {n_cases}
        window = parts[s - 1] if s > 1 else parts[0][-parts[s].height :]
        popular = popular_sessions(window, truth, 10).metrics
        row = report["strategies"]["popular"]["per_slice"][s - 1]
        assert row["ndcg"] == pytest.approx(popular["ndcg"]) and row["hit_rate"] == pytest.approx(popular["hit_rate"])
    # Same base model on slice 1; the session model beats latest-slice popularity by far.
    frozen, incremental = (report["strategies"][n]["per_slice"] for n in ("frozen", "incremental"))
    assert frozen[0]["ndcg"] == incremental[0]["ndcg"]
    assert report["strategies"]["incremental"]["vs_popular"]["interval"][0] > 0.1
    assert incremental[1]["ndcg"] > 2 * report["strategies"]["popular"]["per_slice"][1]["ndcg"]


def test_with_repeats_repeat_clicks_are_counted(sessions: tuple[Path, pl.DataFrame]) -> None:
    _, events = sessions
    before, test = events[: events.height // 2], events[events.height // 2 :]
    plain = session_truth(before, test, max_len=200, repeats=False)
    both = session_truth(before, test, max_len=200, repeats=True)
    assert int(both.counted.sum()) == len(both.cases) > int(plain.counted.sum())
    assert int(plain.counted.sum()) == int((~plain.cases.is_repeat).sum())
    # Without repeats a case's revealed clicks are never ranked by the popularity baseline.
    top = popular_sessions(before, plain, k=10)
    assert 0 <= top.metrics["hit_rate"] <= 1 and len(top.ndcg) == int(plain.counted.sum())
    assert np.isfinite(top.ndcg).all()


def test_an_unknown_protocol_is_a_usage_error(cli, expect_error, sessions: tuple[Path, pl.DataFrame]) -> None:
    out, _ = sessions
    r = cli("replay", out / "sessions.parquet", "-o", out / "bad", "--protocol", "loo")
    expect_error(r, 2, "--protocol must be one of next, session (got 'loo')")
    assert not (out / "bad" / "report.json").exists()
