"""The shared option groups are the single source of the options they declare."""

from __future__ import annotations

import pytest

from recinc_cli.cli.options import POLICY_OPTIONS
from recinc_cli.config import POLICY_FIELDS, TrainConfig


def test_the_policy_group_is_every_stored_policy_but_the_training_objectives() -> None:
    fields = [o.field for o in POLICY_OPTIONS]
    assert len(fields) == len(set(fields))
    # --pop-prior and --future-window are stored the same way, but they also shape init's own
    # training, with per-model defaults, so they sit with the training options.
    assert set(fields) | {"pop_prior", "future_window"} == POLICY_FIELDS
    assert set(fields) <= set(TrainConfig.__dataclass_fields__)


@pytest.mark.parametrize("command", ["init", "update", "replay"])
def test_every_command_that_stores_policies_takes_the_whole_group(command: str) -> None:
    from typer.main import get_command

    from recinc_cli.cli.app import app

    cmd = get_command(app).commands[command]  # type: ignore[attr-defined]
    names = [p.name for p in cmd.params]
    group = [o.param for o in POLICY_OPTIONS]
    assert names[names.index(group[0]) : names.index(group[0]) + len(group)] == group
    assert names[-2:] == ["json_", "quiet"]  # the command's own trailing options stay last


def test_policy_values_reach_the_stored_defaults(cli, pipeline, tmp_path) -> None:
    import torch

    out = tmp_path / "m.pt"
    r = cli(
        "init", pipeline.events["base"], "-o", out, "--model", "mf", "--dim", "4", "--epochs", "1",
        "--half-life", "7d", "--pop-weight", "auto", "--no-prune", "--late", "drop", "--replay-ratio", "0.25",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cfg = torch.load(out, weights_only=True)["train_config"]
    assert (cfg["half_life_s"], cfg["pop_weight"], cfg["prune"], cfg["late"]) == (7 * 86400.0, None, False, "drop")
    assert cfg["replay_ratio"] == 0.25
    r = cli("update", out, pipeline.events["day11"], "-o", tmp_path / "m1.pt", "--pop-weight", "nope")
    assert (r.exit_code, r.stderr) == (2, "recinc: error: --pop-weight must be a number or auto (got 'nope')\n")


def test_no_command_writes_more_than_20_parameters_by_hand() -> None:
    import inspect

    from typer.main import get_command

    from recinc_cli.cli import app as cli

    for name in get_command(cli.app).commands:  # type: ignore[attr-defined]
        fn = inspect.unwrap(getattr(cli, name))  # the function as written, before the groups
        assert len(inspect.signature(fn).parameters) <= 20, name


def test_the_training_group_sets_what_init_trains_with(cli, pipeline, tmp_path) -> None:
    import torch

    out = tmp_path / "m.pt"
    r = cli(
        "init", pipeline.events["base"], "-o", out, "--model", "mf", "--dim", "4", "--epochs", "1", "--lr", "0.01",
        "--negatives", "64", "--pop-half-life", "5000ev", "--init", "zero", "--seed", "3", "--valid-fraction", "0",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cfg = torch.load(out, weights_only=True)["train_config"]
    got = {k: cfg[k] for k in ("epochs", "lr", "n_negatives", "pop_half_life_events", "init", "seed", "valid_fraction")}
    assert got == {
        "epochs": 1,
        "lr": 0.01,
        "n_negatives": 64,
        "pop_half_life_events": 5000.0,
        "init": "zero",
        "seed": 3,
        "valid_fraction": 0.0,
    }
    assert cfg["pop_prior"] == 1.0  # not given: mf's own default
