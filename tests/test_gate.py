"""The promotion gate: a candidate worse than its parent on the holdout is not served."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import Pipeline, make_registry, only_files

from recinc_cli import api
from recinc_cli.data.io import read_events, sha256_file
from recinc_cli.errors import PromotionError
from recinc_cli.evaluation.gate import judge, passes
from recinc_cli.store.format import load_bundle

#: Settings that wreck a model without NaN: a huge step, no popularity, no anchor, no replay.
DAMAGE = ("--lr", "1", "--epochs", "5", "--update-valid-fraction", "0", "--pop-weight", "0")
DAMAGE += ("--anchor-weight", "0", "--replay-ratio", "0")
VERDICT = (
    r"candidate NDCG@10 (0\.\d{4}) vs parent (0\.\d{4}) \(-\d+\.\d%; difference -0\.\d{4}, 95% interval "
    r"-0\.\d{4} \.\. [-+]0\.\d{4}\) on (\d+) holdout users: more than the allowed 2\.0% drop"
)


@pytest.fixture
def reg(pipeline: Pipeline, tmp_path: Path) -> Path:
    return make_registry(pipeline.ckpt[11], tmp_path / "models")


def test_worse_candidate_is_kept_aside_with_exit_6(cli, expect_error, pipeline: Pipeline, reg: Path) -> None:
    r = cli("update", reg, pipeline.events["day12"], "--gate", pipeline.events["day13"], *DAMAGE)
    message = expect_error(
        r,
        6,
        pattern=rf"{reg / '000002.rejected.pt'}: not promoted by --gate {pipeline.events['day13']}: "
        rf"{VERDICT}; {reg} keeps serving 000001\.pt",
    )
    assert only_files(reg) == ["000001.pt", "000002.rejected.pt", "LATEST"]
    assert (reg / "LATEST").read_text() == "000001.pt\n"
    gate = load_bundle(reg / "000002.rejected.pt").lineage[-1]["gate"]  # the verdict travels with it
    assert gate["passed"] is False and gate["holdout_sha256"] == sha256_file(pipeline.events["day13"])
    assert f"{gate['candidate_ndcg']:.4f} vs parent {gate['parent_ndcg']:.4f}" in message
    assert gate["candidate_ndcg"] < 0.98 * gate["parent_ndcg"]
    # How far to trust it: 400 users, and the paired interval of the difference is below 0.
    lo, hi = gate["interval"]
    assert gate["users"] == 400 and gate["level"] == 0.95 and gate["warning"] is None
    assert gate["difference"] == pytest.approx(gate["candidate_ndcg"] - gate["parent_ndcg"], abs=1e-12)
    assert lo <= gate["difference"] <= hi < 0
    assert f"difference {gate['difference']:+.4f}, 95% interval {lo:+.4f} .. {hi:+.4f}) on 400 holdout users" in message
    # The next run takes a new number and still builds on the served version.
    r = cli("update", reg, pipeline.events["day12"], "--gate", pipeline.events["day13"], "--max-drop", "0.5")
    assert r.exit_code == 0, r.stderr
    assert (reg / "LATEST").read_text() == "000003.pt\n"
    served = load_bundle(reg)
    assert served.lineage[-1]["parent_sha256"] == sha256_file(reg / "000001.pt")
    assert served.lineage[-1]["gate"]["passed"] is True
    assert "gate passed: candidate NDCG@10" in r.stderr


def test_rejected_file_target_keeps_the_old_output(cli, expect_error, pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m12.pt"
    shutil.copy(pipeline.ckpt[11], out)
    before = sha256_file(out)
    r = cli(
        "update", pipeline.ckpt[11], pipeline.events["day12"], "-o", out, "--gate", pipeline.events["day13"], *DAMAGE
    )
    expect_error(
        r,
        6,
        pattern=rf"{tmp_path / 'm12.rejected.pt'}: not promoted by --gate .*: {VERDICT}; "
        rf"{out} was not written \(the old file stays\)",
    )
    assert sha256_file(out) == before
    assert only_files(tmp_path) == ["m12.pt", "m12.rejected.pt"]


def test_judge_compares_what_each_would_serve(pipeline: Pipeline, tmp_path: Path) -> None:
    parent = load_bundle(pipeline.ckpt[11])
    slice_, holdout = read_events(pipeline.events["day12"]), read_events(pipeline.events["day13"])
    # The parent judged against itself (no training): same users, same truth, equal scores.
    same = judge(parent, load_bundle(pipeline.ckpt[11]), slice_.head(0), holdout, 0.0)
    assert same["passed"] and same["parent_ndcg"] == same["candidate_ndcg"] > 0 and same["relative_change"] == 0
    # No difference at all is within the noise: warned, and still decided on the point estimate.
    assert (same["difference"], same["interval"]) == (0.0, [0.0, 0.0]) and same["users"] >= 100
    assert same["warning"] == "the difference is within the noise: its 95% interval includes 0"
    assert same["reason"].endswith(f"on {same['users']:,} holdout users (warning: {same['warning']})")
    # The real next version against its parent, by hand through the API.
    with pytest.raises(PromotionError) as e:
        api.update(pipeline.ckpt[11], pipeline.events["day12"], tmp_path / "x.pt", gate=pipeline.events["day13"],
                   max_drop=0.0, update_epochs=5, lr=1.0, pop_weight=0.0, replay_ratio=0.0, anchor_weight=0.0,
                   update_valid_fraction=0.0)  # fmt: skip
    v = e.value.verdict
    assert v is not None and v["passed"] is False and v["users"] > 50 and v["candidate_ndcg"] < v["parent_ndcg"]
    # No holdout user the model can be judged on: not promoted (a blind gate must not pass).
    blind = judge(parent, parent, slice_.head(0), slice_.head(0), 0.02)
    assert blind["passed"] is False and blind["users"] == 0 and "nothing to judge by" in blind["reason"]
    assert blind["interval"] is None and blind["warning"] is None


def test_passes_is_a_relative_tolerance() -> None:
    assert passes(0.098, 0.1, 0.02) and not passes(0.0979, 0.1, 0.02)
    assert passes(0.5, 0.5, 0.0) and passes(0.0, 0.0, 0.0)


def test_a_few_users_verdict_warns_in_the_summary_and_lineage(cli, pipeline: Pipeline, reg: Path) -> None:
    """A holdout of 60 users: the gate still decides (on the point estimate) but says it saw few."""
    day13 = read_events(pipeline.events["day13"])
    first = day13.select(day13["user_id"].unique(maintain_order=True).head(60))
    few = day13.join(first, on="user_id", how="semi")
    holdout = reg.parent / "few.parquet"
    few.write_parquet(holdout)
    r = cli("update", reg, pipeline.events["day12"], "--gate", holdout, "--max-drop", "0.99")
    assert r.exit_code == 0, r.stderr
    gate = load_bundle(reg).lineage[-1]["gate"]
    assert gate["passed"] is True and 0 < gate["users"] <= 60
    assert gate["warning"] == f"only {gate['users']} holdout users judged (under 100): the verdict rests on few users"
    assert gate["reason"].endswith(f"on {gate['users']} holdout users (warning: {gate['warning']})")
    assert f", gate passed: {gate['reason']} -> " in r.stderr


def test_with_repeats_the_gate_judges_seen_items_as_served(pipeline: Pipeline) -> None:
    import dataclasses

    from recinc_cli.evaluation.metrics import slice_truth

    holdout = read_events(pipeline.events["day13"])
    plain = load_bundle(pipeline.ckpt[11])
    repeats = load_bundle(pipeline.ckpt[11])
    repeats.train_cfg = dataclasses.replace(repeats.train_cfg, repeats=True)
    v_plain = judge(plain, plain, holdout.head(0), holdout, 0.0)
    v_rep = judge(repeats, repeats, holdout.head(0), holdout, 0.0)
    # Every holdout user the model knows counts with repeats (re-taken items are truth too);
    # without, only those with an item new to them.
    known = int((repeats.users.lookup(holdout["user_id"].unique()) > 0).sum())
    new_only = len(slice_truth(holdout, plain.users, plain.items, plain.seen.contains)[0])
    assert v_rep["users"] == known > v_plain["users"] == new_only
    assert v_rep["candidate_ndcg"] != v_plain["candidate_ndcg"]
