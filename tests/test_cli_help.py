"""Every command documents itself with an example; the module entry point works."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from recinc_cli import __version__

COMMANDS = ["preprocess", "init", "update", "recommend", "evaluate", "rollback", "split", "replay", "info", "serve"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help_has_an_example(cli, command: str, flag: str) -> None:
    r = cli(command, flag)
    assert r.exit_code == 0
    assert r.stdout.startswith(f"Usage: recinc {command} [OPTIONS]")
    assert "Example" in r.stdout
    assert re.search(rf"^\s+recinc {command} \S", r.stdout, re.MULTILINE)  # the example itself
    assert r.stderr == ""


def test_top_level_help_lists_every_command(cli) -> None:
    r = cli("--help")
    assert r.exit_code == 0
    listed = re.findall(r"^\s{2}(\w+)\s{2,}", r.stdout.split("Commands:")[1], re.MULTILINE)
    assert sorted(listed) == sorted(COMMANDS)
    assert "Exit codes: 0 ok, 1 internal error, 2 usage error, 3 bad input data, 4 bad or" in (
        " ".join(r.stdout.split())
    )


def test_version(cli) -> None:
    r = cli("--version")
    assert (r.exit_code, r.stdout) == (0, f"recinc {__version__}\n")


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "recinc_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: recinc [OPTIONS] COMMAND [ARGS]...")
    for command in COMMANDS:
        assert command in proc.stdout


# --- options that only some models read (issue 13, point 11) ------------------------------------

#: typer parameter name -> the config field it sets, where they differ.
FIELD_OF = {"negatives": "n_negatives", "half_life": "half_life_s", "init_": "init"}
#: Options whose default differs per model: --help lists it for each model the option applies to.
PER_MODEL = ("epochs", "update_epochs", "lr", "batch_size", "patience", "pop_prior")


def option_help(command: str) -> dict[str, str]:
    """Parameter name -> its help text, from the command typer builds."""
    from typer.main import get_command

    from recinc_cli.cli.app import app

    cmd = get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.name: " ".join((p.help or "").split()) for p in cmd.params}


@pytest.mark.parametrize("command", ["init", "replay"])
def test_model_choices_are_listed(cli, command: str) -> None:
    from recinc_cli.config import MODEL_NAMES

    r = cli(command, "--help")
    assert f"--model [{'|'.join(MODEL_NAMES)}]" in r.stdout
    assert "--model [mf|sasrec|ease" in r.stdout


@pytest.mark.parametrize("command", ["init", "update", "replay"])
def test_each_option_names_the_models_it_applies_to(command: str) -> None:
    from recinc_cli.config import MODEL_NAMES, OPTION_MODELS, TrainConfig, models_for

    helps = option_help(command)
    checked = 0
    for name, text in helps.items():
        field = FIELD_OF.get(name, "update_epochs" if (command, name) == ("update", "epochs") else name)
        if field not in OPTION_MODELS:
            assert not text.startswith(tuple(f"{m}:" for m in MODEL_NAMES)), (name, text)
            assert not text.startswith(tuple(f"{m}," for m in MODEL_NAMES)), (name, text)
            continue
        checked += 1
        assert text.startswith(", ".join(models_for(field)) + ": "), (name, text)
        if name in PER_MODEL and command != "update":
            defaults = {getattr(TrainConfig.for_model(m), field) for m in models_for(field)}
            assert ("[default: mf " in text) == (len(defaults) > 1), (name, text)
            for m in MODEL_NAMES:
                assert (f" {m} " in text.split("[default:")[1]) == (m in models_for(field) and len(defaults) > 1)
    assert checked >= {"init": 24, "update": 10, "replay": 14}[command]


def test_init_help_shows_only_the_defaults_that_apply(cli) -> None:
    text = " ".join(cli("init", "--help").stdout.split())
    assert "--lr <float> mf, sasrec: Adam learning rate. [default: mf 0.002, sasrec 0.003]" in text
    assert "--epochs <int> mf, sasrec: Most training epochs (early stopping picks fewer). [default: 30]" in text
    assert "--update-lr <float> mf, sasrec: Default learning rate of later updates. [default: mf the --lr, " in text
    assert "--pop-prior <float> mf, sasrec: Train against the popularity prior" in text
    assert "off. [default: 1]" in text
    assert "--ease-l2 <float> ease, ranker: Ridge penalty" in text
    assert "--max-len <int> sasrec, ease, sknn, ranker: Events of each user's context" in text
    assert "--seed <int> Random seed; same seed, same model. [default: 0]" in text
    assert "ease 30" not in text and "ease 0.002" not in text  # the issue: ease listed epochs and lr


def test_option_models_agree_with_the_registry() -> None:
    from recinc_cli.config import (
        FEATURE_MODELS,
        GRADIENT_MODELS,
        MODEL_NAMES,
        OPTION_MODELS,
        POP_PRIOR_MODELS,
        SEQUENTIAL_MODELS,
    )
    from recinc_cli.models import MODELS

    assert {n for n, cls in MODELS.items() if not cls.CLOSED_FORM} == GRADIENT_MODELS
    assert {n for n, cls in MODELS.items() if cls.POP_PRIOR} == POP_PRIOR_MODELS
    assert {n for n, cls in MODELS.items() if cls.CONTEXT} == SEQUENTIAL_MODELS
    assert FEATURE_MODELS <= SEQUENTIAL_MODELS
    for field, models in OPTION_MODELS.items():
        assert models and models <= set(MODEL_NAMES), field
