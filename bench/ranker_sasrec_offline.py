"""Would a ``sasrec`` generator help the ranker? Offline, on the streaming protocol's slices.

The README's "A `sasrec` generator" table. Per log (``recinc replay``'s cut: base = first 50%,
then 5 slices):

1. ``init`` the default ranker on the base. At each of its cuts, its examples are built twice:
   as the ranker builds them, and with two more features from a ``sasrec`` lineage that has seen
   exactly the events before the cut (``init`` at the first cut past ``--sasrec-start`` of the
   base, then updated cut by cut): the candidate's sasrec score minus the user's best, and its
   rank among the user's candidates. Before the lineage exists the two are missing (NaN).
2. For each slice: every candidate of every user with a new item in it, with both feature sets,
   then the ranker and the sasrec lineage are updated with the slice.
3. Boosters (the ranker's own settings) are fit on the pooled examples before each slice, with
   and without the sasrec features, and scored on the slice: mean NDCG@10 over the 5 slices.

Usage::

    python bench/ranker_sasrec_offline.py [--data-dir ../shared/data] [--out bench_out]
        [--datasets ml-100k,ml-1m-users1-1500] [--pop-prior 0] [--future-window 1] [--sasrec-start 0.5]

It monkeypatches the ranker's example builder to add the columns; nothing of it ships in recinc.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import torch
from common import recinc  # type: ignore[import-not-found]

import recinc_cli.training.ranker_fit as rf
from recinc_cli.bench.replay import cut_slices
from recinc_cli.config import ModelConfig, TrainConfig
from recinc_cli.models.ranker import PARAMS, POOL_ROWS, ROUNDS
from recinc_cli.serving.views import bundle_scorer
from recinc_cli.training.lifecycle import create_bundle, update_bundle


class SasrecLineage:
    """A sasrec lineage that is brought to have seen exactly the first n events of ``stream``."""

    def __init__(self, stream: pl.DataFrame, pop_prior: float, future_window: int) -> None:
        self.stream, self.bundle, self.pos = stream, None, 0
        self.model_cfg = ModelConfig(name="sasrec")
        self.train_cfg = TrainConfig.for_model("sasrec", pop_prior=pop_prior, future_window=future_window)

    def advance(self, n: int) -> None:
        if self.bundle is None:
            self.bundle, _ = create_bundle(self.stream[:n], self.model_cfg, self.train_cfg)
        elif n > self.pos:
            self.bundle, _ = update_bundle(self.bundle, self.stream[self.pos : n], self.train_cfg.for_update())
        self.pos = n

    def features(self, ranker: Any, block: np.ndarray, rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(m, 2) float32: score minus the user's best candidate score, and rank; NaN if unknown."""
        if self.bundle is None:
            return np.full((len(rows), 2), np.nan, np.float32)
        users = self.bundle.users.lookup(pl.Series([ranker.users.ids[i] for i in block]))
        items = self.bundle.items.lookup(pl.Series([ranker.items.ids[i] for i in cand]))
        with torch.no_grad():
            scores = bundle_scorer(self.bundle, pop_weight=0.0)(torch.as_tensor(np.maximum(users, 0))).numpy()
        ok = (items > 0) & (users[rows] > 0)
        s = np.where(ok, scores[rows, np.minimum(items, scores.shape[1] - 1)], np.nan)
        best = np.full(len(block), -np.inf)
        np.maximum.at(best, rows, np.where(ok, s, -np.inf))
        order = np.lexsort((-np.nan_to_num(s, nan=-1e9), rows))
        r = rows[order]
        rank = np.empty(len(r))
        rank[order] = np.arange(len(r)) - np.searchsorted(r, r, side="left")
        return np.stack([s - best[rows], np.where(ok, rank, np.nan)], 1).astype(np.float32)


