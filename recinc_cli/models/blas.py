"""The scoring product ``queries @ items.T (+ bias)`` on numpy's BLAS where no gradient is needed.

Scoring every item for a chunk of users is a skinny product: (B, d) x (d, n) with B a few
hundred, d 64 and n up to hundreds of thousands. torch's CPU build runs it on MKL, and on the
AMD EPYC cores we measure on, MKL ran it at 16.7 GFLOP/s on one thread and 24.6 on two, where
numpy's OpenBLAS (the one implicit uses) ran the same product into the same buffer at 35.7 and
53.7 (167 x 64 x 110,942, ``bench``'s medium catalogue). So scoring goes through numpy; training,
which needs the product's gradient, stays on torch. Both are float32 sums of the same terms, so
scores differ in the last bits only.

numpy's BLAS keeps its own thread pool: :func:`~recinc_cli.serving.recommend.top_k` limits it
to one thread while it scores chunks on several Python threads at once.
"""

from __future__ import annotations

import numpy as np
import torch

#: Fewer query rows stay on torch: a single user's scores (a matrix-vector product) took a p99
#: of 20 ms on numpy's BLAS against 10 ms on torch's (medium mf), as OpenBLAS wakes its threads.
MIN_ROWS = 32


def scores_product(
    queries: torch.Tensor, items: torch.Tensor, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``queries @ items.T + bias``: queries (B, d), items (n, d), bias (n,) or None; returns
    (B, n) float32, written into ``out`` (B, n) when given.

    On numpy's BLAS when no gradient is wanted, every tensor is float32 on the CPU and there
    are at least :data:`MIN_ROWS` queries (see the module's docstring); on torch otherwise, so
    training keeps its autograd graph.

    >>> q, v = torch.ones(2, 3), torch.arange(12.0).reshape(4, 3)
    >>> scores_product(q, v, bias=torch.tensor([0.0, 0.0, 0.0, 1.0])).tolist()
    [[3.0, 12.0, 21.0, 31.0], [3.0, 12.0, 21.0, 31.0]]
    """
    tensors = [t for t in (queries, items, bias, out) if t is not None]
    on_torch = any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors)
    if on_torch or len(queries) < MIN_ROWS or torch.is_grad_enabled():
        if bias is None:
            return torch.matmul(queries, items.T, out=out)
        return torch.addmm(bias, queries, items.T, out=out)
    if out is None:
        out = torch.empty(queries.shape[0], items.shape[0])
    target = out.numpy()
    np.matmul(queries.detach().numpy(), items.detach().numpy().T, out=target)
    if bias is not None:
        target += bias.detach().numpy()
    return out
