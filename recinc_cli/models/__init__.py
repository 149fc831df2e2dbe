"""Model registry: ``MODELS[name]`` is the class behind ``--model name``.

A new model is a subclass of one family of :mod:`recinc_cli.models.base` (gradient-trained or
closed-form) passed to :func:`register`, here for a built-in model, or in the user's own code
before the CLI or API runs (ARCHITECTURE.md, "Where things go").

>>> sorted(MODELS)
['ease', 'mf', 'ranker', 'sasrec', 'sknn']
"""

from __future__ import annotations

from collections.abc import Mapping

from recinc_cli.config import ModelConfig, declare_model
from recinc_cli.errors import UsageError
from recinc_cli.models.base import Recommender
from recinc_cli.models.ease import EASE
from recinc_cli.models.mf import MF
from recinc_cli.models.ranker import Ranker
from recinc_cli.models.sasrec import SASRec
from recinc_cli.models.sknn import SKNN

#: ``--model`` name -> class; filled by :func:`register`.
MODELS: dict[str, type[Recommender]] = {}


def build_model(cfg: ModelConfig, sizes: Mapping[str, int]) -> Recommender:
    """Instantiate ``cfg.name`` with ``sizes[axis]`` table rows (row 0 included), e.g.
    ``{"user": 3, "item": 5}``; see :class:`~recinc_cli.models.base.Recommender`."""
    try:
        cls = MODELS[cfg.name]
    except KeyError:
        raise UsageError(f"--model {cfg.name!r} is unknown; choose one of {', '.join(sorted(MODELS))}") from None
    return cls(sizes, cfg)


def register(cls: type[Recommender]) -> type[Recommender]:
    """Make ``cls`` the model behind ``--model cls.name`` (a class decorator too); return it.

    Its family (``CLOSED_FORM``), ``CONTEXT`` and ``POP_PRIOR`` decide which options apply to
    it and which fit path ``init`` and ``update`` take; its checkpoints name it and load
    through this registry. Registering a name again replaces the class.

    >>> register(MF) is MF and MODELS["mf"] is MF
    True
    """
    declare_model(cls.name, sequential=cls.CONTEXT, gradient=not cls.CLOSED_FORM, pop_prior=cls.POP_PRIOR)
    MODELS[cls.name] = cls
    return cls


for _builtin in (MF, SASRec, EASE, SKNN, Ranker):
    register(_builtin)
