"""course_lib.sparse: densities, COO/CSR storage by hand formulas, sparse products (chapter 3.3)."""

from __future__ import annotations

import pytest
import torch

from course_lib.sparse import (
    density,
    matmul_seconds,
    memory_bytes,
    memory_crossover,
    random_sparse_matrix,
    to_sparse,
)


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


def test_int32_csr_halves_the_index_bytes_and_multiplies_the_same():
    rows, cols, nnz = 40, 50, 300
    A = random_sparse_matrix(rows, cols, nnz / (rows * cols), seed=3)
    csr32 = to_sparse(A, "csr", index_dtype=torch.int32)
    assert csr32.crow_indices().dtype == torch.int32 and csr32.col_indices().dtype == torch.int32
    assert memory_bytes(csr32) == nnz * 4 + nnz * 4 + (rows + 1) * 4
    B = torch.randn(cols, 6)
    torch.testing.assert_close(csr32 @ B, A @ B)
    assert torch.equal(csr32.to_dense(), A)


@pytest.mark.parametrize("layout, index_dtype, index_bytes", [
    ("csr", torch.int64, 8), ("csr", torch.int32, 4), ("coo", torch.int64, 8),
])  # fmt: skip
def test_memory_crossover_is_where_memory_bytes_cross(layout, index_dtype, index_bytes):
    """Below the formula's density the sparse layout is smaller, one non-zero above it larger."""
    rows = cols = 60
    crossover = memory_crossover(layout, 4, index_bytes, rows, cols)
    dense = rows * cols * 4
    below = int(crossover * rows * cols)  # the largest nnz at or below the crossover
    for nnz, smaller in ((below, True), (below + 1, False)):
        A = random_sparse_matrix(rows, cols, nnz / (rows * cols), seed=0)
        assert int(torch.count_nonzero(A)) == nnz
        S = to_sparse(A, layout, index_dtype=index_dtype)
        assert (memory_bytes(S) <= dense) is smaller, (nnz, memory_bytes(S), dense)


def test_memory_crossover_limits():
    assert memory_crossover("csr") == pytest.approx(1 / 3)
    assert memory_crossover("csr", index_bytes=4) == pytest.approx(1 / 2)
    assert memory_crossover("coo") == pytest.approx(1 / 5)
    assert memory_crossover("csr", 4, 8, 1000, 1000) < 1 / 3


@pytest.mark.parametrize("call", [
    lambda: to_sparse(torch.eye(3), "coo", index_dtype=torch.int32),
    lambda: to_sparse(torch.eye(3), "csr", index_dtype=torch.int16),
    lambda: memory_crossover("csr", rows=10),
    lambda: memory_crossover("bsr"),
])  # fmt: skip
def test_bad_arguments_fail_in_the_house_form(call):
    with pytest.raises(ValueError, match="must be"):
        call()
