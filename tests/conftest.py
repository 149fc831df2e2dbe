"""Shared fixtures: the CLI runner, error checks, and the sample-data pipeline built once.

The session-scoped :func:`pipeline` runs the real ``recinc`` commands on ``sample_data/`` with
tiny training settings (preprocess base + days, init mf on base, update with days 11..13);
:func:`sasrec_pipeline` does the same for a tiny sasrec with the ``category`` item feature
(init on base, update with days 11 and 12). Tests read their files and never modify them
(copy to ``tmp_path`` first).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner, Result

from recinc_cli.cli.app import app

pytest_plugins = ["db_servers"]  # the mysql_table fixture (a real MariaDB server)

# No example database in the checkout, and the same examples on every run (CI stays
# deterministic); HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("ci", database=None, derandomize=True)
settings.register_profile("explore", database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# recinc's tensors here are tiny: intra-op threads only add OpenMP barriers, and on a busy 2-core
# box those spin-waits made the default-size init ~15x slower (114 s vs 6.5 s measured).
torch.set_num_threads(1)
os.environ["RECINC_THREADS"] = "1"  # the API sets torch threads from it
# numpy's and scipy's BLAS likewise, here and in the commands tests start: `make test` runs a
# worker per core, and a BLAS team spinning in one worker slows the other.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
threadpool_limits(1, user_api="blas")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
DAYS = (11, 12, 13, 14)
#: Tiny training for the shared pipeline: base has 19,157 events, so 5 batches per epoch.
SMALL_TRAIN = ("--epochs", "2", "--update-epochs", "1", "--batch-size", "4096", "--seed", "7")
SMALL_INIT = ("--model", "mf", "--dim", "8", *SMALL_TRAIN)
#: Tiny sasrec architecture (one block, no dropout) for CLI tests.
SASREC_ARCH = ("--model", "sasrec", "--dim", "8", "--max-len", "10", "--blocks", "1", "--heads", "2", "--dropout", "0")
#: The sasrec pipeline: batches of 4096 events, so 5 per epoch on base.
SASREC_INIT = (*SASREC_ARCH, "--item-features", "category", *SMALL_TRAIN)
SASREC_MAX_LEN = 10


def run_cli(*args: object, env: dict[str, str] | None = None) -> Result:
    """Run ``recinc ARGS`` in-process; exceptions that escape the CLI fail the test."""
    return CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False, prog_name="recinc")


def check_error(result: Result, code: int, message: str | None = None, pattern: str | None = None) -> str:
    """Assert a failed command: exit ``code``, nothing on stdout, one ``recinc: error:`` line.

    ``message`` is the exact text after ``recinc: error: ``; ``pattern`` a regex it must match
    in full. Returns the message.
    """
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prefix = "recinc: error: "
    assert lines[0].startswith(prefix), lines[0]
    text = lines[0][len(prefix) :]
    if message is not None:
        assert text == message
    if pattern is not None:
        assert re.fullmatch(pattern, text), text
    return text


def only_files(directory: Path) -> list[str]:
    """Sorted names of every entry in ``directory`` (hidden temp files included), except the
    empty ``.NAME.lock`` files that init/update leave by design (README "Running in production")."""
    return sorted(p.name for p in directory.iterdir() if not (p.name.startswith(".") and p.name.endswith(".lock")))


class RunsCode:
    """A pickle payload that would run ``touch marker`` if anything unpickled it as code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def make_registry(checkpoint: Path, root: Path) -> Path:
    """A registry directory ``root`` whose version 1 (served) is a copy of ``checkpoint``."""
    from recinc_cli.store.registry import Registry

    root.mkdir(parents=True)
    shutil.copy(checkpoint, Registry(root).path_of(1))
    Registry(root).promote(1)
    return root


