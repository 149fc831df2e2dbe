"""Streaming (test-then-train) quality benchmark of ../shared/PROTOCOL.md, through the CLI.

For each log: sort by time, base = first 50% of events, the rest cut into 5 equal slices.
Strategies, each evaluated on slice s before it sees it:

- ``mf-incremental``: ``recinc init`` on the base, then ``recinc update`` with each slice;
- ``mf-retrain``: ``recinc init`` from scratch on base + slices 1..s-1 before slice s;
- ``pop-all``: most popular over everything before slice s;
- ``pop-latest``: most popular in the previous slice (for slice 1: the last slice-sized
  window of the base);
- ``pop-decayed (model)``: the checkpoint's own decayed popularity (``--pop-half-life``), the
  baseline ``recinc evaluate`` prints and the cold-start fallback of ``recommend``.

Model metrics come from ``recinc evaluate --json``; the popularity baselines are computed here
with the same metric code and the same eligibility rules. Seconds are the wall time of the
``update`` / ``init`` process, start-up included, as a cron job would see it.

Usage::

    python bench/quality.py [--data-dir ../shared/data] [--out bench_out] [--datasets ml-1m,ml-100k,taobao]
        [--models mf,sasrec]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from common import console, recinc, run_main  # type: ignore[import-not-found]
from rich.table import Table

from recinc_cli.evaluate import ranking_metrics

N_SLICES = 5
K = 10


def split(log: pl.DataFrame) -> list[pl.DataFrame]:
    """Base (first 50%) and N_SLICES equal slices of a time-sorted log."""
    n = log.height
    base_end = n // 2
    bounds = [base_end + round(i * (n - base_end) / N_SLICES) for i in range(N_SLICES + 1)]
    return [log[:base_end]] + [log[bounds[i] : bounds[i + 1]] for i in range(N_SLICES)]


def popularity_metrics(history: pl.DataFrame, window: pl.DataFrame, test: pl.DataFrame) -> dict[str, float]:
    """Metrics@K of ranking items by their count in ``window``, under the protocol."""
    items = history["item_id"].unique().sort()
    item_idx = {v: i + 1 for i, v in enumerate(items.to_list())}
    counts = window.group_by("item_id").len()
    pop = np.zeros(len(items) + 1)
    for it, c in counts.iter_rows():
        if it in item_idx:
            pop[item_idx[it]] = c
    pop[0] = -np.inf
    users_before = set(history["user_id"].unique().to_list())
    seen = history.group_by("user_id").agg(pl.col("item_id").unique())
    seen_map = dict(seen.iter_rows())
    truth = test.filter(pl.col("user_id").is_in(list(users_before))).unique(["user_id", "item_id"])
    rows, truth_item, tops = [], [], []
    order = np.argsort(-pop, kind="stable")
    for r, (user, group) in enumerate(truth.group_by("user_id", maintain_order=True)):
        seen_u = set(seen_map[user[0]])
        new = [i for i in group["item_id"].to_list() if i not in seen_u]
        if not new:
            tops.append(None)
            continue
        seen_idx = {item_idx[i] for i in seen_u}
        top = [i for i in order[: K + len(seen_idx) + 1] if i not in seen_idx and i != 0][:K]
        tops.append(top)
        rows.extend([r] * len(new))
        truth_item.extend(item_idx.get(i, 0) for i in new)
    keep = [i for i, t in enumerate(tops) if t is not None]
    remap = {old: new for new, old in enumerate(keep)}
    top_arr = np.array([tops[i] for i in keep], dtype=np.int64)
    return ranking_metrics(top_arr, np.array([remap[r] for r in rows]), np.array(truth_item), K, len(items))


def run_dataset(name: str, path: Path, out: Path, models: list[str]) -> dict[str, Any]:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    log = pl.read_parquet(path).with_row_index("_order").sort("timestamp", "_order", maintain_order=True)
    log = log.with_columns(pl.col("user_id").cast(pl.String), pl.col("item_id").cast(pl.String)).drop("_order")
    parts = split(log)
    files = []
    for i, part in enumerate(parts):
        raw = work / f"part{i}.raw.parquet"
        part.write_parquet(raw)
        files.append(work / f"part{i}.parquet")
        recinc("preprocess", str(raw), "-o", str(files[-1]))
    results: dict[str, dict[str, list[float]]] = {}

    def record(strategy: str, metrics: dict[str, float], seconds: float | None) -> None:
        entry = results.setdefault(strategy, {"ndcg": [], "recall": [], "hit_rate": [], "seconds": []})
        for key in ("ndcg", "recall", "hit_rate"):
            entry[key].append(metrics[key])
        if seconds is not None:
            entry["seconds"].append(seconds)

    base_seconds: dict[str, float] = {}
    for model in models:
        m_prev = work / f"{model}-inc-0.pt"
        _, base_seconds[model] = recinc("init", str(files[0]), "-o", str(m_prev), "--model", model)
        r_prev = m_prev
        for s in range(1, N_SLICES + 1):
            console.log(f"{name} {model}: slice {s}")
            ev = json.loads(recinc("evaluate", str(m_prev), str(files[s]), "--json")[0])
            m_next = work / f"{model}-inc-{s}.pt"
            _, secs = recinc("update", str(m_prev), str(files[s]), "-o", str(m_next))
            record(f"{model}-incremental", ev["model"], secs)
            if model == models[0]:  # the same for every model: it depends on the data only
                record("pop-decayed (model)", ev["popular"], None)
            ev_r = json.loads(recinc("evaluate", str(r_prev), str(files[s]), "--json")[0])
            r_next = work / f"{model}-re-{s}.pt"
            _, secs_r = _retrain(files[: s + 1], r_next, model, work, s)
            record(f"{model}-retrain", ev_r["model"], secs_r)
            m_prev, r_prev = m_next, r_next
    for s in range(1, N_SLICES + 1):
        history = pl.concat(parts[:s])
        slice_len = parts[s].height
        latest = parts[s - 1] if s > 1 else parts[0][-slice_len:]
        record("pop-all", popularity_metrics(history, history, parts[s]), None)
        record("pop-latest", popularity_metrics(history, latest, parts[s]), None)
    return {
        "results": results,
        "base_seconds": base_seconds,
        "events": log.height,
        "slice_events": [p.height for p in parts],
    }


def _retrain(files: list[Path], out: Path, model: str, work: Path, s: int) -> tuple[str, float]:
    combined = work / f"upto{s}.parquet"
    pl.concat([pl.read_parquet(f) for f in files]).write_parquet(combined)
    return recinc("init", str(combined), "-o", str(out), "--model", model)


def show(name: str, report: dict[str, Any]) -> None:
    """One table per log: each slice's NDCG / Recall / HR @K, their means, mean update seconds."""
    table = Table(
        title=f"{name}: streaming protocol, {report['events']:,} events; cells: NDCG@{K} / Recall@{K} / HR@{K}"
    )
    table.add_column("strategy")
    for s in range(1, N_SLICES + 1):
        table.add_column(f"slice {s}", justify="right")
    for col in ("mean", "update s"):
        table.add_column(col, justify="right")
    for strategy, r in report["results"].items():
        cells = [
            f"{n:.3f} / {rc:.3f} / {h:.2f}" for n, rc, h in zip(r["ndcg"], r["recall"], r["hit_rate"], strict=True)
        ]
        mean = f"{np.mean(r['ndcg']):.3f} / {np.mean(r['recall']):.3f} / {np.mean(r['hit_rate']):.2f}"
        secs = f"{np.mean(r['seconds']):.1f}" if r["seconds"] else "-"
        table.add_row(strategy, *cells, mean, secs)
    console.print(table)
    if report.get("base_seconds"):
        console.print("base fit seconds: " + ", ".join(f"{m} {s:.1f}" for m, s in report["base_seconds"].items()))


if __name__ == "__main__":
    run_main(__doc__, "quality.json", run_dataset, show, datasets="ml-1m,ml-100k,taobao", models="mf,sasrec")
