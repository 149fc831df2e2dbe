"""recinc replay: the streaming benchmark on a small raw CSV, its report.json, plot and API."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import SAMPLE

from recinc_cli import api
from recinc_cli.bench.replay import METRICS, STRATEGIES
from recinc_cli.config import DEFAULT_REPLAY_STRATEGIES, ModelConfig, TrainConfig

N_ROWS, SLICES, K = 4000, 3, 10
#: The CLI's training flags and the same settings as configs, for the API.
FLAGS = ("--model", "mf", "--dim", "8", "--epochs", "2", "--update-epochs", "1", "--seed", "4")
MODEL_CFG = ModelConfig(name="mf", dim=8)
TRAIN_CFG = TrainConfig.for_model("mf", epochs=2, update_epochs=1, seed=4)
#: Every strategy (the default leaves out retrain).
ALL = ("--strategies", ",".join(STRATEGIES))
MODELS = ("frozen", "incremental", "retrain")


@dataclass
class Run:
    log: Path
    dir: Path
    report: dict
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The first N_ROWS rows of sample_data/base.csv (two days) replayed in 3 slices."""
    from conftest import run_cli

    d = tmp_path_factory.mktemp("replay")
    log = d / "small.csv"
    with open(SAMPLE / "base.csv", newline="") as src, open(log, "w", newline="") as dst:
        rows = csv.reader(src)
        csv.writer(dst).writerows(row for _, row in zip(range(N_ROWS + 1), rows, strict=False))
    out = d / "report"
    r = run_cli("replay", log, "-o", out, "--slices", SLICES, "--plot", "report.png", *ALL, *FLAGS)
    assert r.exit_code == 0, r.stderr
    return Run(log, out, json.loads((out / "report.json").read_text()), r.stdout, r.stderr)


def test_report_holds_every_strategy_and_slice(run: Run) -> None:
    rep = run.report
    assert sorted(p.name for p in run.dir.iterdir()) == [
        "events.manifest.json",
        "events.parquet",
        "events.rejects.parquet",
        "report.json",
        "report.png",
    ]
    events = pl.read_parquet(run.dir / "events.parquet")
    assert (rep["log"], rep["events"], rep["k"], rep["model"]) == (str(run.log), events.height, K, "mf")
    assert rep["model_config"]["dim"] == 8 and rep["train_config"]["seed"] == 4
    assert rep["update_config"]["update_epochs"] == 1
    assert list(rep["strategies"]) == list(STRATEGIES)
    assert (rep["complete"], rep["slices_done"]) == (True, SLICES)
    # Base = the oldest half, then SLICES slices of equal count (within one event).
    sizes = [s["events"] for s in rep["slices"]]
    assert len(sizes) == SLICES + 1 and sum(sizes) == events.height
    assert sizes[0] == events.height // 2 and max(sizes[1:]) - min(sizes[1:]) <= 1
    ts = events["timestamp"]
    assert rep["slices"][0]["ts_min"] == str(ts.min()) and rep["slices"][-1]["ts_max"] == str(ts.max())
    for name, r in rep["strategies"].items():
        assert len(r["per_slice"]) == SLICES, name
        # weight scored with, the model's own ranking (weight 0), lift over popularity
        served = {"pop_weight", "own_ndcg", "vs_popular"} if name != "popular" else set()
        for s in r["per_slice"]:
            assert set(s) == {*METRICS, "users", "seconds", *served}
            assert all(0 <= s[m] <= 1 for m in METRICS)
    # Every strategy is scored on the same users, and the table shows every strategy.
    for j in range(SLICES):
        assert len({r["per_slice"][j]["users"] for r in rep["strategies"].values()}) == 1
        assert rep["strategies"]["frozen"]["per_slice"][j]["users"] > 0
    for name in STRATEGIES:
        assert name in run.stdout


def test_the_models_own_ranking_is_reported_beside_the_served_one(run: Run, tmp_path: Path) -> None:
    for name in ("frozen", "incremental", "retrain"):
        r = run.report["strategies"][name]
        for s in r["per_slice"]:
            if s["pop_weight"] == 0:
                assert s["own_ndcg"] == s["ndcg"]
        assert r["mean"]["own_ndcg"] == pytest.approx(np.mean([s["own_ndcg"] for s in r["per_slice"]]), abs=1e-5)
    assert "own_ndcg" not in run.report["strategies"]["popular"]["mean"]
    # The same model served with popularity weight 1000 and with 0 (no early stopping, so the
    # weight cannot change the training): the own ranking of the first is the score of the second.
    runs = {
        w: api.replay(
            run.dir / "events.parquet", tmp_path / str(w), ModelConfig(name="mf", dim=8),
            TrainConfig.for_model("mf", epochs=2, seed=4, pop_weight=w, valid_fraction=0.0), ["frozen"], n_slices=2,
        )["strategies"]["frozen"]["per_slice"]
        for w in (1000.0, 0.0)
    }  # fmt: skip
    assert [s["pop_weight"] for s in runs[1000.0]] == [1000.0, 1000.0]
    assert [s["own_ndcg"] for s in runs[1000.0]] == [s["ndcg"] for s in runs[0.0]]
    assert [s["own_ndcg"] for s in runs[1000.0]] != [s["ndcg"] for s in runs[1000.0]]


