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

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from quality import DATASETS, console, recinc  # type: ignore[import-not-found]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--datasets", default="ml-1m,ml-100k")
    parser.add_argument("--models", default="mf,sasrec")
    parser.add_argument("--show", type=Path, help="only print the tables of an earlier loo.json")
    args = parser.parse_args()
    if args.show:
        for name, report in json.loads(args.show.read_text()).items():
            show(name, report)
        return
    if not args.data_dir.is_dir():
        sys.exit(f"{args.data_dir}: shared data not found; pass --data-dir")
    reports = {}
    for name in args.datasets.split(","):
        reports[name] = run_dataset(name, args.data_dir / DATASETS[name], args.out, args.models.split(","))
        show(name, reports[name])
        (args.out / "loo.json").write_text(json.dumps(reports, indent=2))
    console.print(f"report: {args.out / 'loo.json'}")


if __name__ == "__main__":
    main()
