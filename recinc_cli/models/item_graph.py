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

import itertools
import warnings

import numpy as np
import torch
from scipy import linalg, sparse

from recinc_cli.data.unique import sorted_unique

#: PureSVD rank: the item factors kept (fewer for catalogues too small to have them).
SVD_RANK = 64
#: Catalogues up to this size take their neighbours from a dense matrix (400 MB at the limit).
_DENSE_TOP_K = 10_000
#: Cells of one padded block of :func:`row_top_k` (32 MiB of float64; with its index arrays a
#: block of 2^24 cells held 590 MB at the peak of a medium ``update``, for no speed).
_TOP_K_CELLS = 1 << 22
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
    # The new counts summed first: one matrix of the size of ``gram`` is built, not three.
    return (gram + (cross + cross.T + new.T @ new)).tocsr().astype(np.float32, copy=False)


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
    g, v = _cosines(gram)
    return _kept(g, row_top_k(g.indptr, v, k), v.astype(np.float32))


def _cosines(gram: sparse.csr_matrix) -> tuple[sparse.csr_matrix, np.ndarray]:
    """``gram`` as sorted CSR and the cosine (nnz,) float64 of each entry, -inf on the diagonal
    (an item is not its own neighbour).

    Computed in blocks of whole rows of about :data:`_TOP_K_CELLS` entries: a row index and a
    gathered norm per entry (int64 and float64) would add 16 bytes an entry to the peak of an
    ``update`` that prunes a 40M-entry matrix (640 MB).
    """
    g = gram.tocsr()
    g.sort_indices()
    norm = np.sqrt(np.maximum(g.diagonal(), 1e-9))
    v = np.empty(g.nnz)
    bounds = sorted_unique(np.append(np.searchsorted(g.indptr, np.arange(0, g.nnz, _TOP_K_CELLS)), g.shape[0]))
    for a, b in itertools.pairwise(bounds):  # blocks of whole rows
        lo, hi = g.indptr[a], g.indptr[b]
        rows = np.repeat(np.arange(a, b), np.diff(g.indptr[a : b + 1]))
        cols = g.indices[lo:hi]
        part = g.data[lo:hi] / norm[rows] / norm[cols]
        part[rows == cols] = -np.inf
        v[lo:hi] = part
    return g, v


def prune(gram: sparse.csr_matrix, per_row: int) -> sparse.csr_matrix:
    """``gram`` (n, n) symmetric with only each item's ``per_row`` most cosine-similar partners
    (an entry stays when either of its items keeps it) and the diagonal: at most
    ``2 * n * per_row + n`` entries. The kNN generators read at most ``neighbors`` partners per
    item, so ``per_row`` >= ``neighbors`` keeps what they read; PureSVD loses the weakest links.

    >>> g = sparse.csr_matrix(np.array([[4, 2, 1], [2, 4, 0], [1, 0, 4]], np.float32))
    >>> prune(g, 1).toarray().astype(int).tolist()
    [[4, 2, 1], [2, 4, 0], [1, 0, 4]]
    """
    g, v = _cosines(gram)
    kept = _kept(g, row_top_k(g.indptr, v, per_row), g.data)
    return (kept.maximum(kept.T) + sparse.diags(g.diagonal()).tocsr()).tocsr().astype(np.float32)