def test_means_are_means_of_the_slices(run: Run) -> None:
    for name, r in run.report["strategies"].items():
        for m in METRICS:
            assert r["mean"][m] == pytest.approx(np.mean([s[m] for s in r["per_slice"]]), abs=1e-5), (name, m)
        # Seconds: mean over the updates that ran (none follows the last slice).
        updates = [s["seconds"] for s in r["per_slice"][:-1]]
        assert r["mean"]["seconds"] == pytest.approx(np.mean(updates), abs=1e-3), name


def test_only_updating_strategies_spend_time(run: Run) -> None:
    s = run.report["strategies"]
    assert [x["seconds"] for x in s["frozen"]["per_slice"]] == [0.0] * SLICES
    assert [x["seconds"] for x in s["popular"]["per_slice"]] == [0.0] * SLICES
    for name in ("incremental", "retrain"):
        seconds = [x["seconds"] for x in s[name]["per_slice"]]
        assert all(t > 0 for t in seconds[:-1]) and seconds[-1] == 0.0, name
    assert run.report["base_seconds"] > 0


def test_slice_one_is_scored_on_the_same_base_model(run: Run) -> None:
    s = run.report["strategies"]
    first = [{m: s[n]["per_slice"][0][m] for m in (*METRICS, "users")} for n in ("frozen", "incremental", "retrain")]
    assert first[0] == first[1] == first[2]
    # Later slices differ: the updates did something.
    for name in ("incremental", "retrain"):
        assert s[name]["per_slice"][1]["ndcg"] != s["frozen"]["per_slice"][1]["ndcg"], name


def test_popular_baseline_of_slice_one_by_hand(run: Run) -> None:
    """Popular on slice 1: count items in the last slice-sized window of the base, rank the
    catalogue known before (ties in order of first appearance), minus each user's history."""
    ev = pl.read_parquet(run.dir / "events.parquet")
    sizes = [s["events"] for s in run.report["slices"]]
    before, test = ev[: sizes[0]], ev[sizes[0] : sizes[0] + sizes[1]]
    window = before[-test.height :]
    catalogue = before["item_id"].unique(maintain_order=True).to_list()
    counts = dict(window["item_id"].value_counts().iter_rows())
    ranked = sorted(catalogue, key=lambda i: -counts.get(i, 0))  # sorted() is stable
    history: dict[str, set[str]] = {}
    for u, i in before.select("user_id", "item_id").iter_rows():
        history.setdefault(u, set()).add(i)
    truth: dict[str, set[str]] = {}
    for u, i in test.select("user_id", "item_id").iter_rows():
        if u in history and i not in history[u]:
            truth.setdefault(u, set()).add(i)
    ndcg, recall, hits = [], [], []
    for u, items in truth.items():
        top = [i for i in ranked if i not in history[u]][:K]
        gains = [1 / math.log2(r + 2) for r, i in enumerate(top) if i in items]
        n = min(len(items), K)
        ndcg.append(sum(gains) / sum(1 / math.log2(r + 2) for r in range(n)))
        recall.append(len(gains) / n)
        hits.append(float(bool(gains)))
    got = run.report["strategies"]["popular"]["per_slice"][0]
    assert got["users"] == len(truth)
    assert got["ndcg"] == pytest.approx(np.mean(ndcg), abs=1e-9)
    assert got["recall"] == pytest.approx(np.mean(recall), abs=1e-9)
    assert got["hit_rate"] == pytest.approx(np.mean(hits), abs=1e-9)


