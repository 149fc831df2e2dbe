"""Training throughput of one process against ``torchrun`` ranks (issue 18): ``make bench-distributed``.

On the small synthetic log of the scale benchmark (:mod:`synth`, 1M events, generated if
missing), the days before the last are preprocessed into one events file, then each model's
``init`` (one epoch, no validation: a pure training pass) runs

- as one process (the baseline, measured in the same run), and
- under ``torchrun --standalone --nproc-per-node N`` for each N of ``--ranks`` (gloo on CPU),

with ``RECINC_THREADS`` = cores / ranks, so every run has the machine's cores. Reported: events
per second of training (the run's ``events_per_second``: events x epochs / training seconds,
on rank 0's clock), its ratio to one
process, the wall time of the whole command (imports, reading, saving) and the peak resident
memory of the largest process (a rank holds a whole model). On a machine with no more cores
than ranks, a rank's share of the cores is also its share of the work, so expect less than
N x: the gradient exchange after each step is the price.

Writes ``OUT/distributed.json`` and prints a table.

Usage::

    python bench/distributed.py [--out bench/results] [--models mf,sasrec] [--ranks 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scale import run  # noqa: E402
from synth import SIZES, generate  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent
#: One epoch, nothing held out: the same training pass for every run.
TRAIN: dict[str, tuple[str, ...]] = {
    "mf": ("--model", "mf", "--epochs", "1", "--valid-fraction", "0", "--seed", "1"),
    "sasrec": ("--model", "sasrec", "--epochs", "1", "--valid-fraction", "0", "--seed", "1"),
}


def prepare(work: Path) -> Path:
    """The small log's days but the last, preprocessed into one events file."""
    raw = work / "small"
    if not (raw / "manifest.json").exists():
        generate(SIZES["small"], raw)
    events = work / "events.parquet"
    if not events.exists():
        days = sorted(raw.glob("day_*.parquet"))[:-1]
        done = run([PY, "-m", "recinc_cli", "preprocess", *map(str, days), "-o", str(events), "-q"], work)
        assert done["exit"] == 0, done
    return events


def one_run(model: str, events: Path, work: Path, ranks: int, cores: int) -> dict[str, Any]:
    out = work / f"{model}-{ranks}.pt"
    args = ["init", str(events), "-o", str(out), *TRAIN[model], "--json"]
    if ranks == 1:
        cmd = [PY, "-m", "recinc_cli", *args]
    else:
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(ranks), "-m", "recinc_cli", *args]
    env = {**os.environ, "RECINC_THREADS": str(max(1, cores // ranks)), "OMP_NUM_THREADS": str(max(1, cores // ranks))}
    done = run(cmd, work, env=env)
    if done["exit"] != 0:
        raise SystemExit(f"{model} with {ranks} rank(s) failed: {done['last_line']}")
    result = json.loads(done["stdout"].strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return {
        "ranks": ranks,
        "threads_per_rank": max(1, cores // ranks),
        "events_per_s": round(result["events_per_second"], 1),
        "train_seconds": round(result["train_seconds"], 2),
        "wall_seconds": round(done["seconds"], 2),
        "largest_process_peak_mib": done["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--work", type=Path, default=Path("bench_data/distributed"))
    parser.add_argument("--models", default="mf,sasrec")
    parser.add_argument("--ranks", default="2", help="comma-separated rank counts to hold against one process")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    events = prepare(args.work.resolve())
    report: dict[str, Any] = {"log": "synthetic small, days 1-29", "cores": cores, "models": {}}
    for model in args.models.split(","):
        runs = [one_run(model, events, args.work.resolve(), 1, cores)]
        for n in (int(x) for x in args.ranks.split(",")):
            time.sleep(1)
            runs.append(one_run(model, events, args.work.resolve(), n, cores))
        base = runs[0]["events_per_s"]
        for r in runs:
            r["vs_one_process"] = round(r["events_per_s"] / base, 3)
        report["models"][model] = runs
        (args.out / "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
    head = f"{'model':8} {'ranks':>5} {'events/s':>10} {'x one':>6} {'train s':>8} {'wall s':>7} {'peak MiB':>9}"
    print(head + "  (peak: the largest process)")
    for model, runs in report["models"].items():
        for r in runs:
            print(
                f"{model:8} {r['ranks']:>5} {r['events_per_s']:>10,.0f} {r['vs_one_process']:>6.2f} "
                f"{r['train_seconds']:>8.1f} {r['wall_seconds']:>7.1f} {r['largest_process_peak_mib']:>9,.0f}"
            )
    print(f"report: {args.out / 'distributed.json'}")


if __name__ == "__main__":
    main()
