"""The two pure ASGI layers in front of the FastAPI app of ``recinc serve``.

- :class:`Counted` counts each HTTP request's status and latency (FastAPI's
  ``@app.middleware`` wraps every response in a stream: about a millisecond a request);
- :class:`HotRoute` answers ``GET /recommend``, the one route under load, before FastAPI's
  stack: its eight layers of middleware, routing and dependency solving held the GIL for half
  of each request's time (py-spy, mf at 50 clients), and the GIL is the server's one core.
  Every other request, ``lifespan`` included, goes on to FastAPI unchanged.

>>> app = Counted(HotRoute(fastapi_app, "/recommend", answer), metrics)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from recinc_cli.service.metrics import Metrics

#: The paths metrics are counted under (any other: "other", so a scan cannot grow the labels).
ROUTES = frozenset({"/recommend", "/similar", "/health", "/version", "/metrics"})

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
#: Answers one request from its query string (undecoded): (HTTP status, JSON body).
Handler = Callable[[str], Awaitable[tuple[int, bytes]]]


class Counted:
    """Counts each HTTP request of ``app`` in ``metrics``: status and seconds, by route."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope.get("path", "")
            self.metrics.observe(path if path in ROUTES else "other", status[0], time.perf_counter() - t0)


class HotRoute:
    """``GET path`` answered by ``handler`` straight from the ASGI scope; the rest by ``app``."""

    def __init__(self, app: ASGIApp, path: str, handler: Handler) -> None:
        self.app, self.path, self.handler = app, path, handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        status, body = await self.handler(scope["query_string"].decode("latin-1"))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
