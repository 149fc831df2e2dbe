"""How recinc scales (issue 16): every figure as a ratio against a floor measured in the same run.

On a synthetic log from :mod:`synth` (generated first if missing), each step runs as its own
process and is timed with its peak resident memory (``os.wait4``), beside the floor it is held
against:

- ``preprocess`` of every daily partition vs a bare ``polars.scan_parquet().sink_parquet()``;
- ``init`` of the default model on all days but the last vs ``update`` with the last day;
- training throughput (events/s per epoch) of every model on the days before the last, then
  ``evaluate`` of each on users of the last day: seconds, peak RSS and single-user latency;
- ``recommend --all`` top-10 of an ``mf`` model vs a bare chunked ``torch.topk(U @ V.T)`` on the
  same factors (and implicit's ``recommend``, where implicit is installed);
- checkpoint save and load vs ``torch.save`` / ``torch.load`` of the same payload, and the file
  size vs the bytes of its tensors (also of an ``mf`` model with a row for every user and item).

Writes ``OUT/scale_SIZE.json`` and ``OUT/scale_SIZE.md`` (the table the README quotes).

Example::

    python bench/scale.py --size small --out bench/results      # make bench: about 4 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from synth import SIZES, generate  # noqa: E402

PY = sys.executable
#: Days of the log the per-model throughput is measured on (the ones before the last).
THROUGHPUT_DAYS = 3
#: Models whose training throughput is measured, and the options that keep it to one pass.
THROUGHPUT_MODELS: dict[str, tuple[str, ...]] = {
    "mf": ("--epochs", "1", "--valid-fraction", "0"),
    "sasrec": ("--epochs", "1", "--valid-fraction", "0"),
    "ease": (),
    "sknn": (),
    "ranker": (),
}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, limit: float | None = None) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, peak RSS (MiB), exit code and last stderr line. A command
    still running after ``limit`` seconds is killed, and its last line says so."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    timer = threading.Timer(limit, proc.kill) if limit else None
    if timer:
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    stopped = timer is not None and not timer.is_alive()
    if timer:
        timer.cancel()
    seconds = time.perf_counter() - start
    out, err = proc.stdout.read() if proc.stdout else "", proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = err.strip().splitlines()
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "exit": proc.returncode,
        "stdout": out,
        "last_line": f"stopped after {limit:.0f} s (--step-limit)" if stopped else (lines[-1] if lines else ""),
    }


def recinc(*args: object) -> list[str]:
    return [PY, "-m", "recinc_cli", *(str(a) for a in args)]


def ratio(a: float, b: float) -> float:
    return round(a / max(b, 1e-9), 3)


def step_preprocess(data: Path, work: Path) -> dict[str, Any]:
    days = sorted(data.glob("day_*.parquet"))
    ours = run(recinc("preprocess", *days, "-o", work / "all.parquet", "-q"), work)
    sources, sink = [str(d) for d in days], str(work / "floor.parquet")
    floor_code = f"import polars as pl; pl.scan_parquet({sources!r}).sink_parquet({sink!r})"
    floor = run([PY, "-c", floor_code], work)
    return {"recinc": _clean(ours), "floor": _clean(floor), "ratio": ratio(ours["seconds"], floor["seconds"])}


def split_last_day(work: Path) -> None:
    """``hist.parquet`` (every day but the last), ``last.parquet`` and ``newest.parquet``
    (the :data:`THROUGHPUT_DAYS` days before the last, which evaluates what they train)."""
    df = pl.read_parquet(work / "all.parquet")
    day = df["timestamp"].dt.date()
    days = day.unique().sort()
    df.filter(day < days[-1]).write_parquet(work / "hist.parquet")
    df.filter(day == days[-1]).write_parquet(work / "last.parquet")
    df.filter((day >= days[-THROUGHPUT_DAYS - 1]) & (day < days[-1])).write_parquet(work / "newest.parquet")


def step_incremental(work: Path) -> dict[str, Any]:
    init = run(recinc("init", "hist.parquet", "-o", "default.pt", "--json", "-q"), work)
    update = run(recinc("update", "default.pt", "last.parquet", "-o", "default2.pt", "--json", "-q"), work)
    out = {"init": _clean(init), "update": _clean(update), "update_vs_init": ratio(update["seconds"], init["seconds"])}
    if update["exit"] == 0:
        r = json.loads(update["stdout"])
        out["update_events_per_second"] = round(r["events"] / max(update["seconds"], 1e-9), 1)
        out["checkpoint_mb"] = round((work / "default2.pt").stat().st_size / 2**20, 1)
        out["slice_mb"] = round((work / "last.parquet").stat().st_size / 2**20, 1)
    return out


def step_throughput(work: Path, limit: float) -> dict[str, Any]:
    out = {}
    for name, options in THROUGHPUT_MODELS.items():
        cmd = recinc("init", "newest.parquet", "-o", f"{name}.pt", "--model", name, *options, "--json", "-q")
        r = run(cmd, work, limit=limit)
        entry = _clean(r)
        if r["exit"] == 0:
            lineage = json.loads(r["stdout"])
            entry["events_per_second_per_epoch"] = round(lineage["events_per_second"], 1)
            entry["epochs"] = lineage["epochs"]
        out[name] = entry
    return out


#: Users of the last day the evaluation and latency figures are measured on.
EVAL_USERS = 2000


def step_evaluate(work: Path) -> dict[str, Any]:
    """``evaluate`` of each throughput model on :data:`EVAL_USERS` users of the last day: its
    seconds and peak RSS, and its single-user latency (p50/p99 ms, one user at a time through
    the Python API, from the loaded model; the model's context included)."""
    last = pl.read_parquet(work / "last.parquet")
    users = last["user_id"].unique(maintain_order=True).head(EVAL_USERS)
    last.filter(pl.col("user_id").is_in(users.implode())).write_parquet(work / "eval.parquet")
    out = {}
    for name in THROUGHPUT_MODELS:
        if not (work / f"{name}.pt").exists():
            continue
        r = run(recinc("evaluate", f"{name}.pt", "eval.parquet", "--json", "-q"), work)
        entry = _clean(r)
        if r["exit"] == 0:
            report = json.loads(r["stdout"])
            entry["latency_ms"] = report.get("latency_ms")
            entry["ndcg"] = report.get("model", {}).get("ndcg")
        out[name] = entry
    return out


def step_whole_vocab_model(work: Path) -> dict[str, Any]:
    """An ``mf`` model with a row for every user and item of the log (one epoch on each user's
    and each item's first event), for the checkpoint load figure at full size."""
    df = pl.read_parquet(work / "all.parquet")
    firsts = pl.concat([df.unique("user_id", keep="first"), df.unique("item_id", keep="first")]).unique()
    firsts.sort("timestamp").write_parquet(work / "firsts.parquet")
    cmd = recinc("init", "firsts.parquet", "-o", "vocab_mf.pt", "--model", "mf", "--epochs", "1")
    r = run([*cmd, "--valid-fraction", "0", "--json", "-q"], work)
    out = _clean(r)
    if r["exit"] == 0:
        lineage = json.loads(r["stdout"])
        out["users"], out["items"] = lineage["n_users"], lineage["n_items"]
    return out


RECOMMEND_FLOOR = """
import sys, time, torch
raw = torch.load(sys.argv[1], weights_only=True)
w = raw["weights"]
users, items, bias = w["user_emb"][1:], w["item_emb"], w["item_bias"]
start = time.perf_counter()
for lo in range(0, len(users), 2048):
    s = users[lo : lo + 2048] @ items.T + bias
    s[:, 0] = float("-inf")
    torch.topk(s, 10, dim=1)
print(time.perf_counter() - start)
"""


#: implicit's ``recommend`` on the same factors (the item bias as one more factor), with the
#: seen items filtered as ``recommend --all`` does; its 0.7 CPU model takes the factors as set.
IMPLICIT_PEER = """
import sys, time, numpy as np, torch
from scipy import sparse
from threadpoolctl import threadpool_limits
from implicit.cpu.als import AlternatingLeastSquares
from recinc_cli.store.format import load_bundle
b = load_bundle(sys.argv[1])
w = b.model.state_dict()
u = torch.cat([w["user_emb"], torch.ones(len(w["user_emb"]), 1)], 1).numpy()
v = torch.cat([w["item_emb"], w["item_bias"][:, None]], 1).numpy()
seen = b.seen
n_users = min(len(u), seen.n_users)
rows = sparse.csr_matrix((np.ones(len(seen.indices), np.float32), seen.indices.numpy(), seen.indptr.numpy()),
                         shape=(seen.n_users, len(v)))[:n_users].tocsr()
m = AlternatingLeastSquares(factors=u.shape[1])
m.user_factors, m.item_factors = np.ascontiguousarray(u[:n_users]), np.ascontiguousarray(v)
ids = np.arange(1, n_users)
with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, not BLAS's
    start = time.perf_counter()
    m.recommend(ids, rows[ids], N=10, filter_already_liked_items=True)
print(time.perf_counter() - start)
"""


def step_recommend(work: Path, implicit_path: Path | None) -> dict[str, Any]:
    """``recommend --all`` of the mf model trained for the throughput figure vs the bare floor,
    and vs implicit's ``recommend`` where ``implicit_path`` holds implicit (installed there by
    ``make bench`` only: implicit is no dependency of recinc)."""
    ours = run(recinc("recommend", "mf.pt", "--all", "-k", "10", "-o", "recs.parquet", "-q"), work)
    floor = run([PY, "-c", RECOMMEND_FLOOR, "mf.pt"], work)
    out: dict[str, Any] = {"recinc": _clean(ours), "floor": _clean(floor)}
    out["ratio"] = ratio(ours["seconds"], floor["seconds"])
    out["floor_compute_seconds"] = round(float(floor["stdout"].strip() or 0), 3)
    if implicit_path is None or not (implicit_path / "implicit").exists():
        out["implicit"] = "not installed (make bench installs it under bench_out/implicit)"
        return out
    where = str(implicit_path.resolve())  # the command runs in ``work``
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([where, os.environ.get("PYTHONPATH", "")])}
    peer = run([PY, "-c", IMPLICIT_PEER, "mf.pt"], work, env=env)
    out["implicit"] = _clean(peer)
    if peer["exit"] == 0:
        out["implicit_compute_seconds"] = round(float(peer["stdout"].strip().splitlines()[-1]), 3)
        out["ratio_vs_implicit"] = ratio(ours["seconds"], peer["seconds"])
    return out


