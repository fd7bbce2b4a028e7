"""component_genes.py and plot_component_genes.py: each component's genes and their figure. Small synthetic inputs: files, resolution, content."""

import numpy as np

import plotstyle
from conftest import check_figure_files as check_files


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
