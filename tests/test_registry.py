"""The model registry: numbered versions, the LATEST pointer, rollback, retention."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Pipeline, make_registry, only_files

from recinc_cli.data.io import sha256_file
from recinc_cli.store.format import load_bundle


def names(d: Path) -> list[str]:
    return only_files(d)


@pytest.fixture
def reg(pipeline: Pipeline, tmp_path: Path) -> Path:
    """A registry whose version 1 is the pipeline's init checkpoint."""
    return make_registry(pipeline.ckpt[10], tmp_path / "models")


def test_init_and_updates_number_versions_and_switch_latest(cli, pipeline: Pipeline, tmp_path: Path) -> None:
    root = tmp_path / "models"
    r = cli(
        "init",
        "--model",
        "mf",
        pipeline.events["base"],
        "--registry",
        root,
        "--dim",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "4096",
    )
    assert r.exit_code == 0, r.stderr
    assert f"-> {root / '000001.pt'} (now LATEST)" in r.stderr
    assert (root / "LATEST").read_text() == "000001.pt\n"
    for day, version in (("day11", 2), ("day12", 3)):
        r = cli("update", root, pipeline.events[day])  # no -o: the new version goes into the same registry
        assert r.exit_code == 0, r.stderr
        assert (root / "LATEST").read_text() == f"{version:06d}.pt\n"
    assert names(root) == ["000001.pt", "000002.pt", "000003.pt", "LATEST"]
    latest = load_bundle(root)  # a directory loads its LATEST
    assert [e["version"] for e in latest.lineage] == [1, 2, 3]
    assert latest.lineage[-1]["parent_sha256"] == sha256_file(root / "000002.pt")
    assert latest.lineage[-1]["parent_path"] == str(root / "000002.pt")
    # recommend and evaluate read LATEST
    r = cli("recommend", root, "--users", latest.users.ids[1], "-k", "3")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 4, r.stderr
    r = cli("evaluate", root, pipeline.events["day13"], "--json")
    assert r.exit_code == 0 and f'"checkpoint": "{root}"' in r.stdout, r.stderr


def test_update_from_a_file_into_a_registry_and_from_a_registry_to_a_file(
    cli, pipeline: Pipeline, reg: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    r = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "--registry", other)
    assert r.exit_code == 0, r.stderr
    assert names(other) == ["000001.pt", "LATEST"]
    r = cli("update", reg, pipeline.events["day11"], "-o", tmp_path / "m11.pt")
    assert r.exit_code == 0, r.stderr
    assert names(reg) == ["000001.pt", "LATEST"]  # read LATEST, wrote the file only
    assert load_bundle(tmp_path / "m11.pt").lineage[-1]["parent_sha256"] == sha256_file(reg / "000001.pt")


def test_rollback_default_and_to_and_the_next_update_builds_on_it(cli, pipeline: Pipeline, reg: Path) -> None:
    for day in ("day11", "day12"):
        assert cli("update", reg, pipeline.events[day]).exit_code == 0
    r = cli("rollback", reg)
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip() == f"rollback: {reg} LATEST 000003.pt -> 000002.pt"
    assert (reg / "LATEST").read_text() == "000002.pt\n"
    r = cli("rollback", reg, "--to", "3")  # roll forward: nothing was deleted
    assert r.exit_code == 0 and (reg / "LATEST").read_text() == "000003.pt\n"
    assert cli("rollback", reg, "--to", "1").exit_code == 0
    r = cli("update", reg, pipeline.events["day11"])
    assert r.exit_code == 0, r.stderr
    assert (reg / "LATEST").read_text() == "000004.pt\n"  # numbers are never reused
    assert load_bundle(reg).lineage[-1]["parent_sha256"] == sha256_file(reg / "000001.pt")


