"""Streaming benchmark and ablation through ``recinc replay`` (shared/PROTOCOL.md).

For each log and model: one ``recinc replay`` run with every strategy (frozen, incremental,
retrain, popular), then ablation runs of the incremental strategy alone with one policy changed
(no replay, anchoring, time decay, distillation, no held-out epoch choice, no popularity
adjustment; for mf the popularity prior of training; for ease its penalty). Every number comes
from the command's own ``report.json``; ratios compare strategies of the same run (same
machine, same moment).

Usage::

    python bench/replay.py [--data-dir ../shared/data] [--out bench_out] [--datasets ml-1m,ml-100k,taobao]
        [--models mf,sasrec,ease] [--no-ablation]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import DATASETS, console, recinc  # type: ignore[import-not-found]
from rich.table import Table

#: name -> extra `recinc replay` options of the incremental strategy
ABLATIONS: dict[str, list[str]] = {
    "no replay": ["--replay-ratio", "0"],
    "+ anchoring (--anchor-weight 1)": ["--anchor-weight", "1"],
    "+ time decay (--half-life 7d)": ["--half-life", "7d"],
    "+ distillation (--distill-weight 1)": ["--distill-weight", "1"],
    "no held-out epoch choice": ["--update-valid-fraction", "0"],
    "no popularity adjustment": ["--pop-weight", "0"],
}
#: model -> extra ablations of that model only (ease has no gradient options to ablate)
MODEL_ABLATIONS: dict[str, dict[str, list[str]]] = {
    "mf": {
        "no popularity prior in training (--pop-prior 0)": ["--pop-prior", "0"],
        "--pop-prior 2": ["--pop-prior", "2"],
    },
    "ease": {"no popularity adjustment": ["--pop-weight", "0"], "--ease-l2 100": ["--ease-l2", "100"]},
}


def ablations(model: str) -> dict[str, list[str]]:
    """The ablation runs of ``model``: the shared policy ones (gradient models) and its own."""
    shared = {} if model == "ease" else ABLATIONS
    return {**shared, **MODEL_ABLATIONS.get(model, {})}


def run(log: Path, out: Path, model: str, strategies: str, extra: list[str]) -> dict[str, Any]:
    recinc(
        "replay", str(log), "-o", str(out), "--model", model, "--strategies", strategies, "--plot", "report.png", *extra
    )
    return json.loads((out / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--datasets", default="ml-1m,ml-100k,taobao")
    parser.add_argument("--models", default="mf,sasrec,ease")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--show", type=Path, help="only print the tables of an earlier replay.json")
    args = parser.parse_args()
    if args.show:
        show(json.loads(args.show.read_text()))
        return
    if not args.data_dir.is_dir():
        sys.exit(f"{args.data_dir}: shared data not found; pass --data-dir")
    results: dict[str, Any] = {}
    for name in args.datasets.split(","):
        for model in args.models.split(","):
            if model == "ease" and name == "taobao":
                continue  # 55k items: above ease's dense co-occurrence limit (it refuses, exit 2)
            key = f"{name} {model}"
            console.log(f"{key}: all strategies")
            work = args.out / "replay" / name / model
            entry = {
                "main": run(
                    args.data_dir / DATASETS[name], work / "main", model, "frozen,incremental,retrain,popular", []
                )
            }
            if not args.no_ablation and name != "taobao":
                for label, extra in ablations(model).items():
                    console.log(f"{key}: {label}")
                    slug = label.split("(")[0].strip().replace(" ", "-").replace("+", "with")
                    entry[label] = run(args.data_dir / DATASETS[name], work / slug, model, "incremental", extra)
            results[key] = entry
            (args.out / "replay.json").write_text(json.dumps(results, indent=2))  # kept as each run ends
            show({key: entry})
    console.print(f"report: {args.out / 'replay.json'}")


def show(results: dict[str, Any]) -> None:
    """Per log and model: every strategy, the ratios that the acceptance quotes, the ablation."""
    for key, entry in results.items():
        main_run = entry["main"]["strategies"]
        table = Table(title=f"{key}: mean over slices (NDCG@10 per slice in brackets)")
        for col in ("strategy", "NDCG@10", "Recall@10", "HR@10", "s/update", "per slice"):
            table.add_column(col, justify="left" if col in ("strategy", "per slice") else "right")
        rows = [(s, r) for s, r in main_run.items()]
        rows += [
            (f"incremental, {label}", e["strategies"]["incremental"]) for label, e in entry.items() if label != "main"
        ]
        for s, r in rows:
            m = r["mean"]
            per = " ".join(f"{x['ndcg']:.3f}" for x in r["per_slice"])
            table.add_row(
                s, f"{m['ndcg']:.4f}", f"{m['recall']:.4f}", f"{m['hit_rate']:.3f}", f"{m['seconds']:.2f}", per
            )
        console.print(table)
        inc, re_ = main_run.get("incremental"), main_run.get("retrain")
        if inc and re_:
            console.print(
                f"{key}: incremental / retrain NDCG@10 = {inc['mean']['ndcg'] / max(re_['mean']['ndcg'], 1e-12):.3f}x, "
                f"seconds per update = {inc['mean']['seconds'] / max(re_['mean']['seconds'], 1e-12):.3f}x"
            )


if __name__ == "__main__":
    main()