class FullDiskFile:
    """A file whose writes fail with ENOSPC after ``room`` bytes, as on a full disk."""

    def __init__(self, path: object, mode: str, room: int = 64) -> None:
        self._fh = open(path, mode)  # type: ignore[call-overload]  # noqa: SIM115
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._fh.write(bytes(data[: self._room]))
            self._fh.flush()
            raise OSError(28, "No space left on device")
        self._room -= len(data)
        return int(self._fh.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make checkpoint writes fail midway with 'No space left on device'."""
    import recinc_cli.store.format

    monkeypatch.setattr(recinc_cli.store.format, "open", FullDiskFile, raising=False)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def cli() -> Callable[..., Result]:
    return run_cli


@pytest.fixture(scope="session")
def expect_error() -> Callable[..., str]:
    return check_error


@dataclass
class Pipeline:
    """Files and command results of the sample-data run (read-only for tests)."""

    dir: Path
    events: dict[str, Path] = field(default_factory=dict)  # "base", "day11", ...
    ckpt: dict[int, Path] = field(default_factory=dict)  # 10 = init on base, 11.. = updates
    results: dict[str, Result] = field(default_factory=dict)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    p = Pipeline(tmp_path_factory.mktemp("pipeline"))
    for name in ("base", *(f"day{d}" for d in DAYS)):
        out = p.dir / f"{name}.parquet"
        p.results[f"preprocess {name}"] = run_cli("preprocess", SAMPLE / f"{name}.csv", "-o", out)
        p.events[name] = out
    p.ckpt[10] = p.dir / "m10.pt"
    p.results["init"] = run_cli("init", p.events["base"], "-o", p.ckpt[10], *SMALL_INIT)
    for d in DAYS[:-1]:
        p.ckpt[d] = p.dir / f"m{d}.pt"
        p.results[f"update {d}"] = run_cli("update", p.ckpt[d - 1], p.events[f"day{d}"], "-o", p.ckpt[d])
    for name, r in p.results.items():
        assert r.exit_code == 0, (name, r.stderr)
    return p


@dataclass
class SeqPipeline:
    """Checkpoints and command results of the sasrec run on the :func:`pipeline` events."""

    events: dict[str, Path]
    ckpt: dict[int, Path] = field(default_factory=dict)  # 10 = init on base, 11, 12 = updates
    results: dict[str, Result] = field(default_factory=dict)


@pytest.fixture(scope="session")
def sasrec_pipeline(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> SeqPipeline:
    d = tmp_path_factory.mktemp("sasrec")
    p = SeqPipeline(pipeline.events)
    p.ckpt[10] = d / "s10.pt"
    p.results["init"] = run_cli("init", p.events["base"], "-o", p.ckpt[10], *SASREC_INIT)
    for day in (11, 12):
        p.ckpt[day] = d / f"s{day}.pt"
        p.results[f"update {day}"] = run_cli("update", p.ckpt[day - 1], p.events[f"day{day}"], "-o", p.ckpt[day])
    for name, r in p.results.items():
        assert r.exit_code == 0, (name, r.stderr)
    return p


#: Test files outside the fast tier (``make test-fast``, under a minute): whole CLI pipelines,
#: the README's commands, crash tests that kill real processes, real logs, fuzzing and replays.
#: Every other test (units, the model contract, doctests) is in it.
SLOW_FILES: frozenset[str] = frozenset(
    {
        "test_readme.py",
        "test_ranker.py",
        "test_crash.py",
        "test_real_data.py",
        "test_fuzz_csv.py",
        "test_replay.py",
        "test_cli_sasrec.py",
        "test_determinism.py",
        "test_cli_errors.py",
        "test_checkpoint.py",
        "test_cli_recommend.py",
        "test_update_machinery.py",
        "test_bad_inputs.py",
        "test_quality.py",
        "test_registry.py",
        "test_distributed.py",
    }
)


#: The longest tests (each 1-4 minutes on 2 cores), run first: ``make test`` spreads the suite
#: over one worker per core (pytest-xdist, work stealing), and a long test picked up last would
#: leave the other workers idle while it ran (the README's demo alone takes 3-4 minutes).
LONGEST: tuple[str, ...] = (
    "test_readme.py::test_the_demo_commands_of_the_readme_run_as_written",
    "test_readme.py::test_every_python_example_of_the_readme_runs",
    "test_crash.py::test_kill_leaves_the_previous_or_the_new_checkpoint",
    "test_real_data.py::test_movielens_100k_preprocess_init_evaluate",
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core this process may use (its CPU affinity and a container's
    CPU quota, as recinc's own thread count), not the host's core count a container may show."""
    from recinc_cli.threads import available_cores

    return available_cores()


def _longest_first(item: pytest.Item) -> int:
    name = f"{item.path.name}::{item.name}"
    return next((i for i, prefix in enumerate(LONGEST) if name.startswith(prefix)), len(LONGEST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SLOW_FILES` ``slow`` (``make test-fast`` deselects them) and
    run :data:`LONGEST` first (a stable sort: every other test keeps its order)."""
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    items.sort(key=_longest_first)
