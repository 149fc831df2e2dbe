"""The micro-batching of ``GET /recommend``: concurrent requests are scored together, and each
answer is exactly what the same request alone gets (same items, same order, same version)."""

from __future__ import annotations

import asyncio
import json

import polars as pl
import pytest

from recinc_cli.service.batcher import Batcher, answer
from recinc_cli.service.holder import Served, load_served
from recinc_cli.serving.serve import serve_top


@pytest.fixture(scope="module")
def served(pipeline) -> Served:
    return load_served(pipeline.ckpt[12])


def alone(snap: Served, user: str, k: int) -> dict:
    items, scores, source = serve_top(snap.bundle, snap.state, pl.Series([user]), k)
    return answer(snap, user, items[0], scores[0], str(source[0]))


async def queued_then_started(batcher: Batcher, requests: list[tuple[Served, str, int]]) -> list[bytes]:
    """Queue every request before the thread starts, so the batches are known in advance."""
    tasks = [asyncio.ensure_future(batcher.recommend(snap, user, k, None)) for snap, user, k in requests]
    await asyncio.sleep(0)  # each task runs up to its await: all are queued
    batcher.start()
    try:
        return await asyncio.gather(*tasks)
    finally:
        batcher.stop()


def test_queued_requests_are_one_batch_and_each_answer_is_its_own(served: Served) -> None:
    users = [*served.bundle.users.ids[1:41], "never-seen-user"]
    sizes: list[int] = []
    batcher = Batcher(on_batch=sizes.append)
    bodies = asyncio.run(queued_then_started(batcher, [(served, u, 5) for u in users]))
    assert sizes == [len(users)]  # one batch, one serve_top call per (version, k, repeats)
    got = [json.loads(b) for b in bodies]
    assert [g["user"] for g in got] == users
    assert got == [json.loads(json.dumps(alone(served, u, 5))) for u in users]
    assert got[-1]["source"] == "popular" and {g["source"] for g in got[:-1]} == {"model"}


def test_batches_are_capped_and_split_by_k(served: Served) -> None:
    users = served.bundle.users.ids[1:21]
    sizes: list[int] = []
    batcher = Batcher(max_batch=8, on_batch=sizes.append)
    requests = [(served, u, 3 if j % 2 else 7) for j, u in enumerate(users)]
    bodies = asyncio.run(queued_then_started(batcher, requests))
    assert sizes == [8, 8, 4]
    assert [len(json.loads(b)["items"]) for b in bodies] == [3 if j % 2 else 7 for j in range(20)]
    assert json.loads(bodies[3]) == json.loads(json.dumps(alone(served, users[3], 3)))


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on(served: Served, monkeypatch) -> None:
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("scoring broke")
        return serve_top(*args, **kwargs)

    monkeypatch.setattr("recinc_cli.service.batcher.serve_top", broken)
    users = served.bundle.users.ids[1:4]
    batcher = Batcher()

    async def run() -> tuple[list[object], bytes]:
        tasks = [asyncio.ensure_future(batcher.recommend(served, u, 5, None)) for u in users]
        await asyncio.sleep(0)  # all three queued: one batch, the one that breaks
        batcher.start()
        failed = await asyncio.gather(*tasks, return_exceptions=True)
        return failed, await batcher.recommend(served, users[0], 5, None)

    try:
        failed, later = asyncio.run(run())
    finally:
        batcher.stop()
    assert len(failed) == 3 and all(isinstance(f, RuntimeError) for f in failed)
    assert json.loads(later) == json.loads(json.dumps(alone(served, users[0], 5)))
