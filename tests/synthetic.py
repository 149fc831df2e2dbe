"""Tiny hand-made event logs for the incremental-update tests (written straight as events Parquet).

Times are days (floats) after :data:`T0`; every event is a ``view`` of weight 1 unless given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
DAY_MS = 86_400_000
#: Tiny mf training for synthetic logs: one batch per epoch, full softmax.
TINY = ("--model", "mf", "--dim", "4", "--epochs", "2", "--update-epochs", "1", "--batch-size", "4096", "--seed", "3")

Row = tuple[str, str, float | dt.datetime] | tuple[str, str, float | dt.datetime, str]


def at(day: float | dt.datetime) -> dt.datetime:
    """The time ``day`` days after :data:`T0` (whole milliseconds); a datetime is kept as it is."""
    if isinstance(day, dt.datetime):
        return day
    return T0 + dt.timedelta(milliseconds=round(day * DAY_MS))


def ms(day: float) -> int:
    """Unix milliseconds of :func:`at` ``(day)``."""
    return int(at(day).timestamp() * 1000)


def write_events(path: Path, rows: Iterable[Row]) -> Path:
    """Write ``(user, item, day or datetime[, event_type])`` rows as a time-sorted events Parquet."""
    rows = list(rows)
    df = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [at(r[2]) for r in rows],
            "event_type": [r[3] if len(r) > 3 else "view" for r in rows],  # type: ignore[misc]
            "weight": [1.0] * len(rows),
        },
        schema={
            "user_id": pl.String,
            "item_id": pl.String,
            "timestamp": pl.Datetime("ms", "UTC"),
            "event_type": pl.String,
            "weight": pl.Float32,
        },
    )
    df.sort("timestamp", maintain_order=True).write_parquet(path)
    return path


def random_rows(
    users: Sequence[str], items: Sequence[str], n: int, day_from: float, day_to: float, seed: int
) -> list[Row]:
    """``n`` events of random users on random items, spread evenly over ``[day_from, day_to)``."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, len(users), n)
    i = rng.integers(0, len(items), n)
    days = np.linspace(day_from, day_to, n, endpoint=False)
    return [(users[a], items[b], float(d)) for a, b, d in zip(u, i, days, strict=True)]


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{j:03d}" for j in range(n)]
