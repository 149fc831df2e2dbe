"""Start ``recinc serve``: bind the socket, load the model, run uvicorn until SIGINT/SIGTERM.

The socket is bound here, before uvicorn starts, so ``--port 0`` (any free port) can be
reported: the first stderr line is ``recinc serve: http://HOST:PORT (...)``.
"""

from __future__ import annotations

import gc
import signal
import socket
import sys
from pathlib import Path

from recinc_cli.service.app import build_app
from recinc_cli.service.holder import ModelHolder
from recinc_cli.service.metrics import Metrics


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); OSError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it a keep-alive client waited 40 ms per answer
    # (Nagle holding the body behind the headers until the client's delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def run(target: str | Path, sock: socket.socket, reload_every: float = 2.0, quiet: bool = False) -> None:
    """Serve ``target`` (a checkpoint or registry) on the bound ``sock`` until stopped."""
    import torch
    import uvicorn
    from threadpoolctl import threadpool_limits

    from recinc_cli.threads import fixed_threads

    # Concurrency comes from requests, one thread each: a single user's scoring is too small
    # to split, and splitting it would make concurrent requests fight over the cores.
    torch.set_num_threads(fixed_threads() or 1)
    # numpy's BLAS too (mf and sasrec score batches of 32 users and more on it); set here, on
    # the main thread, as its count is one setting for the whole process.
    threadpool_limits(limits=fixed_threads() or 1, user_api="blas")
    metrics = Metrics()

    def reloaded(ok: bool, detail: str) -> None:
        metrics.reloads.labels("ok" if ok else "refused").inc()

    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    holder = ModelHolder(target, interval=reload_every, on_reload=reloaded, log=log)
    snap = holder.current()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"recinc serve: http://{shown}:{port} ({snap.bundle.model.name}, {snap.path}; "
        f"{'reloads every ' + format(reload_every, 'g') + ' s' if reload_every > 0 else 'no reload'})",
        file=sys.stderr,
        flush=True,
    )
    holder.start()
    # uvicorn stops gracefully on SIGTERM, then raises the signal again under the handler it
    # found: this one makes that a no-op, so a stopped server exits 0 (Ctrl-C still exits 130).
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    config = uvicorn.Config(
        build_app(holder, metrics), log_level="warning", access_log=False, timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    # Everything loaded so far (modules, the model) lives as long as the server: out of the
    # cycle collector's sight, its full passes stop stalling every request in flight (200 ms
    # each over the 212,000 objects of an mf server; p99 at 50 clients 266 ms -> see README).
    gc.freeze()
    try:
        server.run(sockets=[sock])
    finally:
        holder.stop()