CHECKPOINT = """
import io, json, sys, time, torch
from recinc_cli.store.format import load_bundle, save_bundle, to_payload
path = sys.argv[1]
t0 = time.perf_counter(); bundle = load_bundle(path); load = time.perf_counter() - t0
t0 = time.perf_counter(); raw = torch.load(path, weights_only=True); raw_load = time.perf_counter() - t0
t0 = time.perf_counter(); save_bundle(bundle, path + ".again"); save = time.perf_counter() - t0
payload = to_payload(bundle)
t0 = time.perf_counter(); torch.save(payload, path + ".raw"); raw_save = time.perf_counter() - t0
def tensor_bytes(o):
    if isinstance(o, torch.Tensor): return o.numel() * o.element_size()
    if isinstance(o, dict): return sum(tensor_bytes(v) for v in o.values())
    if isinstance(o, (list, tuple)): return sum(tensor_bytes(v) for v in o)
    return 0
print(json.dumps({"load": load, "raw_load": raw_load, "save": save, "raw_save": raw_save,
                  "tensor_bytes": tensor_bytes(payload)}))
"""


def step_checkpoint(work: Path, name: str) -> dict[str, Any]:
    r = run([PY, "-c", CHECKPOINT, name], work)
    if r["exit"] != 0:
        return _clean(r)
    m = json.loads(r["stdout"])
    size = (work / name).stat().st_size
    return {
        "file_mb": round(size / 2**20, 2),
        "tensor_mb": round(m["tensor_bytes"] / 2**20, 2),
        "size_ratio": ratio(size, m["tensor_bytes"]),
        "load_seconds": round(m["load"], 3),
        "load_ratio": ratio(m["load"], m["raw_load"]),
        "save_seconds": round(m["save"], 3),
        "save_ratio": ratio(m["save"], m["raw_save"]),
    }