def test_plot_is_a_png(run: Run) -> None:
    data = (run.dir / "report.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_api_returns_what_it_writes_and_repeats_the_cli_run(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "api"
    events = run.dir / "events.parquet"
    rep = api.replay(
        events,
        out,
        MODEL_CFG,
        TRAIN_CFG,
        ["frozen", "popular"],
        n_slices=SLICES,
        plot=tmp_path / "p.png",
        replay_ratio=1.5,
    )
    assert json.loads(json.dumps(rep)) == json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]  # an events Parquet is not copied
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"  # a plot path with a folder goes there
    assert rep["log"] == str(events) and rep["data_sha256"] == run.report["data_sha256"]
    assert list(rep["strategies"]) == ["frozen", "popular"]
    # Policy options apply to the incremental updates only.
    assert rep["update_config"]["replay_ratio"] == 1.5 and rep["train_config"]["replay_ratio"] == 0.5
    # Same seed, same base model, same numbers.
    for name in ("frozen", "popular"):
        assert rep["strategies"][name] == run.report["strategies"][name]


def test_unknown_strategy_is_a_usage_error(cli, expect_error, run: Run, tmp_path: Path) -> None:
    r = cli("replay", run.dir / "events.parquet", "-o", tmp_path / "out", "--strategies", "frozen,bogus")
    expect_error(r, 2, "--strategies: choose from frozen, incremental, retrain, popular (got frozen, bogus)")
    assert not (tmp_path / "out" / "report.json").exists()


def test_too_few_events_for_the_slices_is_bad_input(cli, expect_error, run: Run, tmp_path: Path) -> None:
    tiny = pl.read_parquet(run.dir / "events.parquet")[:5]
    tiny.write_parquet(tmp_path / "tiny.parquet")
    r = cli("replay", tmp_path / "tiny.parquet", "-o", tmp_path / "out", "--slices", "4", *FLAGS)
    expect_error(r, 3, "5 events are too few for a base and 4 slices; use --slices")


def test_a_usage_error_on_a_raw_log_fails_before_preprocessing(cli, expect_error, run: Run, tmp_path: Path) -> None:
    r = cli("replay", run.log, "-o", tmp_path / "out", "--strategies", "bogus")
    expect_error(r, 2, "--strategies: choose from frozen, incremental, retrain, popular (got bogus)")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# -- how far to trust a difference (issue 13, 3) -----------------------------------------------


def test_lift_over_popular_is_paired_per_slice_and_pooled(run: Run) -> None:
    popular = run.report["strategies"]["popular"]["per_slice"]
    users = [p["users"] for p in popular]
    for name in MODELS:
        r = run.report["strategies"][name]
        for s, p in zip(r["per_slice"], popular, strict=True):
            e = s["vs_popular"]
            assert (e["units"], e["unit"], e["level"]) == (s["users"], "users", 0.95)
            # Same users, paired: the mean of the differences is the difference of the means.
            assert e["difference"] == pytest.approx(s["ndcg"] - p["ndcg"], abs=1e-5)
            assert e["interval"][0] <= e["difference"] <= e["interval"][1]
        pooled = r["vs_popular"]  # every (user, slice) pair, so slices weigh by their users
        by_hand = sum(u * (s["ndcg"] - p["ndcg"]) for u, s, p in zip(users, r["per_slice"], popular, strict=True))
        assert (pooled["units"], pooled["unit"]) == (sum(users), "user-slices")
        assert pooled["difference"] == pytest.approx(by_hand / sum(users), abs=1e-5)
        lo, hi = pooled["interval"]
        assert lo < pooled["difference"] < hi and hi - lo < 0.2


def test_warnings_name_thin_slices_and_lifts_within_the_noise(run: Run) -> None:
    users = [p["users"] for p in run.report["strategies"]["popular"]["per_slice"]]
    assert users == [100, 97, 103]  # from the log alone; 100 is enough, 97 is not
    noisy = []
    for name in MODELS:
        e = run.report["strategies"][name]["vs_popular"]
        lo, hi = e["interval"]
        if lo <= 0 <= hi:
            noisy.append(
                f"{name}, all slices: the lift over popularity ({e['difference']:+.4f}) is within the noise: "
                f"its 95% interval over 300 user-slices is {lo:+.4f} .. {hi:+.4f}"
            )
    expected = ["slice 2: only 97 users scored (under 100): these figures say little", *noisy]
    assert run.report["warnings"] == expected
    warned = [line.removeprefix("replay: warning: ") for line in run.stderr.splitlines() if "warning" in line]
    assert warned == expected


# -- without a terminal, --json, default strategies, a killed run (issue 13, 8 and 9) -----------


