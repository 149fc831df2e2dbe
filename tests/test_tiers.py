"""The fast tier (``make test-fast``) leaves out exactly the files conftest names."""

from __future__ import annotations

from pathlib import Path

from conftest import SLOW_FILES


def test_every_slow_file_exists_so_a_rename_cannot_move_it_into_the_fast_tier() -> None:
    here = Path(__file__).parent
    assert sorted(n for n in SLOW_FILES if not (here / n).is_file()) == []
    assert "test_models.py" not in SLOW_FILES  # the model contract is in the fast tier
