"""Model registry: ``MODELS[name]`` is the class behind ``--model name``.

>>> sorted(MODELS)
['mf']
"""

from __future__ import annotations

from recinc_cli.config import ModelConfig
from recinc_cli.errors import UsageError
from recinc_cli.models.base import Recommender
from recinc_cli.models.mf import MF

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (MF,)}


def build_model(cfg: ModelConfig, n_users: int, n_items: int) -> Recommender:
    """Instantiate ``cfg.name`` with tables of ``n_users`` / ``n_items`` rows (row 0 included)."""
    try:
        cls = MODELS[cfg.name]
    except KeyError:
        raise UsageError(f"--model {cfg.name!r} is unknown; choose one of {', '.join(sorted(MODELS))}") from None
    return cls(n_users, n_items, cfg)
