"""Choosing how long ``init`` trains: early stopping on held-out events.

A model fit too long to years of history ranks what was consumed then, not next week; a
model fit too briefly has not learned tastes. Which one bites depends on the log, so ``init``
measures it: train on the older events, score the newest ones with the next-slice protocol
after each epoch, keep the best epoch.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import polars as pl
import torch

from recinc_cli.data import TrainData
from recinc_cli.evaluate import ranking_metrics, slice_truth
from recinc_cli.progress import NullReporter, Reporter
from recinc_cli.recommend import top_k
from recinc_cli.train import Trainer

if TYPE_CHECKING:
    from recinc_cli.checkpoint import Bundle

VALID_K = 10


def early_stopped_fit(
    bundle: Bundle,
    older: pl.DataFrame,
    newest: pl.DataFrame,
    gen: torch.Generator,
    reporter: Reporter | None = None,
) -> dict[str, Any] | None:
    """Train ``bundle.model`` on ``older`` for the epoch count that ranks ``newest`` best.

    ``newest`` is either the newest events (next-slice protocol) or each user's last event
    (leave-one-out); either way a user's ground truth is their items there that they had not
    seen in ``older``. Restores the best epoch's weights and optimizer state
    (``bundle.optimizer``) and folds ``older`` into seen items, context and popularity.
    Returns ``{"epochs", "valid_ndcg", "final_loss", "epoch_seconds", "events_trained"}``
    (the best epoch, its NDCG@10 and loss, mean training seconds per epoch without validation,
    the events trained on in all), or None (nothing trained) when no user of ``older`` has new
    items in ``newest``, so there is nothing to validate on.
    """
    reporter = reporter or NullReporter()
    cfg, model = bundle.train_cfg, bundle.model
    data = TrainData.from_events(older, bundle.users, bundle.items, bundle.types)
    seen = bundle.seen.merge(data.user_idx, data.item_idx, len(bundle.users))
    users, row, truth = slice_truth(newest, bundle.users, bundle.items, seen.contains)
    if len(users) == 0:
        return None
    prior = bundle.context
    bundle.fold(data)
    scorer = bundle.scorer()
    trainer = Trainer(model, cfg)
    reporter.start(f"training {bundle.model_cfg.name} (early stopping)", cfg.epochs)
    best: tuple[float, int, float, dict[str, Any], list[dict[str, Any]]] | None = None
    train_seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        loss = trainer.fit(data, 1, gen, prior=prior)[0]
        train_seconds += time.perf_counter() - start
        model.eval()
        top, _ = top_k(scorer, users, bundle.seen, VALID_K)
        ndcg = ranking_metrics(top, row, truth, VALID_K, len(bundle.items) - 1)["ndcg"]
        reporter.advance(1, f"epoch {epoch} loss {loss:.4f} valid ndcg@{VALID_K} {ndcg:.4f}")
        if best is None or ndcg > best[0]:
            best = (ndcg, epoch, loss, copy.deepcopy(model.state_dict()), copy.deepcopy(trainer.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break
    reporter.stop()
    assert best is not None  # the loop ran at least once (epochs >= 1)
    model.load_state_dict(best[3])
    bundle.optimizer = best[4]
    return {
        "epochs": best[1],
        "valid_ndcg": round(best[0], 5),
        "final_loss": best[2],
        "epoch_seconds": round(train_seconds / epoch, 3),
        "events_trained": len(data) * epoch,
    }
