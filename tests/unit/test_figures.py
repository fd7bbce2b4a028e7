"""Every figure of the workflow on small synthetic inputs: files, resolution, content."""

import numpy as np
import pandas as pd
import pytest

import plotstyle
from plot_embeddings import (category_order, label_title, plot_interpretative, plot_umaps,
                             umap_coordinates)
from correlation_nulls import correlation_nulls
from plot_latent_correlation import plot_latent_correlation
from plot_metrics import plot_metrics, seeds_caption
from plot_spectrum import plot_spectrum
from plot_training import _style as training_style
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


def test_latent_correlation_with_nulls(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8))
    after = z[:, :2] @ rng.normal(size=(2, 8))  # rank 2: strongly correlated components
    rows, draws = correlation_nulls(z, after, 2, n_draws=50, seed=0)
    summary = pd.DataFrame(rows)
    assert list(summary["panel"]) == ["before", "after"] and (summary["n_draws"] == 50).all()
    before, after_row = summary.iloc[0], summary.iloc[1]
    assert before["null_high"] < 0.2 and after_row["null_mean"] > 0.4  # chance vs the architecture
    long = pd.DataFrame([{"panel": p, "draw": i, "value": v} for p, vs in draws.items() for i, v in enumerate(vs)])
    scores = plot_latent_correlation(z, after, summary, long, dataset="toy", pdf=tmp_path / "c.pdf",
                                     png=tmp_path / "c.png")
    assert scores["after"] > scores["before"] + 0.3
    assert scores["after"] == pytest.approx(after_row["observed"])
    check_files(tmp_path / "c.pdf", tmp_path / "c.png", plotstyle.DOUBLE_COLUMN)


def test_spectrum_figure(tmp_path):
    rng = np.random.default_rng(5)
    latents = {"iVAE": [rng.normal(size=(300, 6)) * [5, 4, 0.3, 0.3, 0.3, 0.3] for _ in range(3)],
               "VAE": [rng.normal(size=(300, 6)) for _ in range(3)],
               "VAE-narrow": [rng.normal(size=(300, 2)) for _ in range(3)]}
    table = plot_spectrum(latents, dataset="toy", pdf=tmp_path / "s.pdf", png=tmp_path / "s.png")
    pr = table.groupby("method")["participation_ratio"].mean()
    assert pr["iVAE"] < 2.5 < 5 < pr["VAE"] and table.groupby(["method", "seed"])["fraction"].sum().round(6).eq(1).all()
    check_files(tmp_path / "s.pdf", tmp_path / "s.png", plotstyle.SINGLE_COLUMN * 1.25)
    assert plotstyle.method_colour("VAE") == "#0072B2"
    assert plotstyle.method_colour("VAE", {"VAE": "#123456"}) == "#123456"  # the rule's colours first


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
             "VAE latent z (irecon = 0)": rng.normal(size=(len(labels), 2))}
    order = plot_umaps(umaps, labels, counts, label_title="Cell type (marker-based)", dataset="toy",
                       pdf=tmp_path / "u.pdf", png=tmp_path / "u.png")
    assert set(order) == set(labels)
    check_files(tmp_path / "u.pdf", tmp_path / "u.png", plotstyle.DOUBLE_COLUMN)


# --- training curves ------------------------------------------------------------------------


def fake_log(epochs=30, irecon=5.0, seed=0, kept=None):
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    recon = 700 + 500 * np.exp(-e / 3) + rng.normal(scale=3, size=epochs)
    ir = irecon * (recon + 20)
    kl = 15 + 40 * np.exp(-e / 2)
    zero = np.zeros(epochs)
    frame = pd.DataFrame({"epoch": e, "seconds": 0.2, "loss": recon + ir + kl, "recon": recon, "irecon": ir,
                          "kl": kl, "dip": zero, "tc": zero, "mmd": zero})
    for term in ("loss", "recon", "irecon", "kl"):
        frame[f"val_{term}"] = frame[term] * 1.02 + np.where(e > 20, e - 20, 0)  # held out: overfits late
    frame["selected"] = e == (kept or epochs)
    return frame


def test_training_curves_one_panel_per_objective(tmp_path):
    logs = {"iVAE": fake_log(kept=20), "VAE": fake_log(irecon=0.0, seed=1), "VAE-narrow": fake_log(irecon=0.0, seed=2)}
    titles = plot_training_curves(logs, dataset="toy", pdf=tmp_path / "t.pdf", png=tmp_path / "t.png",
                                  irecon={"iVAE": 5.0})
    assert titles == ["iVAE: its objective", "VAE: its objective", "VAE-narrow: its objective",
                      "Held-out reconstruction (all models)"]
    check_files(tmp_path / "t.pdf", tmp_path / "t.png", plotstyle.DOUBLE_COLUMN)


def test_training_epoch_ticks_are_whole_numbers():
    """An atlas trains for 2 epochs (epochs: auto): the epoch axis has no ticks at 1.25 or 1.5."""
    import matplotlib.pyplot as plt

    for epochs in (2, 3, 250):
        fig, ax = plt.subplots()
        ax.plot(np.arange(1, epochs + 1), np.linspace(1, 0, epochs))
        training_style(ax, "Loss per cell")
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (epochs, ticks)
        plt.close(fig)


# --- metrics --------------------------------------------------------------------------------


