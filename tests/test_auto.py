"""``auto`` is a value, None is "not given": the settings recinc chooses itself are spelled out."""

from __future__ import annotations

import torch

from recinc_cli import api
from recinc_cli.config import AUTO, TrainConfig
from recinc_cli.training.early_stop import POP_WEIGHTS


def test_auto_is_the_default_and_files_keep_it_as_none() -> None:
    cfg = TrainConfig()
    assert (cfg.pop_weight, cfg.pop_half_life_events, cfg.cooc_half_life_events) == (AUTO, AUTO, AUTO)
    stored = cfg.to_dict()
    assert stored["pop_weight"] is None and stored["pop_half_life_events"] is None  # as 0.9 wrote it
    assert TrainConfig.from_dict(stored) == cfg
    assert TrainConfig.from_dict({**stored, "pop_weight": 2.0}).pop_weight == 2.0


def test_none_keeps_what_is_stored_and_auto_chooses_again() -> None:
    stored = TrainConfig(pop_weight=2.0)
    assert api.update_config(stored, {"pop_weight": None}, as_update=False).pop_weight == 2.0
    assert api.update_config(stored, {"pop_weight": AUTO}, as_update=False).pop_weight == AUTO
    assert api.update_config(TrainConfig(), {"pop_weight": 0.5}, as_update=False).pop_weight == 0.5


def test_update_pop_weight_auto_lets_a_fixed_lineage_choose_again(pipeline, tmp_path) -> None:
    fixed, chosen = tmp_path / "fixed.pt", tmp_path / "chosen.pt"
    api.update(pipeline.ckpt[11], pipeline.events["day12"], fixed, pop_weight=3.0)
    raw = torch.load(fixed, weights_only=True)
    assert raw["train_config"]["pop_weight"] == 3.0 and raw["lineage"][-1]["pop_weight"] == 3.0
    r = api.update(fixed, pipeline.events["day13"], chosen, pop_weight=AUTO)
    raw = torch.load(chosen, weights_only=True)
    assert raw["train_config"]["pop_weight"] is None  # stored as auto: chosen again next time
    assert r["pop_weight"] in POP_WEIGHTS and r["valid_ndcg"] is not None
