"""Crash safety: SIGKILL ``recinc update`` at many moments, then check what is on disk.

Each case runs a real ``python -m recinc_cli update`` in its own directory, frozen at a named
pause point (:mod:`recinc_cli.failpoints`) or killed after a delay, then SIGKILLed: no
handler runs, as on an OOM kill or power loss. Afterwards the target must hold nothing or a
complete checkpoint (the previous or the new one) that loads and recommends, and the next
successful run must leave no temp file behind. While the runs are frozen holding their locks,
a second update aimed at the same output gets exit 9: a real two-process lock test.

All runs start at once, so the whole module costs about one torch import per core.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Pipeline, make_registry, run_cli

from recinc_cli import api
from recinc_cli.data.io import sha256_file
from recinc_cli.store.format import load_bundle
from recinc_cli.store.registry import Registry


@dataclass
class Case:
    """One killed run: where it stops, whether it writes a file or a registry version."""

    name: str
    point: str | None  # pause point; None = killed after ``delay`` seconds
    mode: str  # "file" or "registry"
    existing: bool = True  # file mode: the target already holds the previous checkpoint
    delay: float = 0.0
    dir: Path = field(default_factory=Path)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> Path:
        return self.dir / ("m.pt" if self.mode == "file" else "models")

    @property
    def marker(self) -> Path:
        return self.dir / "paused"


CASES = [
    Case("locked", "locked", "file"),
    Case("loaded", "loaded", "file", existing=False),
    Case("read", "read", "file"),
    Case("epoch", "epoch", "file", existing=False),
    Case("trained", "trained", "file"),
    Case("save-open", "save:open", "file"),
    Case("save-partial", "save:partial", "file"),
    Case("save-partial-new", "save:partial", "file", existing=False),
    Case("save-written", "save:written", "file"),
    Case("save-renamed", "save:renamed", "file"),
    Case("reg-gated", "gated", "registry"),
    Case("reg-save-partial", "save:partial", "registry"),
    Case("reg-save-renamed", "save:renamed", "registry"),
    Case("reg-switched", "registry:switched", "registry"),
    Case("timed-file", None, "file", delay=2.5),
    Case("timed-registry", None, "registry", delay=4.0),
]


def _args(case: Case, pipeline: Pipeline) -> list[str]:
    if case.mode == "file":
        return ["update", str(pipeline.ckpt[10]), str(pipeline.events["day11"]), "-o", str(case.target)]
    gate = ["--gate", str(pipeline.events["day12"]), "--max-drop", "0.99"] if case.point == "gated" else []
    return ["update", str(case.target), str(pipeline.events["day11"]), "-q", *gate]


def _start(case: Case, pipeline: Pipeline) -> None:
    env = {**os.environ, "RECINC_THREADS": "1"}
    if case.point is not None:
        env.update(RECINC_PAUSE_AT=case.point, RECINC_PAUSE_FILE=str(case.marker))
    case.proc = subprocess.Popen(
        [sys.executable, "-m", "recinc_cli", *_args(case, pipeline)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def killed(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    """Every case started at once, frozen (or timed), checked for the lock, then SIGKILLed."""
    cases = [Case(c.name, c.point, c.mode, c.existing, c.delay) for c in CASES]
    for case in cases:
        case.dir = tmp_path_factory.mktemp(case.name)
        if case.mode == "registry":
            make_registry(pipeline.ckpt[10], case.target)
        elif case.existing:
            shutil.copy(pipeline.ckpt[10], case.target)
        _start(case, pipeline)
    start = time.monotonic()
    pending = [c for c in cases if c.point is not None]
    while pending and time.monotonic() - start < 180:
        for case in list(pending):
            assert case.proc is not None
            if case.marker.exists():
                pending.remove(case)
            elif case.proc.poll() is not None:
                pytest.fail(f"{case.name}: exited {case.proc.returncode} before its pause point: {case.proc.stderr}")
        time.sleep(0.05)
    assert not pending, f"never reached their pause points: {[c.name for c in pending]}"
    # While frozen they hold their locks: a second run aimed at the same output must not start.
    for case in cases:
        if case.name in ("trained", "reg-gated"):
            second = run_cli(*_args(case, pipeline))
            assert second.exit_code == 9, (case.name, second.stderr)
            assert "another recinc run is writing it" in second.stderr
    for case in sorted(cases, key=lambda c: c.delay):
        assert case.proc is not None
        time.sleep(max(0.0, case.delay - (time.monotonic() - start)))
        os.killpg(case.proc.pid, signal.SIGKILL)
        case.proc.wait(timeout=30)
        if case.proc.stderr is not None:
            case.proc.stderr.close()
    return cases


def _check_serves(path: Path) -> int:
    """Load ``path`` (checksum verified), recommend from it; return its lineage length."""
    bundle = load_bundle(path)
    recs = api.recommend(path, users=[bundle.users.ids[1]], k=5)
    assert recs.height == 5
    return len(bundle.lineage)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_kill_leaves_the_previous_or_the_new_checkpoint(killed: list[Case], pipeline: Pipeline, name: str) -> None:
    case = next(c for c in killed if c.name == name)
    assert case.proc is not None
    # A timed run on a fast machine may finish first; the checks below hold either way.
    assert case.proc.returncode == -signal.SIGKILL or (case.point is None and case.proc.returncode == 0)
    before = sha256_file(pipeline.ckpt[10])
    if case.mode == "file":
        if case.target.exists():
            n = _check_serves(case.target)
            if case.point == "save:renamed":
                assert n == 2  # renamed: the new checkpoint, complete
            elif case.point is not None:
                assert sha256_file(case.target) == before  # killed before the rename: the old file
        else:
            assert not case.existing and case.point != "save:renamed"
        if case.point == "save:partial":
            (temp,) = _temps(case.dir)  # proof that the kill came mid-write
            assert temp.startswith(f".m.pt.{case.proc.pid}.") and (case.dir / temp).stat().st_size > 0
    else:
        reg = Registry(case.target)
        served = reg.latest_version()
        assert served == (2 if case.point == "registry:switched" else 1 if case.point else served)
        assert _check_serves(case.target) == served  # LATEST's file loads, recommends
        if case.point == "save:renamed":
            assert reg.versions() == [1, 2]  # written, never switched to: not served
    # The next successful run completes and sweeps the killed run's temp files.
    again = run_cli(*_args(case, pipeline))
    assert again.exit_code == 0, again.stderr
    directory = case.dir if case.mode == "file" else case.target
    assert _temps(directory) == []
    if case.mode == "file":
        assert _check_serves(case.target) == 2
    else:
        latest = Registry(case.target).latest_version()
        assert latest is not None and latest >= 2
        assert _check_serves(case.target) == 2