def fake_metrics(reference="labels"):
    rng = np.random.default_rng(0)
    rows = []
    for method, seeds in (("iVAE", 3), ("VAE", 3), ("VAE-narrow", 3), ("PCA", 1), ("ICA", 1), ("NMF", 1), ("FA", 1)):
        for seed in range(seeds):
            rows.append({"method": method, "seed": seed, "NMI": rng.uniform(0.5, 0.9), "ARI": rng.uniform(0.4, 0.8),
                         "ASW": rng.uniform(0.1, 0.4), "CH": rng.uniform(200, 2000), "DB": rng.uniform(0.9, 2.0),
                         "ASW_kmeans": rng.uniform(0.3, 0.6), "CH_kmeans": rng.uniform(500, 3000),
                         "DB_kmeans": rng.uniform(0.5, 1.0), "corr_score": rng.uniform(0, 3),
                         "participation_ratio": rng.uniform(1, 8),
                         "val_nll": rng.uniform(600, 700) if seeds > 1 else np.nan, "reference": reference})
    return pd.DataFrame(rows)


def test_metrics_panels(tmp_path):
    drawn = plot_metrics(fake_metrics(), dataset="toy", pdf=tmp_path / "m.pdf", png=tmp_path / "m.png")
    assert drawn == ["ARI", "NMI", "ASW", "CH", "DB", "ASW_kmeans", "CH_kmeans", "DB_kmeans", "corr_score",
                     "participation_ratio", "val_nll"]
    check_files(tmp_path / "m.pdf", tmp_path / "m.png", plotstyle.DOUBLE_COLUMN)


def test_metrics_caption_says_what_the_bars_are():
    table = fake_metrics()
    assert seeds_caption(table) == "Trained models: mean \u00b1 s.d. over 3 training seeds, dots = seeds"
    one = table[table["seed"] == 0]
    assert seeds_caption(one) == "Trained models: one training seed each (no s.d.; evaluation.seeds sets more)"
    uneven = table[(table["method"] != "VAE") | (table["seed"] == 0)]
    assert "over several training seeds" in seeds_caption(uneven)


def test_metrics_missing_column_and_nan(tmp_path):
    table = fake_metrics("clusters").drop(columns="CH")
    table.loc[2, "ASW"] = np.nan
    drawn = plot_metrics(table, dataset="toy", pdf=tmp_path / "m.pdf", png=tmp_path / "m.png")
    assert "CH" not in drawn and "ASW" in drawn


# --- component genes --------------------------------------------------------------------------


def test_expression_correlation_equals_numpy():
    import scipy.sparse as sp

    from component_genes import expression_correlation

    rng = np.random.default_rng(0)
    X = sp.random(200, 30, density=0.3, random_state=1, format="csr") * 5
    v = rng.normal(size=(200, 4))
    v[:, 1] += X[:, 3].toarray().ravel()  # one component follows gene 3
    r = expression_correlation(v, X)
    dense = X.toarray()
    expected = np.array([[np.corrcoef(v[:, k], dense[:, g])[0, 1] for g in range(30)] for k in range(4)])
    np.testing.assert_allclose(r, expected, atol=1e-10)
    assert np.argmax(np.abs(r[1])) == 3


def test_decoder_response_and_figure(tmp_path):
    """A component the decoder uses moves genes; the table ranks them; the figure draws them."""
    import torch

    from component_genes import component_table, decoder_response
    from model import IVAE
    from plot_component_genes import plot_component_genes

    torch.manual_seed(0)
    model = IVAE(40, 16, 4, 2).eval()
    with torch.no_grad():
        model.decoder.nn[0].weight[:, 1:] = 0  # only z1 reaches the genes
    rng = np.random.default_rng(0)
    latent, interp = rng.normal(size=(300, 4)), rng.normal(size=(300, 2))
    latent_fc, interp_fc = decoder_response(model, latent, interp)
    assert latent_fc.shape == (4, 40) and interp_fc.shape == (2, 40)
    assert np.abs(latent_fc[0]).max() > 0.01 and np.abs(latent_fc[1:]).max() < 1e-6
    genes = [f"g{i}" for i in range(40)]
    table = component_table(genes, {"latent": rng.normal(size=(4, 40)), "interpretative": rng.normal(size=(2, 40))},
                            {"latent": latent_fc, "interpretative": interp_fc})
    assert len(table) == 6 * 40 and table.groupby(["space", "component"])["rank_log2fc"].min().eq(1).all()
    top = table[(table["space"] == "latent") & (table["component"] == 1)].nsmallest(1, "rank_log2fc")
    assert abs(top["log2fc"].iloc[0]) == np.abs(latent_fc[0]).max()
    # a gene constant across cells has no correlation: ranked last, not an error
    correlations = rng.normal(size=(4, 40))
    correlations[:, 7] = np.nan
    ranked = component_table(genes, {"latent": correlations}, {"latent": latent_fc})
    assert (ranked.loc[ranked["gene"] == "g7", "rank_correlation"] == 40).all()
    rows = plot_component_genes(table, dataset="toy", pdf=tmp_path / "g.pdf", png=tmp_path / "g.png")
    assert rows[0][1] == "z1" and {label for _, label in rows} >= {"z1", "i1", "i2"}
    check_files(tmp_path / "g.pdf", tmp_path / "g.png", plotstyle.DOUBLE_COLUMN)
