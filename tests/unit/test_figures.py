"""Every figure of the workflow on small synthetic inputs: files, resolution, content."""

import numpy as np
import pandas as pd
import pytest

import plotstyle
from plot_embeddings import (category_order, label_title, plot_interpretative, plot_umaps,
                             umap_coordinates)
from plot_latent_correlation import offdiagonal_pairs, plot_latent_correlation
from plot_metrics import plot_metrics
from plot_training import plot_training_curves


def check_files(pdf, png, width_in):
    """PDF with editable TrueType text; PNG at >= 300 dpi for the intended width, not blank."""
    from matplotlib.image import imread

    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"/FontFile2" in data  # TrueType embedded: text stays editable
    img = imread(png)
    assert img.shape[1] >= width_in * 300 * 0.9, img.shape
    assert img[..., :3].std() > 0.05  # not blank


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


# --- latent correlation -------------------------------------------------------------------


def test_latent_correlation_three_panels(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8))
    after = z[:, :2] @ rng.normal(size=(2, 8))  # rank 2: strongly correlated components
    scores = plot_latent_correlation(z, after, dataset="toy", pdf=tmp_path / "c.pdf", png=tmp_path / "c.png")
    assert scores["after"] > scores["before"] + 0.3
    check_files(tmp_path / "c.pdf", tmp_path / "c.png", plotstyle.DOUBLE_COLUMN)


def test_offdiagonal_pairs_unique_and_finite():
    corr = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, np.nan], [0.2, np.nan, 1.0]])
    np.testing.assert_allclose(np.sort(offdiagonal_pairs(corr)), [0.2, 0.5])
    assert offdiagonal_pairs(np.eye(6)).size == 15


# --- embeddings -----------------------------------------------------------------------------


def test_label_title_and_order():
    assert label_title(["markers"] * 3) == "Cell type (marker-based)"
    assert label_title(["clusters"]) == "Leiden cluster"
    assert label_title(["labels", "labels"]) == "Cell type"
    assert category_order(["10", "2", "2", "1"]) == ["1", "2", "10"]  # numeric, not lexical
    assert category_order(["b", "a", "b", "c", "c", "c"]) == ["c", "b", "a"]  # by size


def test_categorical_colors_okabe_ito_then_distinct_fallback():
    assert plotstyle.categorical_colors(8) == plotstyle.OKABE_ITO
    many = plotstyle.categorical_colors(20)
    assert len(set(many)) == 20


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
             "After the interpretative module": rng.normal(size=(len(labels), 2))}
    order = plot_umaps(umaps, labels, counts, label_title="Cell type (marker-based)", dataset="toy",
                       pdf=tmp_path / "u.pdf", png=tmp_path / "u.png")
    assert set(order) == set(labels)
    check_files(tmp_path / "u.pdf", tmp_path / "u.png", plotstyle.DOUBLE_COLUMN)


# --- training curves ------------------------------------------------------------------------


def fake_log(epochs=30, irecon=5.0, seed=0):
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    recon = 700 + 500 * np.exp(-e / 3) + rng.normal(scale=3, size=epochs)
    ir = irecon * (recon + 20)
    kl = 15 + 40 * np.exp(-e / 2)
    zero = np.zeros(epochs)
    return pd.DataFrame({"epoch": e, "seconds": 0.2, "loss": recon + ir + kl, "recon": recon, "irecon": ir,
                         "kl": kl, "dip": zero, "tc": zero, "mmd": zero})


def test_training_curves_skip_zero_terms(tmp_path):
    logs = {"iVAE": fake_log(), "VAE (irecon = 0)": fake_log(irecon=0.0, seed=1)}
    terms = plot_training_curves(logs, dataset="toy", pdf=tmp_path / "t.pdf", png=tmp_path / "t.png")
    assert terms == ["loss", "recon", "irecon", "kl"]  # dip, tc, mmd are zero throughout
    check_files(tmp_path / "t.pdf", tmp_path / "t.png", plotstyle.DOUBLE_COLUMN)


def test_training_curves_term_nonzero_in_one_model(tmp_path):
    vae = fake_log(irecon=0.0)
    vae["tc"] = np.linspace(3, 1, len(vae))
    terms = plot_training_curves({"iVAE": fake_log(), "VAE": vae}, dataset="toy",
                                 pdf=tmp_path / "t.pdf", png=tmp_path / "t.png")
    assert "tc" in terms and "dip" not in terms and "mmd" not in terms


# --- metrics --------------------------------------------------------------------------------


def fake_metrics(reference="labels"):
    rng = np.random.default_rng(0)
    methods = ["iVAE", "VAE", "PCA", "ICA", "NMF", "FA"]
    return pd.DataFrame({
        "method": methods,
        "NMI": rng.uniform(0.5, 0.9, 6), "ARI": rng.uniform(0.4, 0.8, 6), "ASW": rng.uniform(0.1, 0.4, 6),
        "CH": rng.uniform(200, 2000, 6), "DB": rng.uniform(0.9, 2.0, 6),
        "corr_score": [2.5, 1.5, 3e-7, 4e-6, 1.6, 1e-3], "reference": reference,
    })


def test_metrics_panels(tmp_path):
    drawn = plot_metrics(fake_metrics(), dataset="toy", pdf=tmp_path / "m.pdf", png=tmp_path / "m.png")
    assert drawn == ["NMI", "ARI", "ASW", "CH", "DB", "corr_score"]
    check_files(tmp_path / "m.pdf", tmp_path / "m.png", plotstyle.DOUBLE_COLUMN)


def test_metrics_missing_column_and_nan(tmp_path):
    table = fake_metrics("clusters").drop(columns="CH")
    table.loc[2, "ASW"] = np.nan
    drawn = plot_metrics(table, dataset="toy", pdf=tmp_path / "m.pdf", png=tmp_path / "m.png")
    assert drawn == ["NMI", "ARI", "ASW", "DB", "corr_score"]
