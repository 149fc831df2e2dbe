"""evaluate: --json prints one JSON object; the protocol checked by brute force on day 14."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
import torch
from conftest import run_cli

from recinc_cli.store.format import read_payload

METRICS = {"recall", "precision", "f1", "ndcg", "mrr", "hit_rate", "coverage", "users"}


@pytest.fixture(scope="module")
def day14_json(pipeline) -> dict:
    r = run_cli("evaluate", pipeline.ckpt[13], pipeline.events["day14"], "--json")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.endswith("}\n") and r.stdout.count("\n") == 1
    out = json.loads(r.stdout)  # the whole of stdout is one JSON object
    # A thin-evidence warning is in the JSON and, as one line, on stderr (README "How far to trust").
    assert r.stderr == ("" if out["warning"] is None else f"evaluate: warning: {out['warning']}\n")
    return out


def test_json_shape(day14_json: dict, pipeline) -> None:
    r = day14_json
    assert set(r) == {
        "k",
        "protocol",
        "users",
        "test_events",
        "catalogue",
        "checkpoint",
        "model",
        "popular",
        "latency_ms",
        "repeats",
        "evidence",
        "warning",
    }
    assert r["repeats"] is False  # the checkpoint's stored default
    ev = r["evidence"]
    assert (ev["units"], ev["unit"], ev["level"]) == (r["users"], "users", 0.95)
    assert ev["difference"] == pytest.approx(r["model"]["ndcg"] - r["popular"]["ndcg"])
    assert ev["interval"][0] <= ev["difference"] <= ev["interval"][1]
    lo, hi = ev["interval"]
    if lo <= 0 <= hi:
        assert r["warning"] == (
            f"the lift over popularity ({ev['difference']:+.4f}) is within the noise: its 95% interval "
            f"over {r['users']:,} users is {lo:+.4f} .. {hi:+.4f}"
        )
    else:
        assert r["warning"] is None
    assert r["k"] == 10 and r["protocol"] == "next" and r["checkpoint"] == str(pipeline.ckpt[13])
    assert r["test_events"] == pl.read_parquet(pipeline.events["day14"]).height
    assert r["catalogue"] == len(read_payload(pipeline.ckpt[13])["items"]) - 1
    for scorer in ("model", "popular"):
        assert set(r[scorer]) == METRICS and r[scorer]["users"] == r["users"]
        for name in METRICS - {"users"}:
            assert 0.0 <= r[scorer][name] <= 1.0
    assert r["latency_ms"]["p99"] >= r["latency_ms"]["p50"] > 0


def test_popular_baseline_and_eligible_users_by_brute_force(day14_json: dict, pipeline) -> None:
    """Next-slice protocol by hand: known users, truth = distinct items new to them,
    the decayed-popularity ranking of the known catalogue minus each user's seen items."""
    history = pl.concat([pl.read_parquet(pipeline.events[n]) for n in ("base", "day11", "day12", "day13")])
    seen: dict[str, set[str]] = {}
    for u, i in history.select("user_id", "item_id").iter_rows():
        seen.setdefault(u, set()).add(i)
    truth: dict[str, set[str]] = {}
    for u, i in pl.read_parquet(pipeline.events["day14"]).select("user_id", "item_id").iter_rows():
        if u in seen and i not in seen[u]:
            truth.setdefault(u, set()).add(i)
    raw = read_payload(pipeline.ckpt[13])
    ranked = [raw["items"][j] for j in torch.argsort(raw["item_pop"], descending=True, stable=True).tolist() if j > 0]
    k = 10
    recall = ndcg = hits = 0.0
    for u, g in truth.items():
        top = [i for i in ranked if i not in seen[u]][:k]
        gains = [1.0 if i in g else 0.0 for i in top]
        n = min(k, len(g))
        recall += sum(gains) / n
        ndcg += sum(x / math.log2(r + 2) for r, x in enumerate(gains)) / sum(1 / math.log2(r + 2) for r in range(n))
        hits += any(gains)
    r = day14_json
    assert r["users"] == len(truth) > 400
    assert r["popular"]["recall"] == pytest.approx(recall / len(truth))
    assert r["popular"]["ndcg"] == pytest.approx(ndcg / len(truth))
    assert r["popular"]["hit_rate"] == pytest.approx(hits / len(truth))


def test_table_output(cli, pipeline) -> None:
    r = cli("evaluate", pipeline.ckpt[13], pipeline.events["day14"], "-k", "5")
    assert r.exit_code == 0, r.stderr
    warning = json.loads(cli("evaluate", pipeline.ckpt[13], pipeline.events["day14"], "-k", "5", "--json").stdout)[
        "warning"
    ]
    assert r.stderr == ("" if warning is None else f"evaluate: warning: {warning}\n")
    out = r.stdout
    assert not out.lstrip().startswith("{")
    assert "next-slice evaluation @ 5:" in out
    for word in (
        "metric",
        "model",
        "popular",
        "lift",
        "ndcg@5",
        "recall@5",
        "precision@5",
        "f1@5",
        "mrr@5",
        "hit_rate@5",
        "coverage",
        "ms/user p50 | p99",
        "ndcg@5 - popular (95% interval)",
    ):
        assert word in out, word


def test_k_changes_the_cut_off(cli, pipeline, day14_json: dict) -> None:
    r = cli("evaluate", pipeline.ckpt[13], pipeline.events["day14"], "--json", "-k", "1")
    assert r.exit_code == 0, r.stderr
    one = json.loads(r.stdout)
    assert one["k"] == 1 and one["users"] == day14_json["users"]
    for scorer in ("model", "popular"):
        m = one[scorer]
        # At k = 1 recall, precision, hit rate and MRR are the same number.
        assert m["recall"] == m["precision"] == m["hit_rate"] == m["mrr"] == pytest.approx(m["ndcg"])
        assert m["hit_rate"] <= day14_json[scorer]["hit_rate"]
