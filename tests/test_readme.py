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