def test_table_is_printed_whole_without_a_terminal(run: Run) -> None:
    """CliRunner's stdout is no terminal: rich would cut the table to 80 columns (``0.16…``)."""
    assert "…" not in run.stdout
    lines = run.stdout.splitlines()
    assert max(len(line) for line in lines) > 80

    def cells(first: str) -> list[str]:
        row = next(line for line in lines if line.startswith(f"│ {first} "))
        return [c.strip() for c in row.strip("│").split("│")]

    users = [p["users"] for p in run.report["strategies"]["popular"]["per_slice"]]
    assert cells("users") == ["users", *(str(u) for u in users), "", "", "", "", "", ""]
    for name, r in run.report["strategies"].items():
        m, e = r["mean"], r.get("vs_popular")
        lift = "" if e is None else f"{e['difference']:+.4f} ({e['interval'][0]:+.4f} .. {e['interval'][1]:+.4f})"
        assert cells(name) == [
            name,
            *(f"{s['ndcg']:.3f}" for s in r["per_slice"]),
            f"{m['ndcg']:.4f}",
            f"{m['own_ndcg']:.4f}" if name != "popular" else "",
            f"{m['recall']:.4f}",
            f"{m['hit_rate']:.3f}",
            f"{m['seconds']:.2f}",
            lift,
        ]


def test_one_plain_progress_line_per_slice_on_stderr(run: Run) -> None:
    rep = run.report
    expected = [f"replay: base model mf trained on {rep['slices'][0]['events']:,} events in {rep['base_seconds']:.1f}s"]
    for j in range(SLICES):
        rows = {name: r["per_slice"][j] for name, r in rep["strategies"].items()}
        scores = ", ".join(f"{name} {row['ndcg']:.4f}" for name, row in rows.items())
        line = f"replay: slice {j + 1}/{SLICES}: ndcg@10 {scores} ({rows['popular']['users']:,} users)"
        if j < SLICES - 1:  # no update follows the last slice
            seconds = {name: rows[name]["seconds"] for name in ("incremental", "retrain")}
            line += f"; update incremental {seconds['incremental']:.1f}s, retrain {seconds['retrain']:.1f}s"
        expected.append(line)
    expected.append(f"replay: 4 strategies x {SLICES} slices -> {run.dir / 'report.json'}")
    assert [line for line in run.stderr.splitlines() if "warning" not in line] == expected


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_json_prints_the_report_alone_with_the_default_strategies(run: Run, tmp_path: Path) -> None:
    from conftest import run_cli

    out = tmp_path / "nightly"
    r = run_cli("replay", run.dir / "events.parquet", "-o", out, "--slices", SLICES, "--json", "-q", *FLAGS)
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout.endswith("}\n") and r.stdout.count("\n") == 1  # one JSON object, no table
    rep = json.loads(r.stdout)
    assert rep == json.loads((out / "report.json").read_text())
    # A nightly job can afford the default: no retrain.
    assert list(rep["strategies"]) == list(DEFAULT_REPLAY_STRATEGIES) == ["frozen", "incremental", "popular"]
    assert rep["warnings"] == [w for w in run.report["warnings"] if not w.startswith("retrain")]
    for name in DEFAULT_REPLAY_STRATEGIES:  # same seed: what it shares with the full run scores the same
        ours, full = rep["strategies"][name], run.report["strategies"][name]
        assert _without_seconds(ours["per_slice"]) == _without_seconds(full["per_slice"]), name
        assert ours.get("vs_popular") == full.get("vs_popular"), name


def test_lift_is_measured_without_the_popular_strategy(run: Run, tmp_path: Path) -> None:
    rep = api.replay(run.dir / "events.parquet", tmp_path / "out", MODEL_CFG, TRAIN_CFG, ["frozen"], n_slices=SLICES)
    assert list(rep["strategies"]) == ["frozen"]
    assert rep["strategies"]["frozen"] == run.report["strategies"]["frozen"]


def test_a_killed_run_keeps_the_finished_slices(run: Run, tmp_path: Path) -> None:
    """SIGKILL (no handler runs) once report.json holds 2 of the 3 slices."""
    out, marker = tmp_path / "out", tmp_path / "paused"
    env = {**os.environ, "RECINC_PAUSE_AT": "replay:slice-2", "RECINC_PAUSE_FILE": str(marker)}
    args = ["replay", str(run.dir / "events.parquet"), "-o", str(out), "--slices", str(SLICES), *ALL, *FLAGS, "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "recinc_cli", *args], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the replay never reached slice 2"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rep = json.loads((out / "report.json").read_text())
    assert (rep["complete"], rep["slices_done"]) == (False, 2)
    assert rep["slices"] == run.report["slices"]  # every slice is described from the start
    for name, r in rep["strategies"].items():
        full = run.report["strategies"][name]
        assert _without_seconds(r["per_slice"]) == _without_seconds(full["per_slice"][:2]), name
        assert r["mean"]["ndcg"] == pytest.approx(np.mean([s["ndcg"] for s in full["per_slice"][:2]]), abs=1e-5)
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]  # no temp file left behind