def with_sasrec(ranker: Any, lineage: SasrecLineage) -> None:
    """Make ``ranker.model.candidates`` append the lineage's two features (for one call)."""
    model = ranker.model
    plain = type(model).candidates.__get__(model)

    def candidates(seq: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cand, feats = plain(seq, block)
        return rows, cand, np.concatenate([feats, lineage.features(ranker, block, rows, cand)], 1)

    model.candidates = candidates


def slice_examples(ranker: Any, window: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every candidate of every user with a new item in ``window``: features, labels, users,
    the eligible users and their counts of new items."""
    model, n_items = ranker.model, ranker.model.n_items
    users, items = ranker.users.lookup(window["user_id"]), ranker.items.lookup(window["item_id"])
    known = (users > 0) & (users < ranker.seen.n_users) & (items > 0)
    known[known] = np.diff(ranker.seen.indptr.numpy())[users[known]] > 0
    new = known.copy()
    new[known] = ~ranker.seen.contains(users[known], items[known])
    truth = np.unique(users[new] * n_items + items[new])
    eligible, n_truth = np.unique(truth // n_items, return_counts=True)
    xs, ys, us = [], [], []
    for lo in range(0, len(eligible), 256):
        block = eligible[lo : lo + 256]
        seq = ranker.context.padded(torch.as_tensor(block), width=model.cfg.max_len)[0].numpy()
        rows, cand, feats = model.candidates(seq, block)
        fresh = ~ranker.seen.contains(block[rows], cand)
        rows, cand, feats = rows[fresh], cand[fresh], feats[fresh]
        xs.append(feats)
        ys.append(np.isin(block[rows] * n_items + cand, truth).astype(np.float32))
        us.append(block[rows])
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "u": np.concatenate(us), "elig": eligible, "nt": n_truth}


def collect(log: Path, args: argparse.Namespace) -> dict[str, Any]:
    parts = cut_slices(pl.read_parquet(log), 5, 0.5)
    base = parts[0]
    lineage = SasrecLineage(pl.concat(parts), args.pop_prior, args.future_window)
    pool: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    plain_examples = rf.examples

    def examples(bundle: Any, window: pl.DataFrame) -> tuple[np.ndarray, ...]:
        cut = int(bundle.model.clock[0])  # events the ranker has absorbed: the cut
        if cut >= args.sasrec_start * base.height:
            lineage.advance(cut)
        out = plain_examples(bundle, window)
        with_sasrec(bundle, lineage)
        features = rf.FEATURES
        rf.FEATURES = {**features, "sas_score": "", "sas_rank": ""}
        rank_scores = bundle.model.rank_scores
        bundle.model.rank_scores = lambda f: rank_scores(f[:, : len(features)])
        try:
            pool.append(plain_examples(bundle, window)[:3])
        finally:
            rf.FEATURES = features
            del bundle.model.candidates, bundle.model.rank_scores
        return out

    rf.examples = examples
    try:
        ranker, _ = create_bundle(base, ModelConfig(name="ranker"), TrainConfig())
    finally:
        rf.examples = plain_examples
    lineage.advance(base.height)
    slices, done = [], base.height
    for s in range(1, 6):
        with_sasrec(ranker, lineage)
        slices.append(slice_examples(ranker, parts[s]))
        del ranker.model.candidates
        if s < 5:
            ranker, _ = update_bundle(ranker, parts[s], TrainConfig().for_update())
            done += parts[s].height
            lineage.advance(done)
    return {"pool": pool, "slices": slices}


def ndcg(scores: np.ndarray, sl: dict[str, np.ndarray], k: int = 10) -> float:
    """Mean NDCG@k over the slice's eligible users of ranking their candidates by ``scores``
    (new items outside the candidates count as missed)."""
    order = np.lexsort((-scores, sl["u"]))
    u, y = sl["u"][order], sl["y"][order]
    pos = np.arange(len(u)) - np.searchsorted(u, u, side="left")
    top = pos < k
    row = np.searchsorted(sl["elig"], u)
    dcg = np.bincount(row[top], weights=(y / np.log2(pos + 2))[top], minlength=len(sl["elig"]))
    ideal = np.array([(1 / np.log2(np.arange(min(k, n)) + 2)).sum() for n in sl["nt"]])
    return float((dcg / ideal).mean())


def fit_and_score(data: dict[str, Any], cols: slice) -> list[float]:
    """Test-then-train over the slices: fit on the pool, score the slice, pool its positive users."""
    x = [p[0][:, cols] for p in data["pool"]]
    y = [p[1] for p in data["pool"]]
    g = [p[2] for p in data["pool"]]
    out = []
    for sl in data["slices"]:
        gx, gy, gg = np.concatenate(x), np.concatenate(y), np.concatenate(g)
        n_groups = int((np.cumsum(gg[::-1]) <= POOL_ROWS).sum())
        rows = int(gg[len(gg) - n_groups :].sum())
        params = {**PARAMS, "min_data_in_leaf": max(5, min(200, rows // 100)), "seed": 0, "num_threads": 2}
        ds = lgb.Dataset(gx[len(gx) - rows :], gy[len(gy) - rows :], group=gg[len(gg) - n_groups :])
        booster = lgb.train(params, ds, num_boost_round=ROUNDS)
        out.append(ndcg(booster.predict(sl["x"][:, cols]), sl))
        _, starts = np.unique(sl["u"], return_index=True)
        sizes = np.diff(np.append(starts, len(sl["u"])))
        positive = np.add.reduceat(sl["y"], starts) > 0
        keep = np.repeat(positive, sizes)
        x.append(sl["x"][keep][:, cols])
        y.append(sl["y"][keep])
        g.append(sizes[positive])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument("--datasets", default="ml-100k,ml-1m-users1-1500")
    ap.add_argument("--pop-prior", type=float, default=0.0)
    ap.add_argument("--future-window", type=int, default=1)
    ap.add_argument("--sasrec-start", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("bench_out"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name in args.datasets.split(","):
        start = time.perf_counter()
        events = args.out / f"offline-{name}.parquet"
        args.out.mkdir(parents=True, exist_ok=True)
        recinc("preprocess", str(args.data_dir / f"{name}.parquet"), "-o", str(events))
        data = collect(events, args)
        n = data["pool"][0][0].shape[1] - 2
        plain = fit_and_score(data, slice(0, n))
        both = fit_and_score(data, slice(0, n + 2))
        print(
            f"{name}: without sasrec {np.mean(plain):.4f} {np.round(plain, 4).tolist()}; "
            f"with sasrec {np.mean(both):.4f} {np.round(both, 4).tolist()} ({time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
