"""top_k's chunks scored on several threads give what one thread gives; scoring runs on
numpy's BLAS without changing the scores beyond float32 rounding, and training keeps autograd."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from threadpoolctl import ThreadpoolController, threadpool_limits

from recinc_cli.data.seen import SeenItems
from recinc_cli.models.blas import scores_product
from recinc_cli.serving.recommend import top_k


def _scorer(n_users: int, n_items: int, seen_threads: set[str]):
    g = torch.Generator().manual_seed(0)
    users, items, bias = (
        torch.randn(n_users, 8, generator=g),
        torch.randn(n_items, 8, generator=g),
        torch.randn(n_items, generator=g),
    )

    def score(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        seen_threads.add(threading.current_thread().name)
        assert torch.is_inference_mode_enabled()  # each worker thread enters it itself
        return scores_product(users[u], items, bias, out=out)

    return score


@pytest.mark.parametrize("workers", [2, 3])
def test_threads_rank_as_one_thread(workers: int) -> None:
    n_users, n_items = 700, 300
    rng = np.random.default_rng(1)
    u, i = rng.integers(1, n_users, 4000), rng.integers(1, n_items, 4000)
    seen = SeenItems.empty(n_users).merge(u, i, n_users=n_users)
    idx = np.arange(1, n_users + 50)  # the last 50 users are unknown to ``seen``: nothing masked
    names: set[str] = set()
    progress: list[int] = []
    many, many_vals = top_k(
        _scorer(n_users + 50, n_items, names), idx, seen, 7, chunk=40, workers=workers, progress=progress.append
    )
    one, one_vals = top_k(_scorer(n_users + 50, n_items, set()), idx, seen, 7, chunk=40, workers=1)
    assert np.array_equal(many, one) and np.array_equal(many_vals, one_vals)
    assert len(names) > 1  # the chunks really ran on other threads
    assert sum(progress) == len(idx)  # every user reported once, from the caller's thread
    assert not seen.contains(np.repeat(idx[:-50], 7), many[:-50].ravel()).any()


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in ThreadpoolController().select(user_api="blas").info()]


def test_threads_restore_torch_and_blas_thread_counts_and_score_on_one_blas_thread() -> None:
    inner: list[list[int]] = []
    score = _scorer(600, 50, set())

    def recording(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        inner.append(_blas_threads())
        return score(u, out=out)

    with threadpool_limits(2, user_api="blas"):  # as on a 2-core machine, whatever this one has
        before = torch.get_num_threads()
        top_k(recording, np.arange(1, 600), None, 3, chunk=32, workers=2)
        assert torch.get_num_threads() == before
        assert set(_blas_threads()) == {2}
    assert inner and all(set(counts) == {1} for counts in inner)


def test_callers_on_other_threads_leave_blas_alone() -> None:
    # Overlapping callers that each restored the count they found would leave one thread behind.
    counts: list[list[int]] = []

    def score(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        counts.append(_blas_threads())
        return torch.zeros(len(u), 5)

    with threadpool_limits(2, user_api="blas"):
        callers = [threading.Thread(target=top_k, args=(score, np.arange(1, 300), None, 2)) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(timeout=30)
        assert len(counts) > 3 and all(set(c) == {2} for c in counts)
        assert set(_blas_threads()) == {2}


def test_an_error_in_a_worker_reaches_the_caller() -> None:
    def score(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if int(u[0]) > 300:
            raise ValueError("bad chunk")
        return torch.zeros(len(u), 20)

    with pytest.raises(ValueError, match="bad chunk"):
        top_k(score, np.arange(1, 600), None, 3, chunk=32, workers=2)


def test_numpy_product_matches_torch_and_training_keeps_gradients() -> None:
    g = torch.Generator().manual_seed(3)
    q, v, b = torch.randn(37, 64, generator=g), torch.randn(5000, 64, generator=g), torch.randn(5000, generator=g)
    want = torch.addmm(b, q, v.T)
    with torch.inference_mode():
        out = torch.empty(37, 5000)
        got = scores_product(q, v, b, out=out)
        assert got.data_ptr() == out.data_ptr()
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-5)
        assert torch.allclose(scores_product(q, v), q @ v.T, atol=1e-4, rtol=1e-5)
    w = v.clone().requires_grad_()
    scores_product(q, w, b).sum().backward()  # grad enabled: torch's product, with its graph
    assert w.grad is not None and torch.allclose(w.grad, q.sum(0).expand_as(v))
