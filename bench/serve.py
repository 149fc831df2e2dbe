"""Load benchmark of ``recinc serve`` (``make bench-serve``): latency and throughput of
``GET /recommend`` beside the same calls through the Python API in-process (the floor).

For each model (mf, sasrec and the default, on ml-1m-users1-1500 from ../shared/data)::

    recinc preprocess LOG -o events.parquet
    recinc init events.parquet -o MODEL.pt --model MODEL
    recinc serve MODEL.pt --port 0              # localhost only

then, against the server:

- ``1 client``: one request at a time (no queueing): the serving overhead is this p50 minus
  the in-process p50 of the same users (``serve_top`` on the loaded checkpoint);
- ``50 clients``: 50 connections, each sending its next request when the last is answered
  (closed loop), for ``--seconds``: p50, p99 and requests per second.

The load generator is asyncio on raw keep-alive sockets (one process, little CPU), but it
shares the machine's cores with the server: on 2 cores, that is part of what is measured.
Bounded in count and time; nothing leaves localhost. Writes ``OUT/serve.json`` and prints a table.

Usage::

    python bench/serve.py [--data-dir ../shared/data] [--out bench_out] [--models mf,sasrec,ranker]
        [--seconds 20] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import DATASETS, console, recinc  # type: ignore[import-not-found]
from rich.table import Table

#: Requests of the one-client run (and in-process calls) per model.
SERIAL = 400


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


async def _load(port: int, paths: list[str], clients: int, seconds: float, limit: int) -> dict[str, Any]:
    """``clients`` closed-loop connections for ``seconds`` (or ``limit`` requests in all)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one(j: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = j
        while time.perf_counter() < deadline and len(latencies) < limit:
            t0 = time.perf_counter()
            status = await _request(reader, writer, paths[n % len(paths)])
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
            n += clients
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(j) for j in range(clients)))
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def in_process(ckpt: Path, users: list[str]) -> dict[str, Any]:
    """The floor: ``serve_top`` of one user at a time from the loaded checkpoint."""
    import polars as pl
    import torch

    from recinc_cli.service.holder import load_served
    from recinc_cli.serving.serve import serve_top

    torch.set_num_threads(1)  # as the server scores each request
    served = load_served(ckpt)  # as the server loads it
    times = []
    for u in users[:SERIAL]:
        t0 = time.perf_counter()
        serve_top(served.bundle, served.state, pl.Series([u]), 10)
        times.append(time.perf_counter() - t0)
    ms = np.array(times[20:]) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def bench_model(model: str, events: Path, work: Path, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    ckpt = work / f"{model}.pt"
    if not ckpt.exists():
        console.log(f"init {model}")
        recinc("init", str(events), "-o", str(ckpt), *(["--model", model] if model != "default" else []))
    floor = in_process(ckpt, users)
    env = {**os.environ, "RECINC_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "recinc_cli", "serve", str(ckpt), "--port", "0", "--reload-every", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        port = int(first.split()[2].rsplit(":", 1)[1])
        paths = [f"/recommend?user={u}&k=10" for u in users]
        asyncio.run(_load(port, paths, 1, 5.0, 50))  # warm up
        serial = asyncio.run(_load(port, paths, 1, args.seconds, SERIAL))
        loaded = asyncio.run(_load(port, paths, args.clients, args.seconds, 10**9))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "in_process": floor,
        "one_client": serial,
        "loaded": loaded,
        "overhead_p50_ms": round(serial["p50_ms"] - floor["p50_ms"], 2),
    }


def show(report: dict[str, Any]) -> None:
    table = Table(title=f"GET /recommend on {report['log']} ({report['cores']} cores; {report['clients']} clients)")
    columns = ("model", "in-process p50 / p99", "HTTP 1 client p50 / p99", "overhead p50", "loaded p50 / p99")
    for col in (*columns, "req/s", "errors"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for model, r in report["models"].items():
        f, s, load = r["in_process"], r["one_client"], r["loaded"]
        table.add_row(
            model,
            f"{f['p50_ms']} / {f['p99_ms']} ms",
            f"{s['p50_ms']} / {s['p99_ms']} ms",
            f"{r['overhead_p50_ms']} ms",
            f"{load['p50_ms']} / {load['p99_ms']} ms",
            f"{load['rps']:,}",
            str(load["errors"] + s["errors"]),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--models", default="mf,sasrec,default")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--show", type=Path, help="only print the table of an earlier serve.json")
    args = parser.parse_args()
    if args.show:
        show(json.loads(args.show.read_text()))
        return
    log = args.data_dir / DATASETS["ml-1m"]
    if not log.is_file():
        sys.exit(f"{log}: shared data not found; pass --data-dir")
    work = args.out / "serve"
    work.mkdir(parents=True, exist_ok=True)
    events = work / "events.parquet"
    if not events.exists():
        recinc("preprocess", str(log), "-o", str(events), "--time-unit", "s")
    import polars as pl

    known = pl.read_parquet(events)["user_id"].unique(maintain_order=True).to_list()
    users = [known[i] for i in np.random.default_rng(0).permutation(len(known))]
    report: dict[str, Any] = {"log": log.name, "cores": os.cpu_count(), "clients": args.clients, "models": {}}
    for model in args.models.split(","):
        report["models"][model] = bench_model(model, events, work, users, args)
        (args.out / "serve.json").write_text(json.dumps(report, indent=2))
    show(report)
    console.print(f"report: {args.out / 'serve.json'}")


if __name__ == "__main__":
    main()
