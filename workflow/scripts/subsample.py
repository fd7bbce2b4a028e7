"""Atlas scale: a seeded, label-stratified subsample of cells (the rows a job then reads
with h5ad_parts.read_rows).

Above ``evaluation.max_cells`` cells, the steps whose cost grows faster than linearly with
the number of cells (Leiden reference clusters, UMAPs, the PCA/ICA/NMF/FA baselines,
batch-mixing scores) run on ``subsample_cells(n, max_cells, labels=..., seed=...)``; at or
below it they use every cell, exactly as without this module. Linear steps (KMeans-based
metrics, the correlation score, the embeddings themselves) stay on every cell.

Analysis only: no plotting imports.
"""

import numpy as np
import pandas as pd


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


