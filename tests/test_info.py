"""``recinc info``: what a checkpoint or registry holds, as tables or one JSON object."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl


def test_json_holds_sizes_settings_lineage_and_registry(cli, pipeline, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    reg.mkdir()
    shutil.copy(pipeline.ckpt[11], reg / "000001.pt")
    shutil.copy(pipeline.ckpt[12], reg / "000002.pt")
    (reg / "LATEST").write_text("000001.pt\n")
    r = cli("info", reg, "--json")
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["path"] == str(reg / "000001.pt") and info["model"] == "mf"
    assert info["registry"] == {"versions": ["000001.pt", "000002.pt"], "latest": "000001.pt"}
    assert [e["command"] for e in info["lineage"]] == ["init", "update"]
    base = pl.read_parquet(pipeline.events["base"])
    day11 = pl.read_parquet(pipeline.events["day11"])
    users = pl.concat([base, day11])["user_id"].n_unique()
    assert info["sizes"]["users"] == users and info["sizes"]["items"] == info["lineage"][-1]["n_items"]
    assert info["sizes"]["parameters"] > 0 and info["file_bytes"] == (reg / "000001.pt").stat().st_size
    assert info["model_config"]["dim"] == 8 and "epochs" in info["train_config"] and "pop_weight" in info["policies"]
    assert info["watermark"] == day11["timestamp"].max().isoformat()


def test_tables_name_the_lineage_rows(cli, pipeline) -> None:
    r = cli("info", pipeline.ckpt[12])
    assert r.exit_code == 0, r.stderr
    assert "lineage (oldest first)" in r.stdout and r.stdout.count(" update ") >= 2 and " init " in r.stdout
    assert "m12.pt: mf" in r.stdout


def test_a_missing_checkpoint_exits_4(cli, expect_error, tmp_path: Path) -> None:
    expect_error(cli("info", tmp_path / "none.pt"), 4, pattern=r".*none\.pt: no such checkpoint; check the path")
