"""plot_embeddings.py: the interpretative embedding and the UMAPs. Small synthetic inputs: files, resolution, content."""

import numpy as np
import pytest

import plotstyle
from conftest import check_figure_files as check_files
from plot_embeddings import (category_order, label_title, plot_interpretative, plot_umaps,
                             umap_coordinates)


@pytest.fixture(scope="module")
def blobs():
    """400 cells in 4 labelled Gaussian blobs of a 10-d latent, with total counts."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6, size=(4, 10))
    labels = np.repeat(["T cell", "B cell", "Monocyte", "NK"], [160, 120, 80, 40])
    index = {name: i for i, name in enumerate(["T cell", "B cell", "Monocyte", "NK"])}
    latent = centres[[index[lab] for lab in labels]] + rng.normal(size=(len(labels), 10))
    counts = rng.lognormal(mean=7.5, sigma=0.5, size=len(labels)).round()
    return latent, labels, counts


def test_label_title_and_order():
    assert label_title(["markers"] * 3) == "Cell type (marker-based)"
    assert label_title(["clusters"]) == "Leiden cluster"
    assert label_title(["labels", "labels"]) == "Cell type"
    assert category_order(["10", "2", "2", "1"]) == ["1", "2", "10"]  # numeric, not lexical
    assert category_order(["b", "a", "b", "c", "c", "c"]) == ["c", "b", "a"]  # by size


def test_interpretative_scatter(tmp_path, blobs):
    latent, labels, _ = blobs
    interp = latent[:, :3]  # i_dim 3: the first two are drawn
    order = plot_interpretative(interp, labels, label_title="Cell type", dataset="toy",
                                pdf=tmp_path / "i.pdf", png=tmp_path / "i.png")
    assert order == ["T cell", "B cell", "Monocyte", "NK"]
    check_files(tmp_path / "i.pdf", tmp_path / "i.png", plotstyle.SINGLE_COLUMN)
    # points are rasterised, so the PDF holds an image rather than 400 vector markers
    assert b"/Subtype /Image" in (tmp_path / "i.pdf").read_bytes()


def test_interpretative_one_component(tmp_path, blobs):
    latent, labels, _ = blobs
    plot_interpretative(latent[:, 0], labels, label_title="Leiden cluster", dataset="toy",
                        pdf=tmp_path / "i1.pdf", png=tmp_path / "i1.png")
    check_files(tmp_path / "i1.pdf", tmp_path / "i1.png", plotstyle.SINGLE_COLUMN)


def test_umap_coordinates_deterministic(blobs):
    latent, labels, _ = blobs
    a = umap_coordinates(latent, seed=3)
    b = umap_coordinates(latent, seed=3)
    assert a.shape == (len(latent), 2)
    np.testing.assert_array_equal(a, b)
    # the blobs stay apart: each cell's nearest UMAP neighbour has its label
    d = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95


def test_umap_grid(tmp_path, blobs):
    latent, labels, counts = blobs
    rng = np.random.default_rng(2)
    umaps = {"iVAE latent z": rng.normal(size=(len(labels), 2)),
             "VAE latent z (irecon = 0)": rng.normal(size=(len(labels), 2))}
    order = plot_umaps(umaps, labels, counts, label_title="Cell type (marker-based)", dataset="toy",
                       pdf=tmp_path / "u.pdf", png=tmp_path / "u.png")
    assert set(order) == set(labels)
    check_files(tmp_path / "u.pdf", tmp_path / "u.png", plotstyle.DOUBLE_COLUMN)


def knn_purity(coords, labels, k=10):
    """Fraction of each cell's k nearest neighbours (in ``coords``) that share its label."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    return float((labels[idx] == labels[:, None]).mean())


@pytest.mark.slow  # UMAP of 20,000 cells: half a minute
def test_umap_of_20000_cells_keeps_clusters_apart(clusters_20000):
    from plot_embeddings import umap_coordinates

    latent, labels = clusters_20000
    coords = umap_coordinates(latent, seed=0)
    assert coords.shape == (20_000, 2) and np.isfinite(coords).all()
    assert knn_purity(coords, labels) > 0.98
