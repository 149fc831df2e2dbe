"""The Python API: one function per CLI command, usable without the CLI.

>>> from recinc_cli import api  # doctest: +SKIP
>>> api.preprocess(["log.csv"], "events.parquet")  # doctest: +SKIP
>>> api.init("events.parquet", "m0.pt")  # doctest: +SKIP
>>> api.update("m0.pt", "slice.parquet", "m1.pt")  # doctest: +SKIP
>>> api.recommend("m1.pt", users=["u1"], k=10)  # doctest: +SKIP
>>> api.evaluate("m1.pt", "next_slice.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.errors import BadInputError
from recinc_cli.evaluate import latency_ms, ranking_metrics, slice_truth
from recinc_cli.io import read_events, sha256_file
from recinc_cli.preprocess import preprocess
from recinc_cli.progress import NullReporter, Reporter

# The modules below import torch (about 2 s); they are imported inside the functions that need
# them so that `recinc preprocess` and `--help` start fast.

__all__ = ["evaluate", "init", "preprocess", "recommend", "update"]


def init(
    events: str | Path,
    out: str | Path,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train a new model on the events Parquet ``events`` and save it to ``out``.

    Returns the lineage entry of the new checkpoint (counts, loss, seconds, sha256).
    """
    from recinc_cli.checkpoint import save_bundle
    from recinc_cli.lifecycle import create_bundle, lineage_entry

    model_cfg, train_cfg = model_cfg or ModelConfig(), train_cfg or TrainConfig()
    df = read_events(events)
    data_sha = sha256_file(events)
    bundle, stats = create_bundle(df, model_cfg, train_cfg, reporter)
    entry = lineage_entry("init", data_sha, str(events), None, bundle, stats)
    bundle.lineage.append(entry)
    return {**entry, "events_per_second": stats["events_per_second"], "sha256": save_bundle(bundle, out)}


def update(
    checkpoint: str | Path,
    events: str | Path,
    out: str | Path,
    force: bool = False,
    reporter: Reporter | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Fold the events Parquet ``events`` into the model at ``checkpoint``; save to ``out``.

    ``overrides`` are :class:`TrainConfig` fields for this run (``None`` = keep stored).
    When this lineage already applied the same data (by sha256) nothing is trained or written,
    unless ``force``; the result then has ``skipped=True``.
    """
    from recinc_cli.checkpoint import load_bundle, save_bundle
    from recinc_cli.lifecycle import lineage_entry, update_bundle

    bundle = load_bundle(checkpoint)
    df = read_events(events)  # validates the slice before it is hashed
    data_sha = sha256_file(events)
    if data_sha in bundle.applied_data() and not force:
        return {"skipped": True, "data_sha256": data_sha, "data_path": str(events)}
    train_cfg = bundle.train_cfg.replace(**overrides)
    parent_sha = sha256_file(checkpoint)
    stats = update_bundle(bundle, df, train_cfg, reporter)
    entry = lineage_entry("update", data_sha, str(events), parent_sha, bundle, stats)
    bundle.lineage.append(entry)
    return {
        **entry,
        "skipped": False,
        "events_per_second": stats["events_per_second"],
        "sha256": save_bundle(bundle, out),
    }


def recommend(
    checkpoint: str | Path,
    users: Sequence[str] | None = None,
    k: int = 10,
    reporter: Reporter | None = None,
) -> pl.DataFrame:
    """Top-``k`` unseen items per user; ``users=None`` means every user the model knows.

    Users unknown to the model get the decayed most-popular items (``source="popular"``).
    Returns columns ``user_id, rank, item_id, score, source`` in the order of ``users``.
    """
    from recinc_cli.checkpoint import load_bundle
    from recinc_cli.recommend import popularity_scorer, top_k

    reporter = reporter or NullReporter()
    bundle = load_bundle(checkpoint)
    raw = pl.Series("user_id", bundle.users.ids[1:] if users is None else list(users), pl.String)
    idx = bundle.users.lookup(raw)
    known = idx > 0
    model = bundle.model.eval()
    items = np.zeros((len(raw), k), dtype=np.int64)
    scores = np.full((len(raw), k), -np.inf, dtype=np.float32)
    reporter.start("scoring users", len(raw))
    items[known], scores[known] = top_k(model.score, idx[known], bundle.seen, k, progress=reporter.advance)
    if not known.all():
        # Every cold-start user gets the same list: rank once, then broadcast.
        cold_items, cold_scores = top_k(popularity_scorer(bundle.item_pop), np.zeros(1, np.int64), bundle.seen, k)
        items[~known], scores[~known] = cold_items, cold_scores
        reporter.advance(int((~known).sum()))
    reporter.stop()
    item_ids = pl.Series(bundle.items.ids, dtype=pl.String)
    flat = items.reshape(-1)
    frame = pl.DataFrame(
        {
            "user_id": np.repeat(raw.to_numpy(), k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(raw)),
            "item_id": item_ids.gather(flat),
            "score": scores.reshape(-1),
            "source": np.repeat(np.where(known, "model", "popular"), k),
        }
    )
    return frame.filter(pl.Series(flat > 0))


def evaluate(
    checkpoint: str | Path, events: str | Path, k: int = 10, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Next-slice evaluation of the model and of its most-popular baseline on ``events``.

    Returns ``{"k", "users", "model": {...}, "popular": {...}, "latency_ms": {"p50", "p99"}}``
    with the metrics of :func:`~recinc_cli.evaluate.ranking_metrics` for each scorer. Raises
    :class:`BadInputError` when no user is eligible (the metrics would be undefined).
    """
    from recinc_cli.checkpoint import load_bundle
    from recinc_cli.recommend import popularity_scorer, top_k

    reporter = reporter or NullReporter()
    bundle = load_bundle(checkpoint)
    df = read_events(events)
    users, row, truth = slice_truth(df, bundle.users, bundle.items, bundle.seen.contains)
    if len(users) == 0:
        raise BadInputError(f"{events}: no user known to the model has new items there; nothing to evaluate")
    result: dict[str, Any] = {
        "k": k,
        "users": len(users),
        "test_events": df.height,
        "catalogue": len(bundle.items) - 1,
        "checkpoint": str(checkpoint),
    }
    model = bundle.model.eval()
    scorers = {"model": model.score, "popular": popularity_scorer(bundle.item_pop)}
    reporter.start("evaluating", 2 * len(users))
    for name, fn in scorers.items():
        top, _ = top_k(fn, users, bundle.seen, k, progress=reporter.advance)
        result[name] = ranking_metrics(top, row, truth, k, len(bundle.items) - 1)
    reporter.stop()
    result["latency_ms"] = latency_ms(lambda u: top_k(model.score, u, bundle.seen, k), users)
    return result
