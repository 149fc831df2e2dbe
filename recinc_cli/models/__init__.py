"""Model registry: ``MODELS[name]`` is the class behind ``--model name``.

>>> sorted(MODELS)
['ease', 'mf', 'ranker', 'sasrec', 'sknn']
"""

from __future__ import annotations

from collections.abc import Mapping

from recinc_cli.config import ModelConfig
from recinc_cli.errors import UsageError
from recinc_cli.models.base import Recommender
from recinc_cli.models.ease import EASE
from recinc_cli.models.mf import MF
from recinc_cli.models.ranker import Ranker
from recinc_cli.models.sasrec import SASRec
from recinc_cli.models.sknn import SKNN

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (MF, SASRec, EASE, SKNN, Ranker)}


def build_model(cfg: ModelConfig, sizes: Mapping[str, int]) -> Recommender:
    """Instantiate ``cfg.name`` with ``sizes[axis]`` table rows (row 0 included), e.g.
    ``{"user": 3, "item": 5}``; see :class:`~recinc_cli.models.base.Recommender`."""
    try:
        cls = MODELS[cfg.name]
    except KeyError:
        raise UsageError(f"--model {cfg.name!r} is unknown; choose one of {', '.join(sorted(MODELS))}") from None
    return cls(sizes, cfg)
