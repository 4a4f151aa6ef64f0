"""course_lib.sparse: densities, COO/CSR storage by hand formulas, sparse products (chapter 3.3)."""

from __future__ import annotations

import pytest
import torch

from course_lib.sparse import density, matmul_seconds, memory_bytes, random_sparse_matrix, to_sparse


def test_random_sparse_matrix_has_exact_density():
    A = random_sparse_matrix(40, 50, 0.1, seed=1)
    assert int(torch.count_nonzero(A)) == 200
    assert density(A) == pytest.approx(0.1)
    assert torch.equal(A, random_sparse_matrix(40, 50, 0.1, seed=1))


def test_memory_bytes_match_hand_formulas():
    rows, cols, nnz = 40, 50, 200
    A = random_sparse_matrix(rows, cols, nnz / (rows * cols), seed=0)
    assert memory_bytes(A) == rows * cols * 4
    csr, coo = to_sparse(A, "csr"), to_sparse(A, "coo")
    assert memory_bytes(csr) == nnz * 4 + nnz * 8 + (rows + 1) * 8
    assert memory_bytes(coo) == nnz * 4 + 2 * nnz * 8
    assert density(csr) == pytest.approx(0.1)
    for S in (csr, coo):
        assert torch.equal(S.to_dense(), A)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_matmul_equals_dense_and_timer_runs(layout):
    A = random_sparse_matrix(30, 20, 0.2, seed=2)
    B = torch.randn(20, 7)
    S = to_sparse(A, layout)
    torch.testing.assert_close(S @ B, A @ B)
    seconds = matmul_seconds(S, B, repeats=3)
    assert isinstance(seconds, float) and seconds > 0
