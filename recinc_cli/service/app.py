"""The HTTP routes of ``recinc serve`` (FastAPI): recommend, similar, health, version, metrics.

Every request reads one :class:`~recinc_cli.service.holder.Served` snapshot, taken at its
start, so a hot reload never mixes two versions in one answer; each answer names its version.
A bad request gets a 4xx JSON body ``{"error": "..."}`` naming the parameter and what is wrong.

>>> app = build_app(ModelHolder("models/"))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import traceback
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import polars as pl
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from recinc_cli import __version__
from recinc_cli.config import DEFAULT_EVENT_TYPE
from recinc_cli.service.asgi import ASGIApp, Counted, HotRoute
from recinc_cli.service.batcher import Batcher, answer
from recinc_cli.service.holder import ModelHolder, Served
from recinc_cli.service.metrics import Metrics
from recinc_cli.serving.serve import serve_top
from recinc_cli.serving.similar import Similarity
from recinc_cli.serving.views import user_state
from recinc_cli.store.registry import registry_versions

#: Largest k a request may ask for.
MAX_K = 1000
#: Most fresh events one POST /recommend may carry.
MAX_EVENTS = 1000


class BadRequest(Exception):
    """A request that cannot be answered: ``status`` (4xx) and a message naming the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Event(BaseModel):
    """One fresh event of POST /recommend: the item, when (ISO 8601 or unix seconds), its type."""

    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1)
    timestamp: str | float
    event_type: str = DEFAULT_EVENT_TYPE


