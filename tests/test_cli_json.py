"""`--json` on init, update and split: one JSON object on stdout, nothing on stderr, and the
object is what the API returned (issue 13, point 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from conftest import SMALL_INIT, Pipeline, make_registry, only_files
from typer.testing import Result

from recinc_cli.data.io import sha256_file
from recinc_cli.store.format import load_bundle

#: Settings that wreck a model without NaN (as in test_gate.py): the gate refuses the result.
DAMAGE = ("--lr", "1", "--epochs", "5", "--update-valid-fraction", "0", "--pop-weight", "0")
DAMAGE += ("--anchor-weight", "0", "--replay-ratio", "0")


def one_object(r: Result, code: int = 0) -> dict[str, Any]:
    """The single JSON object a ``--json`` run printed; stdout holds exactly that line."""
    assert r.exit_code == code, r.stderr
    assert r.stdout.endswith("\n") and r.stdout.count("\n") == 1, r.stdout
    obj = json.loads(r.stdout)
    assert isinstance(obj, dict)
    return obj


def lineage(path: Path) -> list[dict[str, Any]]:
    return torch.load(path, weights_only=True)["lineage"]


def test_init_json_is_the_lineage_entry_and_where_it_went(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    r = cli("init", pipeline.events["base"], "-o", out, *SMALL_INIT, "--json")
    obj = one_object(r)
    assert r.stderr == ""
    entry = lineage(out)[0]
    assert {k: obj[k] for k in entry} == entry
    extra = {k: v for k, v in obj.items() if k not in entry}
    assert extra.keys() == {"model", "events_per_second", "path", "sha256", "pruned"}
    assert (extra["model"], extra["path"], extra["sha256"], extra["pruned"]) == ("mf", str(out), sha256_file(out), [])
    assert (obj["command"], obj["events"], obj["n_users"], obj["n_items"]) == ("init", 19157, 1360, 762)
    assert obj["version"] is None and obj["data_sha256"] == sha256_file(pipeline.events["base"])
    # The same seed and data as the shared pipeline's init: the same model, so the same numbers.
    first = lineage(pipeline.ckpt[10])[0]
    assert (obj["epochs"], obj["final_loss"], obj["valid_ndcg"]) == (
        first["epochs"],
        first["final_loss"],
        first["valid_ndcg"],
    )


def test_init_json_of_a_closed_form_model_into_a_registry(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    r = cli("init", pipeline.events["base"], "--registry", reg, "--model", "ease", "--json", "-q")
    obj = one_object(r)
    assert r.stderr == ""
    assert (obj["model"], obj["final_loss"], obj["lr"], obj["version"]) == ("ease", None, None, 1)
    assert obj["path"] == str(reg / "000001.pt") and (reg / "LATEST").read_text() == "000001.pt\n"
    assert obj["valid_ndcg"] == lineage(reg / "000001.pt")[0]["valid_ndcg"] > 0


def test_update_json_matches_the_summary_numbers(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m11.pt"
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", out, "--json")
    obj = one_object(r)
    assert r.stderr == ""
    entry = lineage(out)[-1]
    assert {k: obj[k] for k in entry} == entry
    assert obj["skipped"] is False and obj["path"] == str(out) and obj["sha256"] == sha256_file(out)
    assert obj["parent_sha256"] == sha256_file(pipeline.ckpt[10])
    # Deterministic: the shared pipeline ran this very update without --json.
    same = lineage(pipeline.ckpt[11])[-1]
    keys = ("events", "new_users", "new_items", "n_users", "n_items", "epochs", "final_loss", "pop_weight")
    assert {k: obj[k] for k in keys} == {k: same[k] for k in keys}
    summary = pipeline.results["update 11"].stderr
    assert summary.startswith(f"update: {obj['events']:,} events, +{obj['new_users']:,} users, +{obj['new_items']:,} ")


def test_update_json_of_a_slice_already_applied(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    day11 = pipeline.events["day11"]
    r = cli("update", pipeline.ckpt[11], day11, "-o", tmp_path / "again.pt", "--json")
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == json.dumps({"skipped": True, "data_sha256": sha256_file(day11), "data_path": str(day11)}) + "\n"
    assert only_files(tmp_path) == []


def test_update_json_of_a_refused_candidate_prints_it_and_the_error(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    reg = make_registry(pipeline.ckpt[11], tmp_path / "models")
    r = cli("update", reg, pipeline.events["day12"], "--gate", pipeline.events["day13"], *DAMAGE, "--json")
    obj = one_object(r, code=6)
    rejected = reg / "000002.rejected.pt"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"recinc: error: {rejected}: not promoted by --gate ")
    assert lines[0].endswith(f"; {reg} keeps serving 000001.pt")
    assert obj["path"] == str(rejected) and obj["sha256"] == sha256_file(rejected)
    assert obj["skipped"] is False and obj["pruned"] == []
    gate = load_bundle(rejected).lineage[-1]["gate"]
    assert obj["gate"] == gate and gate["passed"] is False
    assert obj["gate"]["candidate_ndcg"] < 0.98 * obj["gate"]["parent_ndcg"]
    assert (reg / "LATEST").read_text() == "000001.pt\n"


def test_split_json(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    r = cli("split", pipeline.events["day11"], "--at", "2026-03-11T12:00", "--train", train, "--test", test, "--json")
    obj = one_object(r)
    assert r.stderr == ""
    r = cli("split", pipeline.events["day11"], "--at", "2026-03-11T12:00", "--train", train, "--test", test)
    assert r.stderr == (
        f"split: {obj['events']:,} events -> {obj['train']:,} in {train}, {obj['test']:,} "
        f"({obj['test_users']:,} users) in {test}\n"
    )
    assert obj == {
        "events": obj["train"] + obj["test"],
        "train": obj["train"],
        "test": obj["test"],
        "test_users": obj["test_users"],
        "train_path": str(train),
        "test_path": str(test),
    }
    assert (obj["train"], obj["test"], obj["events"]) == (755, 1721, 2476)
