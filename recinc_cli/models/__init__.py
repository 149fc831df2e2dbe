"""Model registry: ``MODELS[name]`` is the class behind ``--model name``.

A new model is a subclass of one family of :mod:`recinc_cli.models.base` (gradient-trained or
closed-form): a built-in one is named in ``BUILTIN`` here, a model outside recinc is passed to
:func:`register` by the user's own code before the CLI or API runs (ARCHITECTURE.md, "Where
things go").

A built-in model's module is imported the first time its class is looked up (start-up time:
``recommend`` of an ``mf`` checkpoint does not import scipy and the code of the other models).

>>> sorted(MODELS)
['ease', 'mf', 'ranker', 'sasrec', 'sknn']
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping

from recinc_cli.config import ModelConfig, declare_model
from recinc_cli.errors import UsageError
from recinc_cli.models.base import Recommender

#: Built-in ``--model`` name -> ``module:Class`` under this package, in ``config.MODEL_NAMES``
#: order. Their traits are declared in ``config`` already (a test checks them against the classes).
BUILTIN: dict[str, str] = {
    "mf": "mf:MF",
    "sasrec": "sasrec:SASRec",
    "ease": "ease:EASE",
    "sknn": "sknn:SKNN",
    "ranker": "ranker:Ranker",
}


class Registry(MutableMapping[str, type[Recommender]]):
    """``--model`` name -> class, where a built-in class is imported on its first lookup.

    Iterating (``sorted(MODELS)``, ``name in MODELS``) imports nothing; ``MODELS[name]``,
    ``.items()`` and ``.values()`` import the modules of the classes they return.
    """

    def __init__(self, builtin: Mapping[str, str]) -> None:
        self._entries: dict[str, type[Recommender] | str] = dict(builtin)

    def __getitem__(self, name: str) -> type[Recommender]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, cls = entry.split(":")
            entry = self._entries[name] = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
        return entry

    def __setitem__(self, name: str, cls: type[Recommender]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


#: ``--model`` name -> class; the built-in models, then those added by :func:`register`.
MODELS = Registry(BUILTIN)


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

    >>> mf = MODELS["mf"]
    >>> register(mf) is mf and MODELS["mf"] is mf
    True
    """
    declare_model(cls.name, sequential=cls.CONTEXT, gradient=not cls.CLOSED_FORM, pop_prior=cls.POP_PRIOR)
    MODELS[cls.name] = cls
    return cls
