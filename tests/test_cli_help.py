"""Every command documents itself with an example; the module entry point works."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from recinc_cli import __version__

COMMANDS = ["preprocess", "init", "update", "recommend", "evaluate", "rollback", "split", "replay"]


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
