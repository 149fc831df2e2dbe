"""Two runs aimed at the same output or registry never interleave (exit 9, or --wait)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import Pipeline, only_files

from recinc_cli.store.locking import exclusive, lock_path_for
from recinc_cli.store.registry import Registry


def test_held_output_lock_fails_fast_with_exit_9(cli, expect_error, pipeline: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "m11.pt"
    lock = lock_path_for(out)
    assert lock == tmp_path / ".m11.pt.lock"
    with exclusive(lock, "held by the test"):
        start = time.monotonic()
        r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", out)
        expect_error(
            r,
            9,
            f"{out}: another recinc run is writing it (lock {lock} held); "
            "nothing was done: retry later or pass --wait SECONDS",
        )
        assert time.monotonic() - start < 2.0  # fails fast, before loading anything
        r = cli("init", "--model", "mf", pipeline.events["day11"], "-o", out, "--wait", "0.3")
        expect_error(r, 9, pattern=r".*\(lock .* held after waiting 0\.3s\); nothing was done: .*")
    assert only_files(tmp_path) == []
    # Released (even by a killed holder: the kernel drops flock locks), the next run goes ahead.
    assert cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", out).exit_code == 0


def test_wait_outlasts_a_holder_that_releases(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with exclusive(lock_path_for(root), "holder"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    start = time.monotonic()
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "--registry", root, "--wait", "30")
    t.join()
    assert r.exit_code == 0, r.stderr
    assert time.monotonic() - start >= 0.4
    assert Registry(root).latest_version() == 1


def test_registry_lock_covers_rollback(cli, expect_error, pipeline: Pipeline, tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert cli("update", pipeline.ckpt[10], pipeline.events["day11"], "--registry", root).exit_code == 0
    assert cli("update", root, pipeline.events["day12"]).exit_code == 0
    with exclusive(root / ".lock", "test"):
        expect_error(cli("rollback", root), 9, pattern=rf"{root}: another recinc run is writing it .*")
        expect_error(cli("update", root, pipeline.events["day13"]), 9, pattern=rf"{root}: another recinc run .*")
    assert (root / "LATEST").read_text() == "000002.pt\n"
