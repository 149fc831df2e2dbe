"""Update-time policies around training: late events, pruning expired items, parent snapshots.

The watermark is the newest event time a checkpoint has applied (``Bundle.watermark_ms``).
An event older than watermark - ``allowed_lateness`` arrived late: a replayed or corrected log.
``--late keep`` trains on it (it still counts in the lineage), ``drop`` skips it, ``fail``
refuses the slice with exit 8 so a pipeline can stop and look.

>>> import datetime as dt, polars as pl
>>> from recinc_cli.config import TrainConfig
>>> ev = pl.DataFrame({"timestamp": [dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 5)]})
>>> wm = int(dt.datetime(2026, 1, 3, tzinfo=dt.timezone.utc).timestamp() * 1000)
>>> kept, n = late_events(ev, wm, TrainConfig(late="drop"), "day.parquet")
>>> kept.height, n
(1, 1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl
import torch

from recinc_cli.config import TrainConfig
from recinc_cli.errors import LateDataError
from recinc_cli.training.report import iso_ms

if TYPE_CHECKING:
    from recinc_cli.store.bundle import Bundle


def late_events(events: pl.DataFrame, watermark_ms: int, cfg: TrainConfig, source: str) -> tuple[pl.DataFrame, int]:
    """Apply ``cfg.late`` to the events older than the watermark minus the allowed lateness.

    Returns the events to use and how many were late. Raises :class:`LateDataError` under
    ``late="fail"``, naming ``source``, the first late row (0-based) and its time.
    """
    if watermark_ms <= 0 or events.height == 0:
        return events, 0
    cutoff_ms = watermark_ms - int(cfg.allowed_lateness_s * 1000)
    late = events["timestamp"].dt.epoch("ms") < cutoff_ms
    n_late = int(late.sum())
    if n_late == 0:
        return events, 0
    if cfg.late == "fail":
        first = int(late.arg_true()[0])
        raise LateDataError(
            f"{source}: {n_late:,} events are older than the model's watermark {iso_ms(watermark_ms)} minus "
            f"--allowed-lateness ({cfg.allowed_lateness_s:g}s), first at row {first} "
            f"({events['timestamp'][first]}); pass --late keep or --late drop, or raise --allowed-lateness"
        )
    return (events.filter(~late) if cfg.late == "drop" else events), n_late


def prune_expired(bundle: Bundle) -> int:
    """Drop the training state of expired items: zero their Adam moments and embedding rows.

    Their indices stay reserved (never reused); an item that comes back trains from a blank
    row. Returns how many item rows were pruned (already-blank rows are not counted again).
    """
    expired = bundle.expired()
    if expired is None or not bool(expired.any()):
        return 0
    rows = expired.nonzero().squeeze(1)
    model = bundle.model
    item_tables = [n for n, axis in model.tables().items() if axis == "item"]
    names = [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        pruned = 0
        for name in item_tables:
            table = model.get_parameter(name) if name in names else model.get_buffer(name)
            if table.is_floating_point():
                live = table[rows].reshape(len(rows), -1).abs().sum(1) > 0
                pruned = max(pruned, int(live.sum()))
                table[rows] = 0
    # Optimizer state: Trainer keeps [Adam(dense), SparseAdam(sparse)], each indexing its
    # parameters in named_parameters order.
    dense = [n for n in names if n not in model.SPARSE]
    sparse = [n for n in names if n in model.SPARSE]
    for opt_state, group in zip(bundle.optimizer, (dense, sparse), strict=False):
        for k, per_param in opt_state["state"].items():
            name = group[int(k)]
            if name not in item_tables:
                continue
            for t in per_param.values():
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == len(expired):
                    t[rows] = 0
    return pruned


def parent_anchor(bundle: Bundle) -> dict[str, torch.Tensor]:
    """The parent's dense parameters (rows of the parent's tables only), for ``--anchor-weight``.

    Sparse-gradient tables (mf's user rows) are not anchored: an update only touches the rows
    of the users in its slice there, so the others cannot drift.
    """
    model = bundle.model
    return {n: p.detach().clone() for n, p in model.named_parameters() if n not in model.SPARSE}
