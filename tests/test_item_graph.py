"""The ranker's item graph: the sparse neighbour search above the dense limit finds the same
neighbours as the dense one, and its row-wise top-k keeps exactly each row's k largest values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from recinc_cli.models import item_graph


def random_gram(n: int, density: float, seed: int = 0) -> sparse.csr_matrix:
    """A symmetric (n, n) float32 co-occurrence-like matrix with a positive diagonal."""
    rng = np.random.default_rng(seed)
    m = sparse.random(n, n, density=density, random_state=rng, dtype=np.float32)
    m = m + m.T + sparse.diags(rng.uniform(1, 2, n).astype(np.float32))
    return sparse.csr_matrix(m, dtype=np.float32)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_row_top_k_keeps_each_rows_k_largest(k: int) -> None:
    rng = np.random.default_rng(k)
    lengths = rng.integers(0, 300, 200)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    values = rng.standard_normal(indptr[-1])
    values[rng.random(len(values)) < 0.05] = -np.inf  # excluded entries are never kept
    keep = item_graph.row_top_k(indptr, values, k)
    for r in range(len(lengths)):
        row, kept = values[indptr[r] : indptr[r + 1]], keep[indptr[r] : indptr[r + 1]]
        finite = np.sort(row[np.isfinite(row)])[::-1]
        assert kept.sum() == min(k, len(finite))
        assert np.array_equal(np.sort(row[kept])[::-1], finite[:k])


def test_sparse_neighbours_match_the_dense_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    gram = random_gram(400, 0.05)
    dense = item_graph.cosine_neighbours(gram, 10)
    monkeypatch.setattr(item_graph, "_DENSE_TOP_K", 0)
    monkeypatch.setattr(item_graph, "_TOP_K_CELLS", 64)  # many small padded blocks
    found = item_graph.cosine_neighbours(gram, 10)
    assert dense.nnz == found.nnz == 4000
    assert abs(dense - found).max() < 1e-6
    assert found.diagonal().max() == 0  # never an item's own neighbour


def test_pruning_keeps_the_diagonal_symmetry_and_every_neighbour() -> None:
    """Pruned to at least k partners per item, the matrix gives the same k neighbours."""
    gram = random_gram(300, 0.2, seed=2)
    pruned = item_graph.prune(gram, 12)
    assert pruned.nnz <= 2 * 300 * 12 + 300 < gram.nnz
    assert np.array_equal(pruned.diagonal(), gram.diagonal())
    assert abs(pruned - pruned.T).max() == 0
    kept = pruned.tocoo()
    assert np.allclose(kept.data, np.asarray(gram[kept.row, kept.col]).ravel())  # values untouched
    assert abs(item_graph.cosine_neighbours(pruned, 12) - item_graph.cosine_neighbours(gram, 12)).max() < 1e-6
