"""Corrupt and hostile checkpoints: each is one line and exit 4, for every command that reads one."""

from __future__ import annotations

import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import Pipeline, RunsCode, only_files

from recinc_cli.errors import CheckpointError
from recinc_cli.store.checksum import payload_digest
from recinc_cli.store.format import FORMAT_VERSION, load_bundle


def _tensor_byte(path: Path) -> int:
    """Offset of a byte in the middle of the largest tensor record of a checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    head = path.read_bytes()[info.header_offset : info.header_offset + 30]
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


def _make(kind: str, src: Path, dst: Path) -> str:
    """Write a ``kind`` of bad checkpoint to ``dst``; return the expected message after the path."""
    data = bytearray(src.read_bytes())
    if kind == "truncated":
        dst.write_bytes(data[: len(data) * 2 // 3])
        return r"damaged checkpoint \(.+\); restore it from a backup"
    if kind == "empty":
        dst.write_bytes(b"")
        return r"not a recinc checkpoint \(not a torch \.pt file\); check the path"
    if kind == "flipped":
        data[_tensor_byte(src)] ^= 0x10
        dst.write_bytes(data)
        return (
            r"damaged checkpoint \(payload checksum mismatch: stored [0-9a-f]{12}, content [0-9a-f]{12}\); "
            r"restore it from a backup or `recinc rollback`"
        )
    raw = torch.load(src, weights_only=True)
    if kind == "newer":
        payload = {k: v for k, v in raw.items() if k != "checksum"} | {"format_version": FORMAT_VERSION + 1}
        torch.save({**payload, "checksum": payload_digest(payload)}, dst)
        return rf"format version {FORMAT_VERSION + 1} is newer than this recinc \(.+\); upgrade recinc"
    if kind == "edited":  # a plain value changed by hand: the zip is fine, the checksum is not
        torch.save({**raw, "pop_weight": 99.0}, dst)
        return r"damaged checkpoint \(payload checksum mismatch: .*"
    assert kind == "hostile"
    torch.save({**raw, "lineage": [RunsCode(dst.with_name("pwned"))]}, dst)
    return (
        r"refused to load: it holds objects other than tensors and plain values \(not written by recinc: "
        r"possibly malicious, or damaged\); nothing in it was run"
    )


KINDS = ("truncated", "empty", "flipped", "newer", "edited", "hostile")


@pytest.mark.parametrize("kind", KINDS)
def test_bad_checkpoint_is_exit_4_for_every_reader(
    cli, expect_error, pipeline: Pipeline, tmp_path: Path, kind: str
) -> None:
    bad = tmp_path / "bad.pt"
    expected = _make(kind, pipeline.ckpt[11], bad)
    runs = {
        "recommend": ("recommend", bad, "--all", "-o", tmp_path / "recs.csv"),
        "evaluate": ("evaluate", bad, pipeline.events["day12"]),
        "update": ("update", bad, pipeline.events["day12"], "-o", tmp_path / "out.pt"),
        "init --init pretrained": (
            "init", pipeline.events["day11"], "-o", tmp_path / "out.pt", "--dim", "8", "--init", f"pretrained:{bad}",
        ),
    }  # fmt: skip
    for what, args in runs.items():
        r = cli(*args)
        message = expect_error(r, 4, pattern=rf"{bad}: {expected}")
        assert message, what
    assert only_files(tmp_path) == ["bad.pt"]  # nothing written; the hostile payload never ran


def test_random_bit_flips_are_caught_or_harmless(pipeline: Pipeline, tmp_path: Path) -> None:
    """A flipped bit anywhere: a CheckpointError, or (in bytes the payload does not use) the
    very same payload. Never a silently different model, never another exception."""
    src = pipeline.ckpt[11]
    original = torch.load(src, weights_only=True)["checksum"]
    rng = random.Random(11)
    data = src.read_bytes()
    outcomes = {"error": 0, "same": 0}
    for _ in range(60):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path = tmp_path / "f.pt"
        path.write_bytes(flipped)
        try:
            load_bundle(path)
        except CheckpointError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
            continue
        assert torch.load(path, weights_only=True)["checksum"] == original
        outcomes["same"] += 1
    assert outcomes["error"] >= 50, outcomes
