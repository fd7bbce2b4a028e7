"""The Leiden reference: clusters of the log-normalised data, the usual scanpy recipe.

Without cell-type labels, the metrics' reference groups (and the clusters that marker
genes name, cell_labels.py) are Leiden clusters of the log-normalised highly variable
genes; above ``evaluation.max_cells`` cells, of a seeded subsample, every other cell
joining the nearest cluster centroid.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp

from numba_cache import cache_umap_compilation
from sizing import CHUNK_ROWS
from subsample import subsample_cells


def reference_labels(obs: pd.DataFrame, X_lognorm, *, label_key: str | None, seed: int = 0,
                     resolution: float = 1.0, max_cells: int | None = None) -> tuple[np.ndarray, str]:
    """The reference groups for the clustering metrics: ``(labels as str, kind)``.

    With ``label_key``: the obs column, kind ``"labels"`` (ValueError if the column is
    absent or has missing values: drop those cells first). Without: Leiden clusters of the
    log-normalised highly variable genes ``X_lognorm`` (cells x genes, dense or sparse),
    kind ``"clusters"``: scanpy PCA (min(50, genes - 1, cells - 1) components, unscaled,
    seeded), the 15-nearest-neighbour graph, and ``sc.tl.leiden(flavor="igraph",
    n_iterations=2, resolution=resolution, random_state=seed)``, the usual scanpy recipe.
    Above ``max_cells`` cells (None: never), that recipe runs on a uniform seeded subsample
    of ``max_cells`` cells and every other cell joins the cluster of the nearest cluster
    centroid in the subsample's PCA space (``subsampled_leiden``).
    """
    if label_key is not None:
        if label_key not in obs.columns:
            raise ValueError(f"label_key '{label_key}' is not an obs column; the columns are {list(obs.columns)}.")
        column = obs[label_key]
        if column.isna().any():
            raise ValueError(f"obs['{label_key}'] has {int(column.isna().sum())} missing labels; drop those cells first.")
        return column.astype(str).to_numpy(), "labels"

    n_cells = X_lognorm.shape[0]
    if obs.shape[0] != n_cells:
        raise ValueError(f"obs has {obs.shape[0]} rows but the expression matrix has {n_cells} cells.")
    if max_cells is not None and n_cells > max_cells:
        rows = subsample_cells(n_cells, max_cells, seed=seed)
        blocks = ((start, X_lognorm[start:start + CHUNK_ROWS]) for start in range(0, n_cells, CHUNK_ROWS))
        return subsampled_leiden(X_lognorm[rows], blocks, n_cells, rows, seed=seed, resolution=resolution), "clusters"
    return leiden_clusters(X_lognorm, seed=seed, resolution=resolution).obs["leiden"].astype(str).to_numpy(), "clusters"


def leiden_clusters(X_lognorm, *, seed: int = 0, resolution: float = 1.0):
    """The AnnData of ``reference_labels``' Leiden recipe on every row of ``X_lognorm``:
    ``obs["leiden"]``, ``obsm["X_pca"]``, ``varm["PCs"]`` (genes x components)."""
    import anndata as ad
    import scanpy as sc

    n_cells, n_genes = X_lognorm.shape
    n_comps = min(50, n_genes - 1, n_cells - 1)
    if n_comps < 1:
        raise ValueError(f"Leiden reference clusters need at least 2 cells and 2 genes; got {n_cells} x {n_genes}.")
    X = X_lognorm.astype(np.float32) if sp.issparse(X_lognorm) else np.asarray(X_lognorm, dtype=np.float32)
    adata = ad.AnnData(X=X)
    sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
    cache_umap_compilation()
    sc.pp.neighbors(adata, n_neighbors=min(15, n_cells - 1), random_state=seed)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, resolution=resolution,
                 random_state=seed, key_added="leiden")
    return adata


def subsampled_leiden(X_subsample, blocks, n_cells: int, rows, *, seed: int = 0,
                      resolution: float = 1.0) -> np.ndarray:
    """Leiden clusters (as str) of all ``n_cells`` cells from a subsample of them.

    ``X_subsample``: the log-normalised rows ``rows`` (sorted indices) of the cells x genes
    matrix; ``blocks``: ``(first row, block)`` pairs covering every row of that matrix in
    order (e.g. ``h5ad_parts.iter_row_blocks``), read once. The subsample's cells get
    ``leiden_clusters``; each other cell is projected with the subsample's PCA
    ((x - mean) @ PCs, the subsample's gene means) and joins the cluster whose centroid
    (mean of its subsample cells' PCA scores) is nearest in Euclidean distance. Memory: the
    subsample and one block.
    """
    rows = np.asarray(rows)
    fitted = leiden_clusters(X_subsample, seed=seed, resolution=resolution)
    own = fitted.obs["leiden"].astype(str).to_numpy()
    names, codes = np.unique(own, return_inverse=True)
    scores = np.asarray(fitted.obsm["X_pca"], dtype=np.float64)
    centroids = np.stack([scores[codes == k].mean(0) for k in range(len(names))])
    pcs = np.asarray(fitted.varm["PCs"], dtype=np.float64)
    offset = np.asarray(X_subsample.mean(0), dtype=np.float64).ravel() @ pcs
    out = np.empty(n_cells, dtype=object)
    for start, block in blocks:
        projected = np.asarray(block @ pcs) - offset
        distance = (projected**2).sum(1)[:, None] - 2 * projected @ centroids.T + (centroids**2).sum(1)[None, :]
        out[start:start + block.shape[0]] = names[distance.argmin(1)]
    out[rows] = own
    return out.astype(str)
