"""The popularity weight served, beside the model's own ranking: a weight that buries the model says so.

The tiny log has a known right answer. Users ``a*`` take a history item H then D, so the model
learns H -> D; users ``b*`` take T, each right after a D, so T is a hair more popular than D.
The held-out users ``c*`` took an H long ago and now take T. The model alone ranks D first and T
second for each of them (NDCG@10 1/log2(3) = 0.6309); popularity ranks T first (1.0). Only the
largest candidate weight lets popularity override the model's H -> D, so it is chosen.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import torch
from conftest import write_csv

from recinc_cli.training.early_stop import POP_WEIGHTS

MODEL_ALONE = f"{1 / math.log2(3):.4f}"  # T at rank 2
NOTE = "model ranking not used: popularity weight 1000"


def _log(start: dt.datetime, tag: str, n_pairs: int, n_held: int) -> list[tuple[str, str, str]]:
    """``n_held`` users take an H, then ``n_pairs`` times (a: H, D; b: T), then the held users take T."""
    rows: list[tuple[str, str]] = [(f"c{tag}{k}", f"H{k % 6}") for k in range(n_held)]
    for k in range(n_pairs):
        rows += [(f"a{tag}{k}", f"H{k % 6}"), (f"a{tag}{k}", "D"), (f"b{tag}{k}", "T")]
    rows += [(f"c{tag}{k}", "T") for k in range(n_held)]
    return [(u, i, (start + dt.timedelta(minutes=n)).isoformat()) for n, (u, i) in enumerate(rows)]


def _events(cli, tmp_path: Path, name: str, rows: list[tuple[str, str, str]]) -> Path:
    raw = write_csv(tmp_path / f"{name}.csv", ["user_id", "item_id", "timestamp"], rows)
    out = tmp_path / f"{name}.parquet"
    assert cli("preprocess", raw, "-o", out, "-q").exit_code == 0
    return out


def _entry(path: Path) -> dict:
    return torch.load(path, weights_only=True)["lineage"][-1]


def test_init_and_update_that_serve_popularity_say_so(cli, tmp_path: Path) -> None:
    # init: 40 held + 60 x 3 + 40 = 260 events; the newest 40 (the c users' T) are held out.
    base = _events(cli, tmp_path, "base", _log(dt.datetime(2026, 1, 1), "", n_pairs=60, n_held=40))
    m0, m1 = tmp_path / "m0.pt", tmp_path / "m1.pt"
    r = cli("init", base, "-o", m0, "--model", "ease", "--ease-l2", "1", "--valid-fraction", "0.154")
    assert r.exit_code == 0, r.stderr
    assert re.fullmatch(
        r"init: ease on 260 events, 160 users, 8 items, co-occurrences counted in .*, closed form, "
        rf"{NOTE} \(valid ndcg@10 1\.0000; model alone {MODEL_ALONE}\) -> {re.escape(str(m0))}\n",
        r.stderr,
    )
    e = _entry(m0)
    assert (e["pop_weight"], e["pop_weight_note"]) == (POP_WEIGHTS[-1], NOTE)
    assert (e["valid_ndcg"], e["valid_ndcg_model"]) == (1.0, round(1 / math.log2(3), 5))
    # update: a slice of the same shape, 40 + 40 x 3 + 40 = 200 events, the newest 20% held out.
    day = _events(cli, tmp_path, "day", _log(dt.datetime(2026, 1, 2), "x", n_pairs=40, n_held=40))
    r = cli("update", m0, day, "-o", m1)
    assert r.exit_code == 0, r.stderr
    assert re.fullmatch(
        r"update: 200 events, \+120 users, \+0 items \(now 280 / 8\), counted in [\d.]+s on 1 thread, closed form, "
        rf"{NOTE} \(valid ndcg@10 1\.0000; model alone {MODEL_ALONE}\) -> {re.escape(str(m1))}\n",
        r.stderr,
    )
    e = _entry(m1)
    assert (e["command"], e["pop_weight"], e["pop_weight_note"]) == ("update", POP_WEIGHTS[-1], NOTE)
    assert e["valid_ndcg_model"] < e["valid_ndcg"] == 1.0


def test_a_given_weight_is_reported_and_the_model_alone_still_scored(cli, tmp_path: Path) -> None:
    base = _events(cli, tmp_path, "base", _log(dt.datetime(2026, 1, 1), "", n_pairs=60, n_held=40))
    m0 = tmp_path / "m0.pt"
    # Closed form with a given weight: nothing is chosen on held-out users, so no NDCG to show.
    r = cli("init", base, "-o", m0, "--model", "ease", "--pop-weight", "1000")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.endswith(f", closed form, {NOTE} -> {m0}\n")
    assert _entry(m0)["valid_ndcg_model"] is None
    # A gradient model with a given weight: epochs are chosen with it, the model alone scored beside.
    m1 = tmp_path / "m1.pt"
    r = cli(
        "init",
        "--model",
        "mf",
        base,
        "-o",
        m1,
        "--dim",
        "8",
        "--epochs",
        "2",
        "--valid-fraction",
        "0.154",
        "--pop-weight",
        "2",
    )
    assert r.exit_code == 0, r.stderr
    e = _entry(m1)
    assert e["pop_weight"] == 2.0 and e["pop_weight_note"] is None
    assert 0 < e["valid_ndcg_model"] <= 1 and 0 < e["valid_ndcg"] <= 1
    shown = f"pop weight 2 (valid ndcg@10 {e['valid_ndcg']:.4f}; model alone {e['valid_ndcg_model']:.4f}) -> "
    assert shown in r.stderr


def test_the_pipelines_lineage_scores_the_model_alone(pipeline) -> None:
    init, *updates = torch.load(pipeline.ckpt[13], weights_only=True)["lineage"]
    # At init the weight is chosen on these users alone and 0 is a candidate: never below the model.
    assert 0 < init["valid_ndcg_model"] <= init["valid_ndcg"]
    for e in (init, *updates):
        assert isinstance(e["valid_ndcg_model"], float), e["command"]
        assert e["pop_weight_note"] == (NOTE if e["pop_weight"] >= POP_WEIGHTS[-1] else None)


def test_a_given_weight_is_served_when_nothing_is_held_out(cli, pipeline, tmp_path: Path) -> None:
    """``--valid-fraction 0``: nothing to choose the weight on, so the given one must be served
    (it used to be left at 0 while the lineage said otherwise)."""
    from recinc_cli.store.format import load_bundle

    for model in ("mf", "sasrec"):
        out = tmp_path / f"{model}.pt"
        r = cli("init", pipeline.events["base"], "-o", out, "--model", model, "--valid-fraction", "0",
                "--epochs", "1", "--pop-weight", "2", "--dim", "8")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        assert load_bundle(out).pop_weight == 2.0 and _entry(out)["pop_weight"] == 2.0
