"""Sparse storage of data matrices (chapter 3.3): density, ``torch.sparse`` COO and CSR
tensors, the bytes each layout needs, and what a sparse × dense product costs.
"""

from __future__ import annotations

import warnings

import torch

from course_lib import _checks, timing


def density(X: torch.Tensor) -> float:
    """Fraction of non-zero entries, ``nnz / numel`` (dense or sparse tensor; chapter 3.3)."""
    _checks.tensor("X", X)
    if X.numel() == 0:
        return 0.0
    if X.layout == torch.strided:
        return int(torch.count_nonzero(X)) / X.numel()
    return int(torch.count_nonzero(X.to_dense())) / X.numel()


def to_sparse(X: torch.Tensor, layout: str = "csr", index_dtype: torch.dtype = torch.int64
              ) -> torch.Tensor:  # fmt: skip
    """A dense matrix as a ``torch.sparse`` tensor (chapter 3.3).

    ``"coo"`` stores every non-zero as (row, col, value): ``2·nnz`` int64 indices + ``nnz``
    values. ``"csr"`` compresses the rows: ``nnz`` column indices, ``n_rows + 1`` row pointers
    (``crow_indices``) and ``nnz`` values. ``index_dtype=torch.int32`` halves the index bytes
    of CSR (PyTorch's COO always uses int64), enough for up to 2³¹ − 1 non-zeros.
    """
    _checks.tensor("X", X)
    if X.layout != torch.strided:
        raise TypeError(f"X must be a dense (strided) torch.Tensor, got layout {X.layout}")
    _checks.tensor("X", X, ndim=2)
    _checks.one_of("layout", layout, ("coo", "csr"))
    _checks.one_of("index_dtype", index_dtype, (torch.int64, torch.int32))
    if layout == "coo":
        if index_dtype != torch.int64:
            raise ValueError(f"index_dtype must be torch.int64 for layout 'coo' (PyTorch's COO "
                             f"indices are int64), got {index_dtype}")  # fmt: skip
        return X.to_sparse_coo().coalesce()
    with warnings.catch_warnings():  # "CSR support is in beta": fine for what we use
        warnings.simplefilter("ignore", UserWarning)
        csr = X.to_sparse_csr()
        if index_dtype == torch.int32:
            csr = torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32),
                                          csr.col_indices().to(torch.int32), csr.values(),
                                          size=csr.shape)  # fmt: skip
        return csr


def memory_crossover(layout: str = "csr", value_bytes: int = 4, index_bytes: int = 8,
                     rows: int | None = None, cols: int | None = None) -> float:  # fmt: skip
    """The density below which ``layout`` needs fewer bytes than dense storage (chapter 3.3).

    Dense: ``rows · cols · s_v``. COO: ``nnz · (s_v + 2 s_i)``, so ``d* = s_v / (s_v + 2 s_i)``.
    CSR: ``nnz · (s_v + s_i) + (rows + 1) · s_i``, so
    ``d* = (rows · cols · s_v − (rows + 1) s_i) / ((s_v + s_i) · rows · cols)``, which tends to
    ``s_v / (s_v + s_i)`` for large matrices (``rows``/``cols`` ``None``): 1/3 for float32 values
    and int64 indices, 1/2 with int32 indices, 1/5 for COO.
    """
    _checks.one_of("layout", layout, ("coo", "csr"))
    value_bytes = _checks.positive_int("value_bytes", value_bytes)
    index_bytes = _checks.positive_int("index_bytes", index_bytes)
    rows = _checks.positive_int("rows", rows, allow_none=True)
    cols = _checks.positive_int("cols", cols, allow_none=True)
    if (rows is None) != (cols is None):
        raise ValueError(f"rows and cols must be given together or not at all, got rows={rows}, "
                         f"cols={cols}")  # fmt: skip
    if layout == "coo":
        return value_bytes / (value_bytes + 2 * index_bytes)
    if rows is None:
        return value_bytes / (value_bytes + index_bytes)
    cells = rows * cols
    return (cells * value_bytes - (rows + 1) * index_bytes) / ((value_bytes + index_bytes) * cells)


def memory_bytes(X: torch.Tensor) -> int:
    """Bytes a tensor's storage needs (chapter 3.3).

    Dense: ``numel · element_size``. COO: values + indices (``ndim × nnz`` int64). CSR: values
    + column indices + row pointers. So CSR beats dense when
    ``nnz · (s_v + s_i) + (rows + 1) · s_i < rows · cols · s_v``.
    """
    _checks.tensor("X", X)

    def nbytes(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    if X.layout == torch.strided:
        return nbytes(X)
    if X.layout == torch.sparse_coo:
        X = X.coalesce()
        return nbytes(X.values()) + nbytes(X.indices())
    if X.layout == torch.sparse_csr:
        return nbytes(X.values()) + nbytes(X.col_indices()) + nbytes(X.crow_indices())
    raise ValueError(f"X must have layout strided, sparse_coo or sparse_csr, got {X.layout}")


def random_sparse_matrix(rows: int, cols: int, density: float, seed: int = 0) -> torch.Tensor:
    """A dense ``(rows, cols)`` float32 matrix with exactly ``round(density · rows · cols)``
    non-zeros (standard normal values) at uniformly random places (chapter 3.3)."""
    rows = _checks.positive_int("rows", rows)
    cols = _checks.positive_int("cols", cols)
    density = _checks.fraction("density", density, closed=True)
    _checks.seed("seed", seed)
    generator = torch.Generator().manual_seed(seed)
    nnz = round(density * rows * cols)
    X = torch.zeros(rows * cols)
    where = torch.randperm(rows * cols, generator=generator)[:nnz]
    values = torch.randn(nnz, generator=generator)
    X[where] = torch.where(values == 0, torch.ones_like(values), values)
    return X.reshape(rows, cols)


def matmul_seconds(A: torch.Tensor, B: torch.Tensor, repeats: int = 5) -> float:
    """Median seconds of ``A @ B`` (``A`` dense or sparse) over ``repeats`` timed runs after
    one warm-up (:func:`course_lib.timing.measure`; chapter 3.3). Noisy on a shared machine:
    compare the layouts with :func:`course_lib.timing.interleaved`, as ratios, not values."""
    repeats = _checks.positive_int("repeats", repeats)
    _checks.tensor("A", A, ndim=2)
    _checks.tensor("B", B, ndim=2)
    if A.shape[1] != B.shape[0]:
        raise ValueError(
            f"A and B must be compatible, A.shape[1] == B.shape[0], got {tuple(A.shape)} "
            f"and {tuple(B.shape)}"
        )
    return timing.measure(lambda: A @ B, warmup=1, repeats=repeats, device=A.device).median
