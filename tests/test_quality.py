"""The product's promise on sample data: `mf` with default settings beats popularity (the default
model, `ranker`, is held to the same on day 14 in test_ranker.py).

Init on days 1-10, update with days 11, 12 and 13, evaluate on the unseen day 14. This is the one
test that trains at full default size (about a minute on 2 CPU cores).
"""

from __future__ import annotations

from pathlib import Path

from recinc_cli import api
from recinc_cli.config import ModelConfig, TrainConfig


def test_mf_with_defaults_beats_popularity_on_day14(pipeline, tmp_path: Path) -> None:
    ckpt = tmp_path / "m10.pt"
    info = api.init(pipeline.events["base"], ckpt, ModelConfig(name="mf"))
    assert 1 <= info["epochs"] <= TrainConfig().epochs and info["n_users"] == 1360
    for d in (11, 12, 13):
        out = tmp_path / f"m{d}.pt"
        r = api.update(ckpt, pipeline.events[f"day{d}"], out)
        assert not r["skipped"] and 1 <= r["epochs"] <= TrainConfig().update_epochs  # chosen on the newest part
        ckpt = out
    result = api.evaluate(ckpt, pipeline.events["day14"], k=10)
    model, popular = result["model"], result["popular"]
    assert result["users"] > 400
    # Measured 0.153 vs 0.058 (2.6x) when this test was written; 1.5x leaves room for tuning
    # noise and still fails if personalisation stops pulling its weight.
    assert model["ndcg"] > 1.5 * popular["ndcg"], (model, popular)
    assert model["recall"] > popular["recall"] and model["hit_rate"] > popular["hit_rate"]