def test_rollback_errors(cli, expect_error, pipeline: Pipeline, reg: Path, tmp_path: Path) -> None:
    expect_error(cli("rollback", reg), 2, f"{reg}: no version older than the one served to roll back to")
    expect_error(cli("rollback", reg, "--to", "7"), 2, f"{reg}: no version 7 to roll back to (versions: 1)")
    expect_error(
        cli("rollback", tmp_path / "nope"),
        2,
        f"{tmp_path / 'nope'}: not a registry directory; create one with "
        f"`recinc init EVENTS --registry {tmp_path / 'nope'}`",
    )
    # A damaged version is refused before LATEST moves.
    (reg / "000002.pt").write_bytes((reg / "000001.pt").read_bytes()[:5000])
    r = cli("rollback", reg, "--to", "2")
    expect_error(r, 4, pattern=rf"{reg / '000002.pt'}: damaged checkpoint .*")
    assert (reg / "LATEST").read_text() == "000001.pt\n"


def test_broken_or_missing_pointer_is_exit_4_and_rollback_repairs_it(
    cli, expect_error, pipeline: Pipeline, reg: Path, tmp_path: Path
) -> None:
    (reg / "LATEST").write_text("000009.pt\n")
    msg = f"{reg / 'LATEST'}: points at '000009.pt', which is no version in {reg}; "
    msg += f"fix it with `recinc rollback {reg} --to N`"
    expect_error(cli("recommend", reg, "--all"), 4, msg)
    expect_error(cli("update", reg, pipeline.events["day11"]), 4, msg)
    assert cli("rollback", reg, "--to", "1").exit_code == 0
    (reg / "LATEST").unlink()
    expect_error(
        cli("evaluate", reg, pipeline.events["day11"]),
        4,
        f"{reg / 'LATEST'}: missing although the registry holds versions; "
        f"restore it with `recinc rollback {reg} --to N`",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(
        cli("recommend", empty, "--all"),
        4,
        f"{empty}: empty registry (no LATEST); create the first version with `recinc init EVENTS --registry {empty}`",
    )


def test_keep_prunes_old_versions_but_never_the_served_one(cli, pipeline: Pipeline, reg: Path) -> None:
    for day in ("day11", "day12"):
        assert cli("update", reg, pipeline.events[day]).exit_code == 0
    assert cli("rollback", reg, "--to", "1").exit_code == 0
    r = cli("update", reg, pipeline.events["day13"], "--keep", "2")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.rstrip().endswith("; pruned 000001.pt, 000002.pt")
    # newest two (3, 4) stay; 1 went, 2 went; 4 was built on 1 and is served.
    assert names(reg) == ["000003.pt", "000004.pt", "LATEST"]
    assert cli("rollback", reg, "--to", "3").exit_code == 0
    assert cli("update", reg, pipeline.events["day11"], "--keep", "1", "--force").exit_code == 0
    assert names(reg) == ["000005.pt", "LATEST"]


def test_usage_errors(cli, expect_error, pipeline: Pipeline, reg: Path, tmp_path: Path) -> None:
    both = cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", tmp_path / "a.pt", "--registry", reg)
    one_of = "give exactly one of -o OUT (a checkpoint file) or --registry DIR (numbered versions)"
    expect_error(both, 2, one_of)
    expect_error(cli("update", pipeline.ckpt[10], pipeline.events["day11"]), 2, one_of)
    expect_error(
        cli("update", pipeline.ckpt[10], pipeline.events["day11"], "-o", tmp_path / "a.pt", "--keep", "3"),
        2,
        "--keep prunes registry versions; it needs --registry DIR",
    )
    expect_error(cli("update", reg, pipeline.events["day11"], "--keep", "0"), 2, "--keep must be at least 1 (got 0)")
    expect_error(
        cli("init", pipeline.events["day11"], "-o", reg),
        2,
        f"-o {reg}: is a directory; give a file name, or use --registry {reg}",
    )
    assert names(reg) == ["000001.pt", "LATEST"]
    assert not (tmp_path / "a.pt").exists()
