"""``--help`` text derived from the configs: the models an option applies to, each model's
default, and the choices of ``--model``. No number or model name is written into a help string,
so a new model or a changed default shows up in ``--help`` by itself.

>>> applies("ease_l2", "Ridge penalty.")
'ease, ranker: Ridge penalty.'
>>> applies("seed", "Random seed.")
'Random seed.'
>>> per_model("update_epochs", models=("mf", "sasrec"))
'[default: mf 10, sasrec 1]'
>>> per_model("l2")
'[default: 1e-06]'
"""

from __future__ import annotations

from collections.abc import Sequence

from recinc_cli.config import MODEL_NAMES, TrainConfig, models_for


def applies(field: str, text: str) -> str:
    """``text`` labelled with the models the option of config field ``field`` applies to
    (:func:`~recinc_cli.config.models_for`), unless it applies to every model."""
    models = models_for(field)
    return text if models == tuple(MODEL_NAMES) else f"{', '.join(models)}: {text}"


def per_model(field: str, none: str = "", models: Sequence[str] | None = None) -> str:
    """``[default: ...]`` of :class:`TrainConfig` field ``field`` for each model it applies to,
    or one value when they agree. ``none`` says what a ``None`` default means."""
    names = models_for(field) if models is None else models
    shown = {n: _show(getattr(TrainConfig.for_model(n), field), none) for n in names}
    if len(set(shown.values())) == 1:
        return f"[default: {next(iter(shown.values()))}]"
    return "[default: " + ", ".join(f"{n} {v}" for n, v in shown.items()) + "]"


def train_option(field: str, text: str, none: str = "") -> str:
    """Help of a per-model training option: :func:`applies` then :func:`per_model`."""
    return f"{applies(field, text)} {per_model(field, none)}"


def model_metavar() -> str:
    """``[mf|sasrec|ease]``: the choices of ``--model``, as ``--help`` shows them."""
    return "[" + "|".join(MODEL_NAMES) + "]"


def _show(value: object, none: str) -> str:
    if value is None:
        return none
    return f"{value:g}" if isinstance(value, float) else str(value)
