"""Creating a model (``init``) and folding a slice into it (``update``).

Both run the same :class:`~recinc_cli.train.Trainer` and record one lineage entry each.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recinc_cli import __version__
from recinc_cli.checkpoint import Bundle, load_bundle
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.data import TrainData
from recinc_cli.early_stop import early_stopped_fit
from recinc_cli.errors import CheckpointError, UsageError
from recinc_cli.models import build_model
from recinc_cli.models.base import Recommender
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.seen import SeenItems
from recinc_cli.train import Trainer, seeded_generator
from recinc_cli.vocab import Vocab


def create_bundle(
    events: pl.DataFrame,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    reporter: Reporter | None = None,
) -> tuple[Bundle, dict[str, Any]]:
    """Build vocabularies and a fresh model, train it on ``events``; return it and its lineage stats."""
    users, items = Vocab.empty(), Vocab.empty()
    users.extend(events["user_id"])
    items.extend(events["item_id"])
    model = build_model(model_cfg, len(users), len(items))
    gen = seeded_generator(train_cfg.seed, 0)
    model.reset_parameters(train_cfg.row_init, gen)
    if train_cfg.init.startswith("pretrained:"):
        copy_pretrained(model, users, items, Path(train_cfg.init.removeprefix("pretrained:")))
    bundle = Bundle(
        model=model,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        users=users,
        items=items,
        seen=SeenItems.empty(len(users)),
        item_pop=torch.zeros(len(items)),
        pop_time_ms=0,
    )
    cut = round(events.height * (1 - train_cfg.valid_fraction))
    stopped = early_stopped_fit(bundle, events[:cut], events[cut:], gen, reporter) if cut < events.height else None
    if stopped is None:
        stats = _train_and_fold(bundle, events, train_cfg, train_cfg.epochs, gen, None, reporter)
    else:
        stats = _train_and_fold(
            bundle, events[cut:], train_cfg, train_cfg.update_epochs, gen, bundle.optimizer, reporter
        )
        seconds = stats["train_seconds"] + stopped.pop("train_seconds")
        trained = stats["events"] * stats["epochs"] + stopped.pop("events_trained")
        stats = {
            **stats,
            **stopped,
            "events": events.height,
            "ts_min": _iso(int(events["timestamp"].dt.epoch("ms").to_numpy().min())),
        }
        stats["train_seconds"] = round(seconds, 3)
        stats["events_per_second"] = round(trained / max(seconds, 1e-9), 1)
    return bundle, {**stats, "new_users": len(users) - 1, "new_items": len(items) - 1}


def update_bundle(
    bundle: Bundle,
    events: pl.DataFrame,
    train_cfg: TrainConfig,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Grow ``bundle`` for the new ids in ``events`` and train on them with ``train_cfg``, in place.

    ``train_cfg`` applies to this run only: the checkpoint keeps its stored training settings,
    so a one-off ``--epochs`` does not change every later nightly update.
    """
    gen = seeded_generator(train_cfg.seed, len(bundle.lineage))
    new_users = bundle.users.extend(events["user_id"])
    new_items = bundle.items.extend(events["item_id"])
    bundle.model.grow(len(bundle.users), len(bundle.items), train_cfg.row_init, gen)
    stats = _train_and_fold(bundle, events, train_cfg, train_cfg.update_epochs, gen, bundle.optimizer, reporter)
    return {**stats, "new_users": new_users, "new_items": new_items}


def _train_and_fold(
    bundle: Bundle,
    events: pl.DataFrame,
    cfg: TrainConfig,
    epochs: int,
    gen: torch.Generator,
    optimizer_state: list[dict[str, Any]] | None,
    reporter: Reporter | None,
) -> dict[str, Any]:
    """Train on ``events``, then fold them into seen items and popularity."""
    reporter = reporter or NullReporter()
    start = time.perf_counter()
    data = TrainData.from_events(events, bundle.users, bundle.items)
    trainer = Trainer(bundle.model, cfg)
    if optimizer_state:
        try:
            trainer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"optimizer state does not fit the model ({e})") from e
    n_batches = -(-len(data) // cfg.batch_size)
    reporter.start(f"training {bundle.model_cfg.name}", epochs * n_batches)

    def on_batch(epoch: int, n_epochs: int, b: int, nb: int, loss: float) -> None:
        reporter.advance(1, f"epoch {epoch + 1}/{n_epochs} loss {loss:.4f}")

    losses = trainer.fit(data, epochs, gen, on_batch)
    reporter.stop()
    bundle.optimizer = trainer.state_dict()
    bundle.fold(data)
    seconds = time.perf_counter() - start
    return {
        "events": len(data),
        "epochs": epochs,
        "lr": cfg.lr,
        "final_loss": losses[-1],
        "train_seconds": round(seconds, 3),
        "events_per_second": round(len(data) * epochs / max(seconds, 1e-9), 1),
        "ts_min": _iso(int(data.ts_ms.min())),
        "ts_max": _iso(int(data.ts_ms.max())),
    }


def lineage_entry(
    command: str, data_sha256: str, data_path: str, parent_sha256: str | None, bundle: Bundle, stats: dict[str, Any]
) -> dict[str, Any]:
    """One lineage record: plain Python values only."""
    return {
        "command": command,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "recinc_version": __version__,
        "parent_sha256": parent_sha256,
        "data_path": data_path,
        "data_sha256": data_sha256,
        "n_users": len(bundle.users) - 1,
        "n_items": len(bundle.items) - 1,
        "valid_ndcg": None,
        **{k: v for k, v in stats.items() if k != "events_per_second"},
    }


def copy_pretrained(model: Recommender, users: Vocab, items: Vocab, path: Path) -> None:
    """Copy the rows of ids known to the checkpoint at ``path`` into ``model``'s tables.

    Non-table parameters with equal shapes are copied whole. Raises :class:`UsageError` when
    the architectures differ.
    """
    pre = load_bundle(path)
    if pre.model_cfg.to_dict() != model.cfg.to_dict():
        raise UsageError(
            f"--init pretrained:{path}: its model ({pre.model_cfg}) differs from the requested "
            f"one ({model.cfg}); use the same --model and --dim"
        )
    vocab_of = {"user": (users, pre.users), "item": (items, pre.items)}
    source = dict(pre.model.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in model.TABLES:
                new_vocab, old_vocab = vocab_of[model.TABLES[name]]
                old_idx = old_vocab.lookup(pl.Series(new_vocab.ids))
                rows = np.flatnonzero(old_idx > 0)
                p[torch.from_numpy(rows)] = source[name][torch.from_numpy(old_idx[rows])]
            elif source[name].shape == p.shape:
                p.copy_(source[name])


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")
