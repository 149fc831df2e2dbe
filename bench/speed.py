"""Speed of each command on MovieLens-1M users 1-1500 (248,579 events), against the guides.

Wall time of the real command, process start-up included, as cron or Make would see it:
``preprocess`` the log, ``init`` with default settings, ``update`` with a 25,000-event slice,
``recommend --all``. The guides are for a 2-core machine; the machine is noisy, so each step
runs ``--repeat`` times and the median is reported.

Usage::

    python bench/speed.py [--data-dir ../shared/data] [--out bench_out] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

LOG = "ml-1m-users1-1500.parquet"
SLICE = 25_000
GUIDES = {"preprocess": 3.0, "init": 60.0, "update (25k-event slice)": 10.0, "recommend --all": 3.0}


def timed(*args: str) -> float:
    """Wall seconds of one ``recinc`` run; exits if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "recinc_cli", *args, "-q"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"recinc {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    src = args.data_dir / LOG
    if not src.is_file():
        sys.exit(f"{src}: shared data not found; pass --data-dir")
    work = args.out / "speed"
    work.mkdir(parents=True, exist_ok=True)
    events, model = work / "events.parquet", work / "m.pt"
    head, tail, base = work / "head.parquet", work / "tail.parquet", work / "head.pt"
    runs: dict[str, list[float]] = {name: [] for name in GUIDES}
    for _ in range(args.repeat):
        runs["preprocess"].append(timed("preprocess", str(src), "-o", str(events)))
    log = pl.read_parquet(events)
    log[: log.height - SLICE].write_parquet(head)
    log[log.height - SLICE :].write_parquet(tail)
    timed("init", str(head), "-o", str(base))  # the parent of the timed update
    for _ in range(args.repeat):
        runs["init"].append(timed("init", str(events), "-o", str(model)))
        runs["update (25k-event slice)"].append(timed("update", str(base), str(tail), "-o", str(work / "m1.pt")))
        runs["recommend --all"].append(timed("recommend", str(model), "--all", "-o", str(work / "recs.csv")))
    table = Table(title=f"speed on {LOG} ({log.height:,} events), median of {args.repeat} runs, wall seconds")
    for col in ("step", "median s", "min s", "max s", "guide s", "verdict"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for name, secs in runs.items():
        ok = statistics.median(secs) <= GUIDES[name]
        table.add_row(
            name,
            f"{statistics.median(secs):.2f}",
            f"{min(secs):.2f}",
            f"{max(secs):.2f}",
            f"< {GUIDES[name]:.0f}",
            "ok" if ok else "SLOW",
        )
    Console(width=120).print(table)
    (args.out / "speed.json").write_text(json.dumps({"runs": runs, "guides": GUIDES}, indent=2))


if __name__ == "__main__":
    main()
