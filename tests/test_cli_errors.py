"""Bad input: exit code, one `recinc: error:` line on stderr, no traceback, no output file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE, RunsCode, only_files, write_csv

from recinc_cli.training.train import Trainer

HEADER = ("user_id", "item_id", "timestamp", "event_type")


# --- preprocess: bad input data (3) -------------------------------------------------------


def test_missing_input_file(cli, expect_error, tmp_path: Path) -> None:
    r = cli("preprocess", tmp_path / "nope.csv", "-o", tmp_path / "ev.parquet")
    expect_error(r, 3, f"{tmp_path / 'nope.csv'}: no such file; check the path")
    assert only_files(tmp_path) == []


def test_missing_column_names_the_flag(cli, expect_error, tmp_path: Path) -> None:
    r = cli("preprocess", SAMPLE / "day14.csv", "-o", tmp_path / "ev.parquet", "--user-col", "uid")
    expect_error(
        r,
        3,
        f"{SAMPLE / 'day14.csv'}: column 'uid' not found (columns: user_id, "
        "item_id, event_type, timestamp, category); name it with --user-col",
    )
    write_csv(tmp_path / "log.csv", ("user", "item_id", "timestamp"), [("u1", "i1", "1")])
    r = cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "ev.parquet")
    expect_error(
        r,
        3,
        f"{tmp_path / 'log.csv'}: column 'user_id' not found (columns: user, "
        "item_id, timestamp); name it with --user-col",
    )
    r = cli("preprocess", tmp_path / "log.csv", "-o", tmp_path / "ev.parquet", "--user-col", "user", "--time-col", "ts")
    expect_error(
        r,
        3,
        f"{tmp_path / 'log.csv'}: column 'ts' not found (columns: user, item_id, timestamp); name it with --time-col",
    )
    assert only_files(tmp_path) == ["log.csv"]


def test_only_dirty_rows(cli, expect_error, tmp_path: Path) -> None:
    log = write_csv(
        tmp_path / "log.csv",
        HEADER,
        [("", "i1", "1772359200", "view"), ("u1", "", "1772359200", "view"), ("u1", "i1", "later", "view")],
    )
    r = cli("preprocess", log, "-o", tmp_path / "ev.parquet")
    expect_error(
        r,
        3,
        f"{log}: no usable rows (3 read, rejected: {{'missing item_id': 1, "
        "'missing user_id': 1, 'unparsable timestamp': 1})",
    )
    assert only_files(tmp_path) == ["log.csv"]


def test_header_only_and_empty_files(cli, expect_error, tmp_path: Path) -> None:
    head = write_csv(tmp_path / "head.csv", HEADER, [])
    r = cli("preprocess", head, "-o", tmp_path / "ev.parquet")
    expect_error(r, 3, f"{head}: no usable rows (0 read, rejected: none)")
    (tmp_path / "empty.csv").write_bytes(b"")
    r = cli("preprocess", tmp_path / "empty.csv", "-o", tmp_path / "ev.parquet")
    expect_error(r, 3, pattern=rf"{tmp_path / 'empty.csv'}: cannot read \(.+\)")
    assert only_files(tmp_path) == ["empty.csv", "head.csv"]


# --- checkpoints (4) ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["recommend", "evaluate", "update"])
def test_not_a_checkpoint(cli, expect_error, pipeline, tmp_path: Path, command: str) -> None:
    bad = tmp_path / "model.pt"
    shutil.copy(SAMPLE / "day11.csv", bad)
    args = {
        "recommend": ["--all"],
        "evaluate": [pipeline.events["day12"]],
        "update": [pipeline.events["day12"], "-o", tmp_path / "out.pt"],
    }[command]
    r = cli(command, bad, *args)
    expect_error(r, 4, f"{bad}: not a recinc checkpoint (not a torch .pt file); check the path")
    r = cli(command, tmp_path / "missing.pt", *args)
    expect_error(r, 4, f"{tmp_path / 'missing.pt'}: no such checkpoint; check the path")
    assert only_files(tmp_path) == ["model.pt"]


def test_truncated_checkpoint(cli, expect_error, pipeline, tmp_path: Path) -> None:
    data = pipeline.ckpt[10].read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) * 2 // 3])
    r = cli("update", cut, pipeline.events["day11"], "-o", tmp_path / "out.pt")
    expect_error(r, 4, pattern=rf"{cut}: damaged checkpoint \(.+\); restore it from a backup")
    assert only_files(tmp_path) == ["cut.pt"]


def test_pickle_that_would_run_code(cli, expect_error, pipeline, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = torch.load(pipeline.ckpt[10], weights_only=True)
    torch.save({**raw, "lineage": [RunsCode(marker)]}, tmp_path / "evil.pt")
    for args in (
        ["recommend", tmp_path / "evil.pt", "--all"],
        ["update", tmp_path / "evil.pt", pipeline.events["day11"], "-o", tmp_path / "out.pt"],
    ):
        r = cli(*args)
        expect_error(
            r,
            4,
            f"{tmp_path / 'evil.pt'}: refused to load: it holds objects other than "
            "tensors and plain values (not written by recinc: possibly malicious, or damaged); "
            "nothing in it was run",
        )
    assert only_files(tmp_path) == ["evil.pt"]
    assert not marker.exists()


# --- usage (2) --------------------------------------------------------------------------------


def test_unknown_model(cli, expect_error, pipeline, tmp_path: Path) -> None:
    r = cli("init", pipeline.events["day11"], "-o", tmp_path / "m.pt", "--model", "gru4rec")
    expect_error(r, 2, "--model 'gru4rec' is unknown; choose one of mf, sasrec, ease, sknn, ranker")
    assert only_files(tmp_path) == []


#: ModelConfig ends each message with the architecture it was given; these are the defaults.
DEFAULT_ARCH = {"dim": 64, "max_len": 200, "blocks": 2, "heads": 1, "dropout": 0.2}


def arch(**changes: object) -> str:
    return "(got " + ", ".join(f"{k}={v}" for k, v in {**DEFAULT_ARCH, **changes}.items()) + ")"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "sasrec", "--dim", "8", "--heads", "3"],
            "--dim must be a multiple of --heads " + arch(dim=8, heads=3),
        ),
        (["--model", "sasrec", "--heads", "0"], "--heads must be a positive integer " + arch(heads=0)),
        (
            ["--model", "sasrec", "--dropout", "1"],
            "--dropout must be in [0, 1) " + arch(dropout=1.0),
        ),
        (
            ["--model", "sasrec", "--max-len", "0"],
            "--max-len must be a positive integer " + arch(max_len=0),
        ),
        (
            ["--model", "sasrec", "--blocks", "0"],
            "--blocks must be a positive integer " + arch(blocks=0),
        ),
        (["--item-features", "category"], "--item-features needs a model that embeds them (sasrec)"),
        (
            ["--model", "sasrec", "--item-features", "category,item_id"],
            "--item-features 'item_id' is a core column, not an item feature",
        ),
    ],
)
def test_model_config_errors(cli, expect_error, pipeline, tmp_path: Path, args: list[str], message: str) -> None:
    r = cli("init", "--model", "mf", pipeline.events["day11"], "-o", tmp_path / "m.pt", *args)
    expect_error(r, 2, message)
    assert only_files(tmp_path) == []


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--dim", "0", "--dim must be a positive integer " + arch(dim=0)),
        ("--epochs", "0", "--epochs is out of range; see `recinc init --help`"),
        ("--lr", "-1", "--lr is out of range; see `recinc init --help`"),
        ("--pop-half-life", "soon", "cannot read duration 'soon'; use e.g. 30m, 12h, 7d, 2w"),
        ("--init", "magic", "--init must be random, zero or pretrained:PATH (got 'magic')"),
    ],
)
def test_init_option_out_of_range(
    cli, expect_error, pipeline, tmp_path: Path, flag: str, value: str, message: str
) -> None:
    r = cli("init", "--model", "mf", pipeline.events["day11"], "-o", tmp_path / "m.pt", flag, value)
    expect_error(r, 2, message)
    assert only_files(tmp_path) == []


@pytest.mark.parametrize("selection", [[], ["--all", "--users", "u1"], ["--users", "u1", "--users-file", "u.txt"]])
def test_recommend_needs_exactly_one_user_selection(cli, expect_error, pipeline, selection: list[str]) -> None:
    r = cli("recommend", pipeline.ckpt[10], *selection)
    expect_error(r, 2, "give exactly one of --users, --users-file or --all")


def test_recommend_bad_k_and_output_format(cli, expect_error, pipeline, tmp_path: Path) -> None:
    r = cli("recommend", pipeline.ckpt[10], "--all", "-k", "0")
    expect_error(r, 2, "-k must be at least 1")
    out = tmp_path / "recs.txt"
    r = cli("recommend", pipeline.ckpt[10], "--users", "u00001", "-o", out)
    expect_error(r, 2, f"{out}: unknown output format; end the name in .csv, .parquet or .jsonl")
    assert only_files(tmp_path) == []


def test_recommend_users_file_problems(cli, expect_error, pipeline, tmp_path: Path) -> None:
    r = cli("recommend", pipeline.ckpt[10], "--users-file", tmp_path / "none.txt")
    expect_error(r, 3, f"{tmp_path / 'none.txt'}: no such file; check the path")
    (tmp_path / "cols.csv").write_text("uid,x\nu1,2\n")
    r = cli("recommend", pipeline.ckpt[10], "--users-file", tmp_path / "cols.csv")
    expect_error(r, 3, f"{tmp_path / 'cols.csv'}: no user_id column (columns: uid, x)")
    (tmp_path / "blank.txt").write_text("user_id\n\n  \n")
    r = cli("recommend", pipeline.ckpt[10], "--users-file", tmp_path / "blank.txt")
    expect_error(r, 3, f"{tmp_path / 'blank.txt'}: no user ids given")
    r = cli("recommend", pipeline.ckpt[10], "--users", " , ")
    expect_error(r, 3, "--users: no user ids given")


# --- update / evaluate slices (3) ----------------------------------------------------------


def test_update_with_a_slice_that_is_not_parquet(cli, expect_error, pipeline, tmp_path: Path) -> None:
    csv = SAMPLE / "day11.csv"
    r = cli("update", pipeline.ckpt[10], csv, "-o", tmp_path / "m.pt")
    expect_error(r, 3, f"{csv}: not a Parquet file; run `recinc preprocess {csv} -o events.parquet` first")
    r = cli("update", pipeline.ckpt[10], tmp_path / "day11.parquet", "-o", tmp_path / "m.pt")
    expect_error(r, 3, f"{tmp_path / 'day11.parquet'}: no such file; check the path")
    r = cli("init", "--model", "mf", csv, "-o", tmp_path / "m.pt")
    expect_error(r, 3, f"{csv}: not a Parquet file; run `recinc preprocess {csv} -o events.parquet` first")
    assert only_files(tmp_path) == []


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_evaluate_without_eligible_users(cli, expect_error, pipeline, json_flag: list[str]) -> None:
    # Every (user, item) pair of day 13 is already in m13: nobody has a new item there.
    day13 = pipeline.events["day13"]
    r = cli("evaluate", pipeline.ckpt[13], day13, *json_flag)
    expect_error(r, 3, f"{day13}: no user known to the model has new items there; nothing to evaluate")


def test_evaluate_bad_k(cli, expect_error, pipeline) -> None:
    r = cli("evaluate", pipeline.ckpt[13], pipeline.events["day14"], "-k", "0")
    expect_error(r, 2, "-k must be at least 1")


# --- training failures (5) -------------------------------------------------------------------

NAN = (
    r"loss became (nan|inf) in epoch 1, batch 2; lower --lr \(now 1e\+30\) or check the "
    r"event weights"
)


def test_diverging_init_writes_nothing(cli, expect_error, pipeline, tmp_path: Path) -> None:
    # Adam moves every weight by about lr on the first step, so the second batch's logits overflow.
    r = cli(
        "init",
        "--model",
        "mf",
        pipeline.events["day11"],
        "-o",
        tmp_path / "m.pt",
        "--lr",
        "1e30",
        "--batch-size",
        "256",
        "--epochs",
        "1",
        "--dim",
        "8",
    )
    expect_error(r, 5, pattern=NAN)
    assert only_files(tmp_path) == []


def test_diverging_update_writes_nothing(cli, expect_error, pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m11.pt"
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", out, "--lr", "1e30", "--batch-size", "256")
    expect_error(r, 5, pattern=NAN)
    assert only_files(tmp_path) == []


# --- output failures (7) -------------------------------------------------------------------


def test_failed_write_is_one_line_and_leaves_no_file(cli, expect_error, pipeline, tmp_path: Path, full_disk) -> None:
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", tmp_path / "m.pt")
    expect_error(r, 7, f"{tmp_path / 'm.pt'}: cannot write (No space left on device); check free space and permissions")
    assert only_files(tmp_path) == []


def test_interrupt_is_exit_130_and_writes_nothing(cli, expect_error, pipeline, tmp_path: Path, monkeypatch) -> None:
    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", ctrl_c)
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", tmp_path / "m.pt")
    expect_error(r, 130, "interrupted; no output was written")
    assert only_files(tmp_path) == []


def test_real_process_error_is_one_stderr_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "recinc_cli", "preprocess", "nope.csv", "-o", "ev.parquet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr == "recinc: error: nope.csv: no such file; check the path\n"
    assert only_files(tmp_path) == []


# --- usage errors through the real entry point (main) -------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["init", "x.parquet", "--bogus"],
            "No such option: --bogus (Possible options: --blocks); see 'recinc init --help'",
        ),
        (["init", "x.parquet", "--zzz"], "No such option: --zzz; see 'recinc init --help'"),
        (["init"], "Missing argument 'EVENTS'; see 'recinc init --help'"),
        (["frobnicate"], "No such command 'frobnicate'; see 'recinc --help'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "recinc_cli", *args], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", f"recinc: error: {message}\n")
