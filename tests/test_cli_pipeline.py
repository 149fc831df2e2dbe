"""End to end on sample_data: preprocess -> init -> update per day, lineage, skip and --force."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import torch
from conftest import DAYS, only_files

from recinc_cli.data.io import sha256_file
from recinc_cli.store.format import read_payload


def lineage(path: Path) -> list[dict]:
    return read_payload(path)["lineage"]


def test_every_step_succeeded_with_a_one_line_summary(pipeline) -> None:
    for name, r in pipeline.results.items():
        assert r.exit_code == 0, name
        assert r.stdout == "", name  # stdout is for data only
        assert len(r.stderr.splitlines()) == 1, name
    init = pipeline.results["init"].stderr
    assert re.fullmatch(
        r"init: mf on 19,157 events, 1,360 users, 762 items, [12] epochs? chosen by early stopping "
        r"\+ 1 epoch on the held-out newest events in [\d.]+s on 1 thread "
        r"\([\d.]+s per epoch, [\d,]+ events/s, peak memory [\d,]+ MiB\), "
        r"loss [\d.]+, pop weight [\d.]+ \(valid ndcg@10 0\.\d{4}; model alone 0\.\d{4}\) "
        rf"-> {re.escape(str(pipeline.ckpt[10]))}\n",
        init,
    )
    up = pipeline.results["update 11"].stderr
    assert re.fullmatch(
        r"update: 2,476 events, \+35 users, \+13 items \(now 1,395 / 775\), 1 epoch in [\d.]+s on 1 thread, "
        r"loss [\d.]+, pop weight [\d.]+ \(valid ndcg@10 0\.\d{4}; model alone 0\.\d{4}\)"
        rf"(, [\d,]+ replayed)? -> {re.escape(str(pipeline.ckpt[11]))}\n",
        up,
    )


def test_lineage_grows_by_one_entry_per_update(pipeline) -> None:
    for n, d in enumerate((10, *DAYS[:-1]), start=1):
        entries = lineage(pipeline.ckpt[d])
        assert len(entries) == n
        if d > 10:
            assert entries[:-1] == lineage(pipeline.ckpt[d - 1])
            assert entries[-1]["parent_sha256"] == sha256_file(pipeline.ckpt[d - 1])
            assert entries[-1]["data_sha256"] == sha256_file(pipeline.events[f"day{d}"])


def test_old_ids_keep_their_index_across_updates(pipeline) -> None:
    prev = read_payload(pipeline.ckpt[10])
    for d in DAYS[:-1]:
        cur = read_payload(pipeline.ckpt[d])
        for key in ("users", "items"):
            assert cur[key][: len(prev[key])] == prev[key]
            new = set(pl.read_parquet(pipeline.events[f"day{d}"])[key[:-1] + "_id"]) - set(prev[key])
            assert set(cur[key][len(prev[key]) :]) == new
        prev = cur


def test_rerunning_an_applied_slice_writes_nothing(cli, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "again.pt"
    r = cli("update", pipeline.ckpt[12], pipeline.events["day11"], "-o", out)
    assert r.exit_code == 0
    assert r.stdout == ""
    sha = sha256_file(pipeline.events["day11"])
    assert r.stderr == (
        f"update: {pipeline.events['day11']} (sha256 {sha[:12]}) was already "
        "applied to this model; nothing written (use --force to apply it again)\n"
    )
    assert only_files(tmp_path) == []
    # -q silences the note but still writes nothing.
    r = cli("update", pipeline.ckpt[11], pipeline.events["day11"], "-o", out, "-q")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    assert only_files(tmp_path) == []


def test_force_applies_the_slice_again(cli, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "forced.pt"
    r = cli("update", pipeline.ckpt[11], pipeline.events["day11"], "-o", out, "--force")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.startswith("update: 2,476 events, +0 users, +0 items (now 1,395 / 775), ")
    entries = lineage(out)
    assert len(entries) == 3
    assert entries[-1]["data_sha256"] == entries[-2]["data_sha256"]
    assert entries[-1]["parent_sha256"] == sha256_file(pipeline.ckpt[11])
    before = read_payload(pipeline.ckpt[11])["weights"]["item_emb"]
    assert not torch.equal(read_payload(out)["weights"]["item_emb"], before)


def test_update_overrides_apply_to_this_run_only(cli, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    r = cli(
        "update",
        pipeline.ckpt[11],
        pipeline.events["day12"],
        "-o",
        out,
        "--epochs",
        "2",
        "--batch-size",
        "1000",
        "--lr",
        "0.001",
        "-q",
    )
    assert (r.exit_code, r.stderr) == (0, "")
    raw = read_payload(out)
    parent = read_payload(pipeline.ckpt[11])
    assert (raw["lineage"][-1]["epochs"], raw["lineage"][-1]["lr"]) == (2, 0.001)
    # A one-off override does not become the default of every later update.
    assert raw["train_config"] == parent["train_config"]
    assert raw["model_config"] == parent["model_config"]  # architecture stays locked
    assert raw["model_config"]["name"] == "mf" and raw["model_config"]["dim"] == 8
    day12 = pl.read_parquet(pipeline.events["day12"]).height
    steps = float(raw["optimizer"][0]["state"][0]["step"]) - float(parent["optimizer"][0]["state"][0]["step"])
    # Users are packed into batches of about 1000 events: at least ceil(n / 1000) per epoch.
    assert 2 * -(-day12 // 1000) <= steps <= 2 * day12