def _clean(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "stdout"}


def table(results: dict[str, Any]) -> str:
    """The Markdown table of ``results``: one row per figure, ratio first."""
    rows = [("figure", "recinc", "floor or peer", "ratio", "peak RSS")]
    p = results["preprocess"]
    rows.append(
        (
            "preprocess, every day",
            f"{p['recinc']['seconds']} s",
            f"{p['floor']['seconds']} s (polars scan -> sink)",
            f"{p['ratio']}x",
            f"{p['recinc']['peak_rss_mb']} MiB",
        )
    )
    if "incremental" not in results:  # --only preprocess
        return _markdown(rows)
    inc, rec = results["incremental"], results["recommend"]
    rows.append(
        (
            "update, last day (default model)",
            f"{inc['update']['seconds']} s",
            f"{inc['init']['seconds']} s (init on the days before)",
            f"{inc['update_vs_init']}x",
            f"{inc['update']['peak_rss_mb']} MiB (init {inc['init']['peak_rss_mb']})",
        )
    )
    if "ratio_vs_implicit" in rec:
        imp = rec["implicit"]
        rows.append(
            (
                "recommend --all, top 10 (mf) vs implicit",
                f"{rec['recinc']['seconds']} s",
                f"{imp['seconds']} s (implicit 0.7 recommend, same factors; "
                f"{rec['implicit_compute_seconds']} s of it computing)",
                f"{rec['ratio_vs_implicit']}x",
                f"implicit {imp['peak_rss_mb']} MiB",
            )
        )
    rows.append(
        (
            "recommend --all, top 10 (mf)",
            f"{rec['recinc']['seconds']} s",
            f"{rec['floor']['seconds']} s (chunked matmul + topk; {rec['floor_compute_seconds']} s of it computing)",
            f"{rec['ratio']}x",
            f"{rec['recinc']['peak_rss_mb']} MiB",
        )
    )
    vocab = results.get("whole_vocab_mf", {})
    for name, c in results["checkpoint"].items():
        if "load_seconds" in c:
            what = f"{name}: {vocab['users']:,} users, {vocab['items']:,} items" if name == "vocab_mf.pt" else name
            rows.append(
                (
                    f"checkpoint load / save ({what})",
                    f"{c['load_seconds']} / {c['save_seconds']} s",
                    "torch.load / torch.save of the same payload",
                    f"{c['load_ratio']}x / {c['save_ratio']}x",
                    f"file {c['file_mb']} MiB = {c['size_ratio']}x its tensors",
                )
            )
    for name, t in results["throughput"].items():
        rate = t.get("events_per_second_per_epoch")
        rows.append(
            (
                f"training throughput ({name})",
                f"{rate:,} events/s" if rate else f"exit {t['exit']}: {t['last_line'][:80]}",
                f"{t['seconds']} s for the {THROUGHPUT_DAYS} days before the last",
                "",
                f"{t['peak_rss_mb']} MiB",
            )
        )
    for name, e in results.get("evaluate", {}).items():
        lat = e.get("latency_ms") or {}
        rows.append(
            (
                f"evaluate, {EVAL_USERS:,} users of the last day ({name})",
                f"{e['seconds']} s" if e["exit"] == 0 else f"exit {e['exit']}: {e['last_line'][:80]}",
                f"one user at a time: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms" if lat else "",
                "",
                f"{e['peak_rss_mb']} MiB",
            )
        )
    return _markdown(rows)


