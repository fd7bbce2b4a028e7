"""Steps that change code path with the number of cells, run above the switch.

scanpy's neighbours are exact below 8,192 cells and pynndescent above (the path that broke
with pynndescent 0.7: 'csr_array' object has no attribute 'getnnz'); UMAP runs 500
epochs up to 10,000 cells and 200 above; the silhouette is subsampled above 10,000 cells.
20,000 cells of well-separated Gaussian clusters take every large-data branch.
"""

import numpy as np
import pandas as pd
import pytest

N_CELLS = 20_000


@pytest.fixture(scope="module")
def clusters():
    """20,000 cells in 8 Gaussian clusters in 10 dimensions, and their cluster ids."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8.0, size=(8, 10))
    labels = rng.integers(0, 8, N_CELLS)
    return (centres[labels] + rng.normal(size=(N_CELLS, 10))).astype(np.float32), labels


def knn_purity(coords, labels, k=10):
    """Fraction of each cell's k nearest neighbours (in ``coords``) that share its label."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    return float((labels[idx] == labels[:, None]).mean())


def test_umap_of_20000_cells_keeps_clusters_apart(clusters):
    from plot_embeddings import umap_coordinates

    latent, labels = clusters
    coords = umap_coordinates(latent, seed=0)
    assert coords.shape == (N_CELLS, 2) and np.isfinite(coords).all()
    assert knn_purity(coords, labels) > 0.98


def test_leiden_reference_of_20000_cells(clusters):
    """cell_labels' Leiden clusters (PCA -> pynndescent kNN graph -> Leiden) recover the clusters."""
    from sklearn.metrics import adjusted_rand_score

    from leiden_reference import reference_labels

    latent, labels = clusters
    expression = np.abs(latent)  # a non-negative "expression" matrix with the same structure
    found, kind = reference_labels(pd.DataFrame(index=np.arange(N_CELLS).astype(str)), expression,
                                   label_key=None, resolution=0.2)
    assert kind == "clusters" and len(found) == N_CELLS
    assert adjusted_rand_score(labels, found) > 0.9


def test_clustering_metrics_of_20000_cells_subsample_the_silhouette(clusters):
    from metrics import clustering_metrics

    latent, labels = clusters
    scores = clustering_metrics(latent, labels.astype(str), seed=0)
    assert scores["ARI"] > 0.95 and 0.5 < scores["ASW"] <= 1 and np.isfinite([scores["CH"], scores["DB"]]).all()
