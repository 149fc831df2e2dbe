"""A sparse, decayed item co-occurrence (Gram) matrix and the item-item generators read from it.

The ranker's candidate generators all derive from one matrix ``G`` (n_items x n_items): a
user who consumes item ``i`` after items ``H`` (their newest ``max_len``) adds 1 to ``G[i, i]``
and to ``G[i, h]``, ``G[h, i]`` for every ``h`` in ``H``, as :mod:`recinc_cli.models.ease`
does, but sparse, so catalogues past EASE's 10,000 items fit. From ``G``:

- :func:`cosine_neighbours`: item-kNN, each item's ``k`` most cosine-similar items;
- :func:`svd_factors`: the top eigenvectors of ``G`` = PureSVD's item factors of the
  (decayed) user-item matrix, since ``G = X^T X``;

and EASE's closed form (:func:`recinc_cli.models.ease.ease_solve`) for catalogues it accepts.

>>> g = add_pairs(sparse.csr_matrix((4, 4), dtype=np.float32), np.array([0, 1]), np.array([2, 3]),
...               sparse.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 1, 0]], np.float32)))
>>> g.toarray().astype(int).tolist()
[[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

#: PureSVD rank: the item factors kept (fewer for catalogues too small to have them).
SVD_RANK = 64
#: Catalogues up to this size take their neighbours from a dense matrix (400 MB at the limit).
_DENSE_TOP_K = 10_000
#: Power steps of the randomised eigen-solver: enough for the top factors to settle.
_POWER_STEPS = 4


def add_pairs(
    gram: sparse.csr_matrix, rows: np.ndarray, items: np.ndarray, history: sparse.csr_matrix
) -> sparse.csr_matrix:
    """``gram`` plus the co-occurrences of new events ``(rows, items)`` with ``history``.

    ``rows`` (m,) index rows of ``history`` (U, n_items) binary, each user's items before the
    events; an item already in the history is no new co-occurrence.
    """
    n = gram.shape[0]
    new = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, items)), shape=(history.shape[0], n))
    new.data[:] = 1.0  # a user's repeated item counts once
    new = (new - new.multiply(history)).tocsr()
    new.eliminate_zeros()
    cross = (new.T @ history).tocsr()
    return (gram + cross + cross.T + new.T @ new).tocsr().astype(np.float32)


def binary_rows(seq_item: np.ndarray, n_items: int) -> sparse.csr_matrix:
    """(B, n_items) float32 0/1 of each row's items in ``seq_item`` (B, W) (0 = padding)."""
    r, c = np.nonzero(seq_item)
    m = sparse.csr_matrix((np.ones(len(r), np.float32), (r, seq_item[r, c])), shape=(len(seq_item), n_items))
    m.data[:] = 1.0
    return m


def recent_rows(seq_item: np.ndarray, n_items: int, last: int = 5) -> sparse.csr_matrix:
    """(B, n_items) float32: the newest ``last`` items of each row, weighted 1, 1/2, ... 1/last."""
    width = seq_item.shape[1]
    cols = np.arange(max(width - last, 0), width)
    part = seq_item[:, cols]
    weights = 1.0 / (width - cols)
    r, c = np.nonzero(part)
    m = sparse.csr_matrix((weights[c].astype(np.float32), (r, part[r, c])), shape=(len(seq_item), n_items))
    return m


def cosine_neighbours(gram: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """(n, n) float32: each item's ``k`` most cosine-similar other items (row = item)."""
    if gram.shape[0] <= _DENSE_TOP_K:
        return _dense_neighbours(gram, k)
    g = gram.tocoo()
    diag = np.sqrt(np.maximum(gram.diagonal(), 1e-9))
    keep = g.row != g.col
    r, c = g.row[keep], g.col[keep]
    v = g.data[keep] / diag[r] / diag[c]
    order = np.lexsort((-v, r))
    r, c, v = r[order], c[order], v[order]
    starts = np.searchsorted(r, r, side="left")
    top = (np.arange(len(r)) - starts) < k
    return sparse.csr_matrix((v[top].astype(np.float32), (r[top], c[top])), shape=gram.shape)


def _dense_neighbours(gram: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """:func:`cosine_neighbours` through a dense matrix: a row-wise partial sort is several
    times faster than sorting every non-zero when the catalogue is small."""
    n = gram.shape[0]
    diag = np.sqrt(np.maximum(gram.diagonal(), 1e-9))
    cos = gram.toarray() / diag[:, None] / diag[None, :]
    np.fill_diagonal(cos, 0.0)
    k = min(k, n - 1)
    if k < 1:
        return sparse.csr_matrix(gram.shape, dtype=np.float32)
    top = np.argpartition(-cos, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(cos, top, 1)
    keep = (vals > 0).ravel()
    rows = np.repeat(np.arange(n), k)[keep]
    return sparse.csr_matrix((vals.ravel()[keep].astype(np.float32), (rows, top.ravel()[keep])), shape=gram.shape)


def svd_factors(gram: sparse.csr_matrix) -> np.ndarray:
    """(n, r) float32 orthonormal item factors: ``G``'s top eigenvectors (r <= :data:`SVD_RANK`)."""
    n = gram.shape[0]
    rank = min(SVD_RANK, n - 2)
    if rank < 1 or gram.nnz == 0:
        return np.zeros((n, 0), np.float32)
    # Randomised subspace iteration (Halko et al. 2011) from a seeded start, not ARPACK:
    # ARPACK's answer varies from run to run, and the same G must give the same factors.
    g = gram.astype(np.float64)
    q = np.random.default_rng(0).standard_normal((n, min(rank + 10, n)))
    for _ in range(_POWER_STEPS):
        q, _ = np.linalg.qr(g @ q)
    vals, small = np.linalg.eigh(q.T @ (g @ q))
    top = np.argsort(-vals, kind="stable")[:rank]
    return np.ascontiguousarray(q @ small[:, top], dtype=np.float32)