def _markdown(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--data", type=Path, help="daily partitions [default: bench_data/SIZE, generated if missing]")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--work", type=Path, help="scratch directory [default: bench_out/scale_SIZE]")
    ap.add_argument("--implicit", type=Path, help="a directory holding implicit (pip install --target)")
    ap.add_argument("--step-limit", type=float, default=900, help="seconds one model's training may take")
    ap.add_argument(
        "--only",
        choices=["preprocess"],
        help="run just this step (the large log's preprocess, by hand); writes scale_SIZE_ONLY.{json,md}",
    )
    args = ap.parse_args()
    data = args.data or Path("bench_data") / args.size
    if not (data / "manifest.json").exists():
        generate(SIZES[args.size], data)
    work = args.work or Path("bench_out") / f"scale_{args.size}"
    work.mkdir(parents=True, exist_ok=True)
    data, work = data.resolve(), work.resolve()
    results: dict[str, Any] = {
        "size": args.size,
        "log": json.loads((data / "manifest.json").read_text()),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    results["preprocess"] = step_preprocess(data, work)
    if args.only:
        write(results, args.out, f"scale_{args.size}_{args.only}")
        return
    split_last_day(work)
    results["incremental"] = step_incremental(work)
    results["throughput"] = step_throughput(work, args.step_limit)
    results["evaluate"] = step_evaluate(work)
    results["recommend"] = step_recommend(work, args.implicit)
    results["whole_vocab_mf"] = step_whole_vocab_model(work)
    names = ("mf.pt", "default2.pt", "vocab_mf.pt")
    results["checkpoint"] = {name: step_checkpoint(work, name) for name in names if (work / name).exists()}
    write(results, args.out, f"scale_{args.size}")


def write(results: dict[str, Any], out: Path, name: str) -> None:
    """``out/NAME.json`` and ``out/NAME.md`` (the table, also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
