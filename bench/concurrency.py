"""recinc beside other jobs: 1, 2 and 4 copies of the same ``update`` at once, today's thread
policy against the new one; then the single-job cost of the new policy.

Setting (issue 19): MovieLens-1M users 1-1500 sorted by time, base = the first 50% of events,
slice = the next 10%. Each model (``--models``) is initialised on the base once; then N copies
of ``recinc update m0.pt slice.parquet -o copy_i.pt`` start together (different outputs), and
each copy's training seconds (its summary line) and wall seconds (process start-up included,
as cron sees it) are recorded. Every batch is repeated ``--tries`` times and the worst copy of
the worst try is what counts: contention comes and goes with how the copies' phases line up.

Policies, each a set of environment variables given to every copy:

- ``today``: the policy before issue 19: every core (``RECINC_THREADS`` = cores) and
  libgomp's default wait (idle threads spin ~300,000 times, ``GOMP_SPINCOUNT=300000``).
- ``new``: nothing set; recinc chooses (see the README, "Threads and other jobs").

``--beside`` runs the ``mf`` update ``--repeat`` times, one after another, while a ``sasrec``
``init`` on the base trains beside it (a big job and a small one sharing the machine).

``--single`` times, one job at a time, ``init`` on the whole log and ``update`` of the base
model with the slice, ``--repeat`` times, the two policies alternating (A B A B ...); it
reports the median of each and the median of the pairwise ratios new/today.

Usage::

    python bench/concurrency.py [--data-dir ../shared/data] [--out bench_out] [--models mf,sasrec]
        [--copies 1,2,4] [--tries 3] [--beside] [--single] [--repeat 3] [--show bench_out/concurrency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

LOG = "ml-1m-users1-1500.parquet"
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
#: policy -> environment of every copy (added to this process's, minus the thread settings)
POLICIES: dict[str, dict[str, str]] = {
    "today": {"RECINC_THREADS": str(CORES), "GOMP_SPINCOUNT": "300000"},
    "new": {},
}
THREAD_VARS = ("RECINC_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
TRAIN_SECONDS = re.compile(r" in ([0-9.]+)s\b")
console = Console(width=160)


def policy_env(policy: str | None) -> dict[str, str]:
    """This process's environment without thread settings, plus those of ``policy`` (None:
    recinc's own choice)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return {**env, **(POLICIES[policy] if policy else {})}


def recinc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "recinc_cli", *args]


