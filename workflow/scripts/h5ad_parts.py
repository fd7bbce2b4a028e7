"""Partial reads of an .h5ad: only the parts a job uses (a layer, some obs columns, an obsm
key, a subsample's rows), so that an atlas never has to fit in memory whole.

The row readers never hold more than one block of rows (``chunk_rows``) of the file's
matrix beside what they return, so a 4-million-cell file is read in constant memory.
"""

from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rule_io import InputError
from sizing import CHUNK_ROWS


def read_counts_layer(path):
    """Only what training and embedding need from preprocessed.h5ad: (counts CSR, gene names).

    Reads ``layers/counts`` and ``var`` alone, not X, .raw or obs, so an atlas costs only
    its highly-variable-gene counts in memory.
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        counts = same_index_dtype(sp.csr_matrix(read_elem(f["layers/counts"])))
        genes = read_elem(f["var"]).index
    return counts, genes


def read_obs_columns(path, keys, *, with_index: bool = False, what: str | None = None) -> pd.DataFrame:
    """The obs columns ``keys`` of an .h5ad file, in cell order, without the others (and,
    unless ``with_index``, without the cell names).

    An atlas's obs can hold gigabytes of per-cell strings; a step that needs two
    covariate columns reads those alone. A missing column is an InputError that lists the
    columns the file has.
    """
    import h5py
    from anndata.io import read_elem

    keys = list(keys)
    with h5py.File(path, "r") as f:
        group = f["obs"]
        columns = [str(c) for c in np.atleast_1d(group.attrs.get("column-order", []))]
        missing = [k for k in keys if k not in columns]
        if missing:
            raise InputError(f"{what or path}: covariate column(s) {missing} not in obs; its columns are {columns}.")
        index = pd.Index(read_elem(group[group.attrs["_index"]])) if with_index else None
        return pd.DataFrame({k: read_elem(group[k]) for k in keys}, index=index)


def same_index_dtype(X: sp.csr_matrix) -> sp.csr_matrix:
    """X with ``indices`` and ``indptr`` of one integer type (int32 when it holds them), in place.

    anndata reads int32 indices with an int64 indptr; scipy's routines then convert both
    arrays to a common type at every slice of rows, copying the whole matrix each time
    (slicing an atlas into batches became quadratic: minutes per embedding at 4 M cells).
    """
    dtype = np.int32 if max(X.nnz, *X.shape) < np.iinfo(np.int32).max else np.int64
    if X.indices.dtype != dtype:
        X.indices = X.indices.astype(dtype)
    if X.indptr.dtype != dtype:
        X.indptr = X.indptr.astype(dtype)
    return X


def read_lognorm(path):
    """(X, obs) of preprocessed.h5ad: the log-normalised HVG matrix and obs, not .raw or layers."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        X = read_elem(f["X"])
        obs = read_elem(f["obs"])
    return X, obs


def _matrix(f, key: str):
    """The AnnData-encoded matrix ``key`` of an open h5py file: an h5py Dataset (dense) or
    anndata's backed sparse dataset (sliceable by rows without reading the rest)."""
    import h5py
    from anndata.io import sparse_dataset

    element = f[key]
    return element if isinstance(element, h5py.Dataset) else sparse_dataset(element)


def matrix_shape(path, key: str = "X") -> tuple[int, int]:
    """(rows, columns) of the matrix ``key`` of an .h5ad file, from its header."""
    import h5py

    with h5py.File(path, "r") as f:
        return tuple(int(v) for v in _matrix(f, key).shape)


def iter_row_blocks(path, key: str = "X", *, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, object]]:
    """``(first row, block)`` for consecutive blocks of ``chunk_rows`` rows of the matrix
    ``key`` (``"X"``, ``"raw/X"``, ``"layers/counts"``) of an .h5ad file: CSR for a sparse
    matrix, a NumPy array for a dense one. One block in memory at a time."""
    import h5py

    with h5py.File(path, "r") as f:
        matrix = _matrix(f, key)
        n_rows = int(matrix.shape[0])
        for start in range(0, n_rows, chunk_rows):
            block = matrix[start:min(start + chunk_rows, n_rows)]
            yield start, (sp.csr_matrix(block) if sp.issparse(block) else np.asarray(block))


def read_rows(path, rows, key: str = "X", *, chunk_rows: int = CHUNK_ROWS):
    """The rows ``rows`` (sorted, unique indices) of the matrix ``key`` of an .h5ad file, in
    that order: CSR for a sparse matrix, a NumPy array for a dense one. Read a block of rows
    at a time, so memory holds one block plus the result."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0):
        raise ValueError("rows must be sorted, unique, non-negative indices.")
    n_rows, n_cols = matrix_shape(path, key)
    if rows.size and rows[-1] >= n_rows:
        raise IndexError(f"row {rows[-1]} is out of range of {key} ({n_rows} rows) in {path}.")
    parts, sparse = [], True
    for start, block in iter_row_blocks(path, key, chunk_rows=chunk_rows):
        sparse = sp.issparse(block)
        lo, hi = np.searchsorted(rows, [start, start + block.shape[0]])
        if hi > lo:
            parts.append(block[rows[lo:hi] - start])
    if not parts:
        return sp.csr_matrix((0, n_cols), dtype=np.float32) if sparse else np.zeros((0, n_cols), np.float32)
    return sp.vstack(parts, format="csr") if sparse else np.concatenate(parts)


def read_obs(path) -> pd.DataFrame:
    """obs of an .h5ad file, without reading its matrices."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        return read_elem(f["obs"])


def read_var_names(path, key: str = "var") -> pd.Index:
    """var names of an .h5ad file (``"var"``, or ``"raw/var"`` for .raw's genes)."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        return pd.Index(read_elem(f[key]).index.astype(str))


def read_uns(path, key: str, default=None):
    """``uns[key]`` of an .h5ad file (a nested key as ``"ivae/model_params"``), without
    reading anything else; ``default`` when the file has no such entry."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        node = f.get(f"uns/{key}")
        return default if node is None else read_elem(node)


def read_obsm(path, key: str, rows=None) -> np.ndarray:
    """``obsm[key]`` of an .h5ad file (all rows, or ``rows``), without reading anything else:
    anndata's backed mode would read every layer (the raw counts) into memory."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        values = np.asarray(read_elem(f["obsm"][key]))
    return values if rows is None else values[np.asarray(rows)]