class RecommendBody(BaseModel):
    """POST /recommend: a user, k, and the user's fresh events (the session so far)."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1)
    k: int = 10
    repeats: bool | None = None
    events: list[Event] = Field(default_factory=list, max_length=MAX_EVENTS)


def build_app(holder: ModelHolder, metrics: Metrics | None = None) -> ASGIApp:
    """The ASGI app serving ``holder``'s model; ``metrics`` (default: new) counts its requests.

    FastAPI routes every request but ``GET /recommend``, which :class:`HotRoute` answers first
    (the same function answers it in FastAPI's route, which documents it at ``/docs``).
    """
    metrics = metrics or Metrics()
    app = FastAPI(title="recinc", version=__version__, docs_url="/docs", redoc_url=None)
    similar: dict[str, Similarity] = {}  # per served sha256: built on first use, kept
    started = time.time()

    shown: list[str] = [""]  # the sha256 the model gauge shows
    batcher = Batcher(on_batch=metrics.batch.observe)
    batcher.start()
    app.router.on_shutdown.append(batcher.stop)

    def snapshot() -> Served:
        snap = holder.current()
        if snap.sha256 != shown[0]:  # a reload happened: the gauge follows at the first request
            metrics.serving(snap.version, snap.sha256, snap.bundle.model.name, snap.loaded_at)
            shown[0] = snap.sha256
        return snap

    async def get_recommend(query: str) -> tuple[int, bytes]:
        """GET /recommend from its query string: (status, JSON body)."""
        try:
            params = _params(parse_qs(query, keep_blank_values=True), required={"user"}, optional={"k", "repeats"})
            snap = snapshot()
            k = _k(params.get("k"))
            repeats = _flag(params.get("repeats"), "repeats")
        except BadRequest as e:
            return e.status, json.dumps({"error": str(e)}).encode()
        try:  # the scoring is queued to the batcher's thread; this coroutine only waits for it
            return 200, await batcher.recommend(snap, params["user"], k, repeats)
        except Exception as e:  # a bug, not the request's fault: a JSON 500, the traceback in the log
            traceback.print_exception(e, file=sys.stderr)
            return 500, json.dumps({"error": f"internal error ({type(e).__name__}); see the server's log"}).encode()

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.get("/recommend")
    async def recommend(request: Request) -> Response:
        """A known user's top k (``user``, ``k`` = 10, ``repeats``); unknown users get popular items."""
        status, body = await get_recommend(request.url.query)
        return Response(body, status_code=status, media_type="application/json")

    @app.post("/recommend")
    def recommend_fresh(request: Request, body: RecommendBody) -> dict[str, Any]:
        _params(_query(request), required=set(), optional=set())
        snap = snapshot()
        k = _k(str(body.k))
        state = snap.state
        if body.events:
            state = user_state(snap.bundle, snap.state, body.user, _events_frame(body.user, body.events))
        return _recommend(snap, state, body.user, k, body.repeats)

    @app.get("/similar")
    def similar_items(request: Request) -> dict[str, Any]:
        params = _params(_query(request), required={"item"}, optional={"k"})
        snap = snapshot()
        k = _k(params.get("k"))
        idx = int(snap.bundle.items.lookup(pl.Series([params["item"]], dtype=pl.String))[0])
        if idx == 0:
            raise BadRequest(f"item {params['item']!r} is unknown to the model ({snap.version})", status=404)
        sim = similar.get(snap.sha256)
        if sim is None:
            sim = Similarity.of(snap.bundle.model, snap.bundle.seen, snap.bundle.expired())
            similar.clear()  # one model's at a time: a reload makes the old one garbage
            similar[snap.sha256] = sim
        items, scores = sim.top(idx, k)
        return {
            "item": params["item"],
            "version": snap.version,
            "source": sim.source,
            "items": [
                {"rank": r + 1, "item_id": snap.item_ids[int(i)], "score": round(float(s), 6)}
                for r, (i, s) in enumerate(zip(items, scores, strict=True))
            ],
        }

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        _params(_query(request), required=set(), optional=set())
        snap = snapshot()
        return {
            "status": "ok",
            "version": snap.version,
            "model": snap.bundle.model.name,
            "uptime_s": round(time.time() - started, 1),
        }

    @app.get("/version")
    def version(request: Request) -> dict[str, Any]:
        _params(_query(request), required=set(), optional=set())
        snap = snapshot()
        b = snap.bundle
        return {
            "version": snap.version,
            "path": str(snap.path),
            "sha256": snap.sha256,
            "model": b.model.name,
            "loaded_at": dt.datetime.fromtimestamp(snap.loaded_at, dt.timezone.utc).isoformat(timespec="seconds"),
            "users": len(b.users) - 1,
            "items": len(b.items) - 1,
            "watermark": dt.datetime.fromtimestamp(b.watermark_ms / 1000, dt.timezone.utc).isoformat(),
            "recinc": __version__,
            "lineage": b.lineage,
            "registry": registry_versions(holder.target),
        }

    @app.get("/metrics")
    def prometheus(request: Request) -> Response:
        snapshot()
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return Counted(HotRoute(app, "/recommend", get_recommend), metrics)


def _recommend(snap: Served, state: Any, user: str, k: int, repeats: bool | None) -> dict[str, Any]:
    b = snap.bundle
    repeats = b.train_cfg.repeats if repeats is None else repeats
    items, scores, source = serve_top(b, state, pl.Series([user], dtype=pl.String), k, repeats=repeats)
    return answer(snap, user, items[0], scores[0], str(source[0]))


def _params(given: dict[str, list[str]], required: set[str], optional: set[str]) -> dict[str, str]:
    """The query parameters (``parse_qs``'s), each given once; :class:`BadRequest` for unknown,
    repeated or missing ones."""
    unknown = sorted(set(given) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional)) or "none"
        raise BadRequest(f"unknown parameter {unknown[0]!r} (this endpoint takes: {allowed})")
    repeated = sorted(name for name, values in given.items() if len(values) > 1)
    if repeated:
        raise BadRequest(f"parameter {repeated[0]!r} given more than once")
    missing = sorted(name for name in required if not given.get(name, [""])[0])
    if missing:
        raise BadRequest(f"missing parameter {missing[0]!r}")
    return {name: values[0] for name, values in given.items()}


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query, keep_blank_values=True)


def _k(value: str | None) -> int:
    if value is None:
        return 10
    try:
        k = int(value)
    except ValueError:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K} (got {value!r})") from None
    if not 1 <= k <= MAX_K:
        raise BadRequest(f"k must be a whole number from 1 to {MAX_K} (got {k})")
    return k


def _flag(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be true or false (got {value!r})")


def _events_frame(user: str, events: list[Event]) -> pl.DataFrame:
    """POST /recommend's events as an events table of ``user``, sorted by time."""
    times = []
    for j, e in enumerate(events):
        try:
            if isinstance(e.timestamp, float | int) or str(e.timestamp).replace(".", "", 1).isdigit():
                t = dt.datetime.fromtimestamp(float(e.timestamp), dt.timezone.utc)
            else:
                t = dt.datetime.fromisoformat(str(e.timestamp).replace("Z", "+00:00"))
                t = t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise BadRequest(
                f"events.{j}.timestamp: cannot read {e.timestamp!r}; give ISO 8601 or unix seconds", status=422
            ) from None
        times.append(t)
    return pl.DataFrame(
        {
            "user_id": [user] * len(events),
            "item_id": [e.item_id for e in events],
            "timestamp": pl.Series(times, dtype=pl.Datetime("ms", "UTC")),
            "event_type": [e.event_type for e in events],
            "weight": np.ones(len(events), dtype=np.float32),
        }
    ).sort("timestamp", maintain_order=True)
