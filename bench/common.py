"""What the benchmark scripts share: the shared logs, running recinc, and the command line.

Every benchmark drives the real ``recinc`` command in a subprocess, as a cron job would, and
writes one JSON report that ``--show`` prints again without rerunning anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

DATASETS = {
    "ml-1m": "ml-1m-users1-1500.parquet",
    "ml-100k": "ml-100k.parquet",
    "taobao": "taobao-userbehavior-84k.parquet",
    "yoochoose": "yoochoose-sessions-70k.parquet",
}
console = Console(width=200)


def recinc(*args: str, quiet: bool = True) -> tuple[str, float]:
    """Run a recinc command; return its stdout (and, unless ``quiet``, its summary line from
    stderr) and wall seconds. Exit on failure."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "recinc_cli", *args, *(["-q"] if quiet else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"recinc {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout + ("" if quiet else proc.stderr), time.perf_counter() - t0


def run_main(
    doc: str | None,
    report_name: str,
    run_dataset: Callable[[str, Path, Path, list[str]], dict[str, Any]],
    show: Callable[[str, dict[str, Any]], None],
    datasets: str,
    models: str,
) -> None:
    """Parse the common options, run ``run_dataset`` per log, print and save the report."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--datasets", default=datasets)
    parser.add_argument("--models", default=models)
    parser.add_argument("--show", type=Path, help=f"only print the tables of an earlier {report_name}")
    args = parser.parse_args()
    if args.show:
        for name, report in json.loads(args.show.read_text()).items():
            show(name, report)
        return
    if not args.data_dir.is_dir():
        sys.exit(f"{args.data_dir}: shared data not found; pass --data-dir")
    args.out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for name in args.datasets.split(","):
        reports[name] = run_dataset(name, args.data_dir / DATASETS[name], args.out, args.models.split(","))
        show(name, reports[name])
        (args.out / report_name).write_text(json.dumps(reports, indent=2))  # kept as each log finishes
    console.print(f"report: {args.out / report_name}")