def run_together(cmds: list[list[str]], env: dict[str, str]) -> list[dict[str, float]]:
    """Start every command at once; return each one's wall and training seconds."""
    results: list[dict[str, float]] = [{} for _ in cmds]

    def one(i: int, cmd: list[str]) -> None:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            results[i] = {"error": float(proc.returncode)}
            print(proc.stderr, file=sys.stderr)
            return
        found = TRAIN_SECONDS.search(proc.stderr)
        results[i] = {"wall_s": wall, "train_s": float(found.group(1)) if found else float("nan")}

    threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(cmds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any("error" in r for r in results):
        sys.exit(f"a copy failed: {' '.join(cmds[0])}")
    return results


def prepare(src: Path, work: Path, models: list[str]) -> dict[str, Path]:
    """Cut the log into base and slice; init each model on the base. Returns the paths."""
    work.mkdir(parents=True, exist_ok=True)
    paths = {"events": work / "events.parquet", "base": work / "base.parquet", "slice": work / "slice.parquet"}
    run_together([recinc_cmd("preprocess", str(src), "-o", str(paths["events"]), "-q")], policy_env(None))
    log = pl.read_parquet(paths["events"]).sort("timestamp", maintain_order=True)
    n_base, n_slice = log.height // 2, log.height // 10
    log[:n_base].write_parquet(paths["base"])
    log[n_base : n_base + n_slice].write_parquet(paths["slice"])
    for model in models:
        paths[model] = work / f"{model}_m0.pt"
        cmd = recinc_cmd("init", str(paths["base"]), "-o", str(paths[model]), "--model", model, "-q")
        run_together([cmd], policy_env(None))
    return paths


def concurrency(paths: dict[str, Path], work: Path, models: list[str], copies: list[int], tries: int) -> list[dict]:
    """Rows of (model, policy, copies): every copy's seconds over every try."""
    rows = []
    for model in models:
        for policy in POLICIES:
            for n in copies:
                runs: list[dict[str, float]] = []
                batch_walls = []
                for _ in range(tries):
                    cmds = [
                        recinc_cmd("update", str(paths[model]), str(paths["slice"]), "-o", str(work / f"copy{i}.pt"))
                        for i in range(n)
                    ]
                    t0 = time.perf_counter()
                    runs += run_together(cmds, policy_env(policy))
                    batch_walls.append(time.perf_counter() - t0)
                rows.append({"model": model, "policy": policy, "copies": n, "runs": runs, "batch_wall_s": batch_walls})
                show_row(rows[-1], rows)
    return rows


def single(paths: dict[str, Path], work: Path, models: list[str], repeat: int) -> list[dict]:
    """Rows of (model, step): wall seconds of each policy, alternating, one job at a time."""
    rows = []
    for model in models:
        update = recinc_cmd("update", str(paths[model]), str(paths["slice"]), "-o", str(work / "u.pt"))
        steps = {
            "init (whole log)": recinc_cmd("init", str(paths["events"]), "-o", str(work / "s.pt"), "--model", model),
            "update (10% slice)": update,
        }
        for step, cmd in steps.items():
            runs: dict[str, list[dict[str, float]]] = {p: [] for p in POLICIES}
            for _ in range(repeat):
                for policy in POLICIES:
                    runs[policy] += run_together([cmd], policy_env(policy))
            rows.append({"model": model, "step": step, "runs": runs})
            console.print(single_table([rows[-1]]))
    return rows


def beside(paths: dict[str, Path], work: Path, repeat: int) -> list[dict]:
    """Rows per policy: the mf update's seconds while a sasrec init runs beside it."""
    rows = []
    for policy in POLICIES:
        big = recinc_cmd("init", str(paths["base"]), "-o", str(work / "beside.pt"), "--model", "sasrec", "-q")
        side = subprocess.Popen(big, env=policy_env(policy), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(8)  # past its start-up: training
        small = recinc_cmd("update", str(paths["mf"]), str(paths["slice"]), "-o", str(work / "small.pt"))
        runs = []
        for _ in range(repeat):
            if side.poll() is not None:
                break  # only runs that started while the big job trained count
            runs += run_together([small], policy_env(policy))
        side.wait()
        rows.append({"policy": policy, "runs": runs})
        console.print(beside_table(rows[-1:]))
    return rows


def beside_table(rows: list[dict]) -> Table:
    table = Table(title=f"{LOG}: the mf update while a sasrec init trains beside it")
    for col in ("policy", "runs", "training s (each)", "wall s (each)"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in rows:
        table.add_row(
            row["policy"],
            str(len(row["runs"])),
            ", ".join(f"{r['train_s']:.1f}" for r in row["runs"]),
            ", ".join(f"{r['wall_s']:.1f}" for r in row["runs"]),
        )
    return table


def worst_ratio(row: dict, rows: list[dict]) -> float:
    """The worst copy's wall over the median wall of one copy alone, same model and policy."""
    alone = [r for r in rows if r["model"] == row["model"] and r["policy"] == row["policy"] and r["copies"] == 1]
    if not alone:
        return float("nan")
    base = statistics.median(r["wall_s"] for r in alone[0]["runs"])
    return max(r["wall_s"] for r in row["runs"]) / base


def show_row(row: dict, rows: list[dict]) -> None:
    train = [r["train_s"] for r in row["runs"]]
    wall = [r["wall_s"] for r in row["runs"]]
    console.print(
        f"{row['model']:7} {row['policy']:6} {row['copies']} copies: training s per copy median "
        f"{statistics.median(train):.1f} worst {max(train):.1f}; wall s per copy median "
        f"{statistics.median(wall):.1f} worst {max(wall):.1f} ({worst_ratio(row, rows):.2f}x one alone); "
        f"all copies done in {statistics.median(row['batch_wall_s']):.1f} s (median of tries)"
    )


def concurrency_table(rows: list[dict], tries: int) -> Table:
    table = Table(title=f"{LOG}: N copies of the same update at once, {tries} tries each, {CORES} cores")
    cols = ("model", "policy", "copies", "train s median", "train s worst", "wall s median", "wall s worst",
            "worst / one alone", "all done s")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "policy") else "right")
    for row in rows:
        train = [r["train_s"] for r in row["runs"]]
        wall = [r["wall_s"] for r in row["runs"]]
        table.add_row(
            row["model"], row["policy"], str(row["copies"]),
            f"{statistics.median(train):.1f}", f"{max(train):.1f}",
            f"{statistics.median(wall):.1f}", f"{max(wall):.1f}",
            f"{worst_ratio(row, rows):.2f}x", f"{statistics.median(row['batch_wall_s']):.1f}",
        )  # fmt: skip
    return table


def single_table(rows: list[dict]) -> Table:
    table = Table(title=f"{LOG}: one job at a time, wall s (training s), medians; policies alternating")
    for col in ("model", "step", "today", "new", "new / today (median of pairs)"):
        table.add_column(col, justify="left" if col in ("model", "step") else "right")
    for row in rows:
        today, new = row["runs"]["today"], row["runs"]["new"]
        ratios = [n["wall_s"] / t["wall_s"] for n, t in zip(new, today, strict=True)]
        cells = [
            f"{statistics.median(r['wall_s'] for r in runs):.1f} ({statistics.median(r['train_s'] for r in runs):.1f})"
            for runs in (today, new)
        ]
        table.add_row(row["model"], row["step"], *cells, f"{statistics.median(ratios):.2f}")
    return table


def show(report: dict[str, Any]) -> None:
    if report.get("concurrency"):
        console.print(concurrency_table(report["concurrency"], report["tries"]))
    if report.get("beside"):
        console.print(beside_table(report["beside"]))
    if report.get("single"):
        console.print(single_table(report["single"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--models", default="mf,sasrec")
    parser.add_argument("--copies", default="1,2,4")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--beside", action="store_true", help="also time the mf update beside a sasrec init")
    parser.add_argument("--single", action="store_true", help="also time init and update one job at a time")
    parser.add_argument("--repeat", type=int, default=3, help="--single, --beside: runs of each policy")
    parser.add_argument("--show", type=Path, help="only print the tables of an earlier concurrency.json")
    parser.add_argument(
        "--policy", action="append", default=[], metavar="NAME:VAR=V,VAR=V",
        help="another policy to compare, e.g. 'passive:RECINC_THREADS=2,OMP_WAIT_POLICY=PASSIVE' (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    for spec in args.policy:
        name, _, assignments = spec.partition(":")
        POLICIES[name] = dict(a.split("=", 1) for a in assignments.split(",") if a)
    if args.show:
        show(json.loads(args.show.read_text()))
        return
    src = args.data_dir / LOG
    if not src.is_file():
        sys.exit(f"{src}: shared data not found; pass --data-dir")
    models = args.models.split(",")
    if args.beside and "mf" not in models:
        sys.exit("--beside times the mf update: include mf in --models")
    work = args.out / "concurrency"
    paths = prepare(src, work, models)
    copies = [int(c) for c in args.copies.split(",") if c]  # --copies '': no concurrency runs
    report: dict[str, Any] = {"cores": CORES, "tries": args.tries, "policies": POLICIES}
    report["concurrency"] = concurrency(paths, work, models, copies, args.tries)
    if args.beside:
        report["beside"] = beside(paths, work, args.repeat)
    if args.single:
        report["single"] = single(paths, work, models, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "concurrency.json").write_text(json.dumps(report, indent=2))
    show(report)
    console.print(f"report: {args.out / 'concurrency.json'}")


if __name__ == "__main__":
    main()