def _kept(g: sparse.csr_matrix, keep: np.ndarray, data: np.ndarray) -> sparse.csr_matrix:
    """The entries ``keep`` (nnz,) bool of sorted CSR ``g``, valued ``data[keep]``: built as CSR
    directly (the same matrix as through COO, without its sort: 0.8 s at 25M entries).

    >>> g = sparse.csr_matrix(np.array([[1, 2], [3, 4]], np.float32))
    >>> _kept(g, np.array([True, False, False, True]), g.data).toarray().tolist()
    [[1.0, 0.0], [0.0, 4.0]]
    """
    # Kept entries per row, summed over the non-empty rows' own segments (np.add.reduceat
    # reads an empty segment as one entry): no running count of nnz int64 (320 MB at 40M).
    filled = np.flatnonzero(np.diff(g.indptr))
    counts = np.zeros(g.shape[0], np.int64)
    if len(filled):
        counts[filled] = np.add.reduceat(keep, g.indptr[filled], dtype=np.int64)
    indptr = np.zeros(g.shape[0] + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sparse.csr_matrix((data[keep], g.indices[keep], indptr), shape=g.shape)


def row_top_k(indptr: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """(nnz,) bool: the ``k`` largest finite ``values`` of each CSR row (rows ``indptr`` (n + 1,)).

    Rows of at most ``k`` entries keep them all; longer rows are padded into buckets of similar
    length (powers of two) and cut by ``torch.topk``: linear in the entries, where sorting every
    entry of a 16M-entry matrix by (row, value) took 6 s.

    >>> row_top_k(np.array([0, 3, 4]), np.array([0.1, 0.9, 0.5, 0.2]), 2).tolist()
    [False, True, True, True]
    """
    lengths = np.diff(indptr)
    keep = np.repeat(lengths <= k, lengths)
    long = np.flatnonzero(lengths > k)
    bucket = np.ceil(np.log2(lengths[long])).astype(np.int64)
    for b in sorted_unique(bucket):
        members = long[bucket == b]
        width = int(lengths[members].max())
        step = max(1, _TOP_K_CELLS // width)
        for lo in range(0, len(members), step):
            part = members[lo : lo + step]
            starts, lens = indptr[part], lengths[part]
            # Each entry scattered to (its row in the block, its place in the row): work in
            # the entries, not in the padded cells (three padded index arrays took 1.1 s a call).
            local = np.repeat(np.arange(len(part)), lens)
            place = np.arange(len(local)) - np.repeat(np.cumsum(lens) - lens, lens)
            cells = np.full((len(part), width), -np.inf)
            cells[local, place] = values[starts[local] + place]
            vals, top = torch.topk(torch.from_numpy(cells), k, dim=1)
            keep[(starts[:, None] + top.numpy())[np.isfinite(vals.numpy())]] = True
    return keep & np.isfinite(values)


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
    # The products with G run in float32 (half the memory traffic of float64: 2x faster at
    # 77M entries), the orthonormalisation and the small eigenproblem in float64. The products
    # run in torch: its CSR product uses every thread (1.2 s against scipy's 2.4 s at 25M
    # entries) and gives the same floats. torch's QR is 5x faster than numpy's, but its other
    # rounding moved ML-100K's replay NDCG@10 from 0.2043 to 0.1986 (the booster's splits
    # follow the last bit of a feature), so the QR stays LAPACK's Householder QR, called through
    # scipy: the same floats as numpy.linalg.qr at half its time (1.3 s against 2.7 s at
    # 195k x 74), because numpy's wrapper transposes and copies around the same routines.
    g = _torch_csr(gram)
    q = np.random.default_rng(0).standard_normal((n, min(rank + 10, n)))
    for _ in range(_POWER_STEPS):
        q = _orthonormal(_times(g, q))
    vals, small = np.linalg.eigh(q.T @ _times(g, q))
    top = np.argsort(-vals, kind="stable")[:rank]
    return np.ascontiguousarray(q @ small[:, top], dtype=np.float32)


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """(n, r) float64 orthonormal basis of ``a``'s columns: the Q of its reduced QR, the same
    floats as ``np.linalg.qr(a)[0]``.

    >>> a = np.random.default_rng(0).standard_normal((1000, 20))
    >>> q = _orthonormal(a.copy())
    >>> bool(np.allclose(q.T @ q, np.eye(20))), bool(np.array_equal(q, np.linalg.qr(a)[0]))
    (True, True)
    """
    return linalg.qr(a, mode="economic", overwrite_a=True, check_finite=False)[0]


def _times(g: torch.Tensor, q: np.ndarray) -> np.ndarray:
    """``g @ q`` in float32, returned as float64: (n, n) CSR x (n, r) -> (n, r)."""
    return (g @ torch.from_numpy(q.astype(np.float32))).numpy().astype(np.float64)


def _torch_csr(gram: sparse.csr_matrix) -> torch.Tensor:
    """``gram`` as a float32 torch CSR tensor (n, n); its values are ``gram``'s own when they
    are float32 already (a copy would add 100 MB at 25M entries to an update's peak)."""
    g = gram.astype(np.float32, copy=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": a note for torch's devs, not our users
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(g.indptr.astype(np.int64)),
            torch.from_numpy(g.indices.astype(np.int64)),
            torch.from_numpy(g.data),
            size=g.shape,
        )
