"""Leave-one-out benchmark (../shared/PROTOCOL.md, "Leave-one-out protocol"), through the CLI.

For each log and model, exactly what a user would type::

    recinc preprocess LOG -o events.parquet
    recinc split events.parquet --last 1 --train train.parquet --test test.parquet
    recinc init train.parquet -o MODEL.pt --model MODEL --valid-last
    recinc evaluate MODEL.pt test.parquet --protocol loo --json

Every model runs with its default settings. The table gives NDCG@10 / HR@10 of each model and
of the checkpoint's popularity baseline, the init wall seconds, and each model's NDCG ratio
to the first model of ``--models`` measured in the same run.

Usage::

    python bench/loo.py [--data-dir ../shared/data] [--out bench_out] [--datasets ml-1m,ml-100k]
        [--models mf,sasrec]
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from common import console, recinc, run_main  # type: ignore[import-not-found]
from rich.table import Table


def run_dataset(name: str, path: Path, out: Path, models: list[str]) -> dict[str, Any]:
    work = out / f"loo-{name}"
    work.mkdir(parents=True, exist_ok=True)
    events, train, test = (work / f"{p}.parquet" for p in ("events", "train", "test"))
    recinc("preprocess", str(path), "-o", str(events))
    recinc("split", str(events), "--last", "1", "--train", str(train), "--test", str(test))
    report: dict[str, Any] = {}
    for model in models:
        ckpt = work / f"{model}.pt"
        console.log(f"{name}: init {model}")
        summary, seconds = recinc("init", str(train), "-o", str(ckpt), "--model", model, "--valid-last", quiet=False)
        result = json.loads(recinc("evaluate", str(ckpt), str(test), "--protocol", "loo", "--json")[0])
        report[model] = {
            "ndcg": result["model"]["ndcg"],
            "hit_rate": result["model"]["hit_rate"],
            "pop_ndcg": result["popular"]["ndcg"],
            "pop_hit_rate": result["popular"]["hit_rate"],
            "users": result["users"],
            "init_seconds": seconds,
            "init_summary": summary.strip(),
            "epochs": _field(summary, r"(\d+) epochs? chosen"),
            "epoch_seconds": _field(summary, r"([\d.]+)s per epoch"),
            "peak_memory_mib": _field(summary, r"peak memory ([\d,]+) MiB"),
        }
    return report


def _field(text: str, pattern: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1).replace(",", "")) if m else None


def show(name: str, report: dict[str, Any]) -> None:
    users = int(next(iter(report.values()))["users"])
    table = Table(title=f"{name}: leave-one-out, full-catalogue ranking, {users} test users")
    for col in ("model", "NDCG@10", "HR@10", f"NDCG ratio to {next(iter(report))}", "epochs", "s/epoch", "init s"):
        table.add_column(col, justify="right" if col != "model" else "left")
    first = next(iter(report.values()))
    for model, r in report.items():
        table.add_row(
            model,
            f"{r['ndcg']:.4f}",
            f"{r['hit_rate']:.4f}",
            f"{r['ndcg'] / max(first['ndcg'], 1e-12):.2f}x",
            f"{r['epochs']:.0f}" if r["epochs"] else "-",
            f"{r['epoch_seconds']:.1f}" if r["epoch_seconds"] else "-",
            f"{r['init_seconds']:.0f}",
        )
    table.add_row("popularity", f"{first['pop_ndcg']:.4f}", f"{first['pop_hit_rate']:.4f}", "", "", "", "")
    console.print(table)


if __name__ == "__main__":
    run_main(__doc__, "loo.json", run_dataset, show, datasets="ml-1m,ml-100k", models="mf,sasrec")
