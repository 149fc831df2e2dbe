"""What a fit reports: the lineage stats of one ``init`` or ``update`` run."""

from __future__ import annotations

from typing import Any

import polars as pl

from recinc_cli.training.incremental import iso_ms


def run_stats(events: pl.DataFrame, seconds: float) -> dict[str, Any]:
    """The lineage stats every closed-form run shares: one pass, no learning rate or loss."""
    ts = events["timestamp"].dt.epoch("ms")
    return {
        "events": events.height,
        "epochs": 1,
        "lr": None,
        "final_loss": None,
        "train_seconds": round(seconds, 3),
        "epoch_seconds": round(seconds, 3),
        "events_per_second": round(events.height / max(seconds, 1e-9), 1),
        "ts_min": iso_ms(int(ts.min())),  # type: ignore[arg-type]
        "ts_max": iso_ms(int(ts.max())),  # type: ignore[arg-type]
    }
