"""Atlas scale: a seeded, label-stratified subsample of cells, and reading rows of an
.h5ad matrix a block at a time.

Above ``evaluation.max_cells`` cells, the steps whose cost grows faster than linearly with
the number of cells (Leiden reference clusters, UMAPs, the PCA/ICA/NMF/FA baselines,
batch-mixing scores) run on ``subsample_cells(n, max_cells, labels=..., seed=...)``; at or
below it they use every cell, exactly as without this module. Linear steps (KMeans-based
metrics, the correlation score, the embeddings themselves) stay on every cell.

The readers here never hold more than one block of rows (``chunk_rows``) of the file's
matrix beside what they return, so a 4-million-cell file is read in constant memory.
Analysis only: no plotting imports.
"""

from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sizing import CHUNK_ROWS

#: Every label keeps at least min(its number of cells, MIN_PER_LABEL) cells in a stratified subsample.
MIN_PER_LABEL = 50


def subsample_cells(n_cells: int, max_cells: int, *, labels=None, seed: int = 0) -> np.ndarray:
    """Sorted indices of the cells to keep: all ``n_cells`` when ``n_cells <= max_cells``.

    Otherwise ``max_cells`` cells drawn without replacement with ``np.random.default_rng(seed)``:
    uniformly without ``labels``; with ``labels`` (one per cell; missing values form a stratum
    of their own), stratified by label: each of the g labels first gets min(its count, m)
    cells, m = min(``MIN_PER_LABEL``, max_cells // g), at least 1; the rest of ``max_cells``
    is shared in proportion to the labels' remaining cells (largest remainders get the
    leftover cells), and each label's cells are drawn uniformly within it. So the subsample
    holds exactly ``max_cells`` cells and every label, unless there are more labels than
    ``max_cells`` (then one cell of each). Same inputs, same cells.
    """
    n_cells, max_cells = int(n_cells), int(max_cells)
    if max_cells < 1:
        raise ValueError(f"max_cells must be at least 1; got {max_cells}.")
    if n_cells <= max_cells:
        return np.arange(n_cells)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n_cells, size=max_cells, replace=False))
    labels = pd.Series(np.asarray(labels, dtype=object)).astype("string").fillna("<missing>").to_numpy()
    if labels.shape[0] != n_cells:
        raise ValueError(f"labels must hold one label per cell: {labels.shape[0]} labels for {n_cells} cells.")
    groups, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(groups))
    base = np.minimum(counts, max(1, min(MIN_PER_LABEL, max_cells // len(groups))))
    rest = max(max_cells - int(base.sum()), 0)
    spare = counts - base
    quota = rest * spare / spare.sum() if spare.sum() else np.zeros(len(groups))
    alloc = np.floor(quota).astype(np.int64)
    leftover = rest - int(alloc.sum())
    if leftover > 0:  # largest remainders first; ties by label order
        order = np.argsort(-(quota - alloc), kind="stable")
        alloc[order[:leftover]] += 1
    alloc = np.minimum(base + alloc, counts)
    by_group = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    chosen = [rng.choice(by_group[starts[k]:starts[k + 1]], size=alloc[k], replace=False)
              for k in range(len(groups))]
    return np.sort(np.concatenate(chosen))


def subsample_note(n_kept: int, n_cells: int, *, stratified: bool) -> str:
    """'a subsample of N of M cells (stratified by label)' / '(uniform)', for notes and captions."""
    how = "stratified by label" if stratified else "uniform"
    return f"a subsample of {n_kept:,} of {n_cells:,} cells ({how})"


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
