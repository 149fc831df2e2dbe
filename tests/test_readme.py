"""The README's Python examples run as written (issue 13, bug 2: the API example updated with a
day it never preprocessed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SAMPLE


def python_blocks() -> list[str]:
    """Every ```python block of README.md, in order."""
    return re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.S | re.M)


def test_every_python_example_of_the_readme_runs(tmp_path: Path) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    # The API example builds the files (m1.pt, ...) the other snippets read, so it runs first.
    blocks.sort(key=lambda b: "from recinc_cli import api" not in b)
    (tmp_path / "sample_data").symlink_to(SAMPLE)
    env = {**os.environ, "RECINC_THREADS": "1"}
    for i, code in enumerate(blocks):
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"README python block {i}:\n{code}\n{proc.stderr}"
    assert (tmp_path / "m2.pt").is_file() and (tmp_path / "models" / "LATEST").is_file()


def demo_block() -> str:
    """The shell block of the README section "The demo in detail"."""
    section = (REPO / "README.md").read_text().split("## The demo in detail", 1)[1]
    found = re.search(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert found, "no shell block under 'The demo in detail'"
    return found.group(1)


def test_the_demo_commands_of_the_readme_run_as_written(tmp_path: Path) -> None:
    (tmp_path / "sample_data").symlink_to(SAMPLE)
    bin_dir = Path(sys.executable).parent  # where pip put the `recinc` script
    env = {**os.environ, "RECINC_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", demo_block()], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "demo_out"
    assert (out / "m14.pt").is_file() and (out / "s11.pt").is_file() and (out / "r11.pt").is_file()
    assert (out / "recs.csv").read_text().startswith("user_id,rank,item_id,score,source\n")
    assert (out / "models" / "LATEST").read_text().strip().endswith("000001.pt")  # after the rollback
    # Four mf days, the sasrec day and the ranker day, each beside popularity: an ndcg@10 row and the row of the
    # 95% interval of its lift (README "How far to trust the figures"); then sknn on the session
    # log: ndcg@10 over every next click, over each session's last click, and the interval.
    flat = " ".join(proc.stdout.split())
    assert proc.stdout.count("ndcg@10") == 15
    assert flat.count("ndcg@10 - popular (95% interval)") == 7
    assert flat.count("session evaluation:") == 1 and (out / "sknn.pt").is_file()
    # The live visit clicked the first three items of a chain: the chain's next one is offered.
    live = [line for line in proc.stdout.splitlines() if line.startswith("live,")]
    assert len(live) == 5 and any(line.split(",")[2] == "i0378" for line in live)
