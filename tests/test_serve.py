"""``recinc serve``: the real server on an ephemeral port, every endpoint, bad requests, a hot
reload under load (no request fails or mixes versions) and a damaged new version refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import REPO

from recinc_cli import api

BIN = Path(sys.executable).parent


class Server:
    """A ``recinc serve`` process and its base URL."""

    def __init__(self, target: Path, *extra: str) -> None:
        env = {**os.environ, "RECINC_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        self.proc = subprocess.Popen(
            [str(BIN / "recinc"), "serve", str(target), "--port", "0", *extra],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        assert first.startswith("recinc serve: http://127.0.0.1:"), first
        self.url = first.split()[2]
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def get(self, path: str) -> tuple[int, Any]:
        return self._call(urllib.request.Request(self.url + path))

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        return self._call(
            urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        )

    def _call(self, req: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                status = r.status
                kind = r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raw, status, kind = e.read(), e.code, e.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def mf_server(pipeline, tmp_path_factory) -> Iterator[Server]:
    reg = tmp_path_factory.mktemp("served") / "models"
    reg.mkdir()
    shutil.copy(pipeline.ckpt[12], reg / "000001.pt")
    (reg / "LATEST").write_text("000001.pt\n")
    server = Server(reg, "--reload-every", "0")
    yield server
    assert server.stop() == 0  # SIGTERM: a clean shutdown


def a_user(pipeline) -> str:
    return pl.read_parquet(pipeline.events["day12"])["user_id"][0]


def test_recommend_a_known_user_as_the_python_api_does(mf_server: Server, pipeline) -> None:
    user = a_user(pipeline)
    status, body = mf_server.get(f"/recommend?user={user}&k=5")
    assert status == 200 and body["source"] == "model" and body["version"] == "000001.pt"
    want = api.recommend(pipeline.ckpt[12], users=[user], k=5)
    assert [i["item_id"] for i in body["items"]] == want["item_id"].to_list()
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert [i["score"] for i in body["items"]] == pytest.approx(want["score"].to_list(), abs=1e-4)


def test_an_unknown_user_gets_popular_items_marked_so(mf_server: Server) -> None:
    status, body = mf_server.get("/recommend?user=never-seen&k=3")
    assert status == 200 and body["source"] == "popular" and len(body["items"]) == 3


def test_post_with_fresh_events_leaves_those_items_out(mf_server: Server, pipeline) -> None:
    user = a_user(pipeline)
    _, before = mf_server.get(f"/recommend?user={user}&k=3")
    top = before["items"][0]["item_id"]
    status, body = mf_server.post(
        "/recommend",
        {"user": user, "k": 3, "events": [{"item_id": top, "timestamp": "2026-03-13T10:00:00Z", "event_type": "view"}]},
    )
    assert status == 200, body
    assert top not in [i["item_id"] for i in body["items"]] and len(body["items"]) == 3


def test_similar_items_by_the_model_s_item_vectors(mf_server: Server, pipeline) -> None:
    item = pl.read_parquet(pipeline.events["day12"])["item_id"][0]
    status, body = mf_server.get(f"/similar?item={item}&k=4")
    assert status == 200 and body["source"] == "embedding" and len(body["items"]) == 4
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and item not in [i["item_id"] for i in body["items"]]
    assert mf_server.get("/similar?item=no-such-item")[0] == 404


def test_health_version_and_metrics(mf_server: Server, pipeline) -> None:
    status, health = mf_server.get("/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "mf"
    status, version = mf_server.get("/version")
    assert status == 200 and version["version"] == "000001.pt" and version["registry"]["latest"] == "000001.pt"
    assert [e["command"] for e in version["lineage"]] == ["init", "update", "update"]
    status, text = mf_server.get("/metrics")
    assert status == 200
    assert 'recinc_requests_total{endpoint="/health",status="200"}' in text
    assert 'recinc_model_info{model="mf",sha256=' in text and 'version="000001.pt"' in text
    assert "recinc_request_seconds_bucket" in text


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/recommend?user=u1&kk=3", 400, "unknown parameter 'kk' (this endpoint takes: k, repeats, user)"),
        ("/recommend?k=3", 400, "missing parameter 'user'"),
        ("/recommend?user=u1&k=0", 400, "k must be a whole number from 1 to 1000 (got 0)"),
        ("/recommend?user=u1&k=abc", 400, "k must be a whole number from 1 to 1000 (got 'abc')"),
        ("/recommend?user=u1&user=u2", 400, "parameter 'user' given more than once"),
        ("/recommend?user=u1&repeats=maybe", 400, "repeats must be true or false (got 'maybe')"),
        ("/similar?k=3", 400, "missing parameter 'item'"),
        ("/health?x=1", 400, "unknown parameter 'x' (this endpoint takes: none)"),
    ],
)
def test_bad_requests_get_4xx_json_naming_the_problem(mf_server: Server, path: str, status: int, error: str) -> None:
    assert mf_server.get(path) == (status, {"error": error})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"user": "u1", "events": [{"item_id": "i1"}]}, "events.0.timestamp: Field required"),
        (
            {"user": "u1", "events": [{"item_id": "i1", "timestamp": "later"}]},
            "events.0.timestamp: cannot read 'later'; give ISO 8601 or unix seconds",
        ),
        (
            {"user": "u1", "events": [{"item_id": "i1", "timestamp": 1, "colour": "red"}]},
            "events.0.colour: Extra inputs are not permitted",
        ),
        ({"k": 3}, "user: Field required"),
    ],
)
def test_malformed_events_get_422(mf_server: Server, body: dict, error: str) -> None:
    assert mf_server.post("/recommend", body) == (422, {"error": error})


def test_sasrec_serves_a_new_visitor_from_the_events_posted(sasrec_pipeline, tmp_path: Path) -> None:
    server = Server(sasrec_pipeline.ckpt[12], "--reload-every", "0")
    try:
        items = pl.read_parquet(sasrec_pipeline.events["day12"])["item_id"].head(3).to_list()
        events = [{"item_id": i, "timestamp": 1773400000 + j} for j, i in enumerate(items)]
        status, body = server.post("/recommend", {"user": "visitor-42", "k": 5, "events": events})
        assert status == 200 and body["source"] == "history" and len(body["items"]) == 5
        assert not set(items) & {i["item_id"] for i in body["items"]}
        status, body = server.get("/similar?item=" + items[0])
        assert status == 200 and body["source"] == "embedding"
    finally:
        server.stop()


def test_hot_reload_under_load_never_fails_or_mixes_versions(pipeline, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    reg.mkdir()
    shutil.copy(pipeline.ckpt[11], reg / "000001.pt")
    (reg / "LATEST").write_text("000001.pt\n")
    users = pl.read_parquet(pipeline.events["day12"])["user_id"].unique(maintain_order=True).head(20).to_list()
    want = {
        name: {u: tuple(api.recommend(ckpt, users=[u], k=5)["item_id"]) for u in users}
        for name, ckpt in (("000001.pt", pipeline.ckpt[11]), ("000002.pt", pipeline.ckpt[12]))
    }
    assert any(want["000001.pt"][u] != want["000002.pt"][u] for u in users)  # the versions differ
    server = Server(reg, "--reload-every", "0.1")
    seen: list[tuple[str, str, tuple[str, ...], int]] = []
    stop = threading.Event()

    def client(j: int) -> None:
        n = 0
        while not stop.is_set():
            u = users[(j + n) % len(users)]
            status, body = server.get(f"/recommend?user={u}&k=5")
            seen.append(
                (
                    body.get("version", "?") if status == 200 else f"HTTP {status}",
                    u,
                    tuple(i["item_id"] for i in body.get("items", [])),
                    status,
                )
            )
            n += 1

    clients = [threading.Thread(target=client, args=(j,)) for j in range(4)]
    try:
        for t in clients:
            t.start()
        time.sleep(1.0)
        shutil.copy(pipeline.ckpt[12], reg / "000002.pt")
        assert api.rollback(reg, to=2)["latest"] == 2  # LATEST -> 000002.pt, as update --registry would
        deadline = time.time() + 60
        while time.time() < deadline and not any(v == "000002.pt" for v, *_ in seen[-20:]):
            time.sleep(0.1)
        time.sleep(1.0)
        # A damaged newer version: refused, the last good one keeps serving.
        (reg / "000003.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
        (reg / "LATEST").write_text("000003.pt\n")
        time.sleep(1.5)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=60)
    assert seen and all(status == 200 for *_, status in seen), [s for s in seen if s[3] != 200][:3]
    versions = [v for v, *_ in seen]
    assert versions[0] == "000001.pt" and versions[-1] == "000002.pt"
    assert all(items == want[v][u] for v, u, items, _ in seen)  # each answer is one version's
    assert server.get("/version")[1]["version"] == "000002.pt"
    metrics = server.get("/metrics")[1]
    assert (
        'recinc_reloads_total{result="ok"} 1.0' in metrics and 'recinc_reloads_total{result="refused"} 1.0' in metrics
    )
    server.stop()
    assert any("now serving" in line and "000002.pt" in line for line in server.log)
    assert any("refused a new version, still serving" in line and "000003.pt" in line for line in server.log)


def test_a_damaged_checkpoint_at_start_exits_4_and_a_taken_port_2(
    cli, expect_error, tmp_path: Path, mf_server: Server
) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    expect_error(cli("serve", tmp_path / "bad.pt", "--port", "0"), 4)
    port = mf_server.url.rsplit(":", 1)[1]
    text = expect_error(cli("serve", tmp_path / "bad.pt", "--port", port), 2)
    assert text.startswith(f"--host 127.0.0.1 --port {port}: cannot listen there")
