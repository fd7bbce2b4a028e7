import numpy as np
import pytest

from plot_latent_correlation import correlation_matrix, mean_abs_offdiagonal, plot_latent_correlation


def test_correlation_matrix_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    x[:, 1] += x[:, 0]
    np.testing.assert_allclose(correlation_matrix(x), np.corrcoef(x.T), atol=1e-12)


def test_constant_component_is_nan_not_a_warning():
    x = np.column_stack([np.arange(5.0), np.ones(5), np.arange(5.0) ** 2])
    with np.errstate(all="raise"):
        corr = correlation_matrix(x)
    assert np.isnan(corr[0, 1]) and np.isnan(corr[1, 2]) and corr[1, 1] == 1
    assert np.isfinite(corr[0, 2])


def test_mean_abs_offdiagonal_hand_computed():
    corr = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, np.nan], [0.2, np.nan, 1.0]])
    assert mean_abs_offdiagonal(corr) == pytest.approx((0.5 + 0.2 + 0.5 + 0.2) / 4)


def test_figure_files(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 10))
    after = z[:, :2] @ rng.normal(size=(2, 10))
    scores = plot_latent_correlation(z, after, dataset="toy", pdf=tmp_path / "f.pdf", png=tmp_path / "f.png")
    assert scores["after"] > scores["before"]
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf  # TrueType: editable text
    from matplotlib.image import imread

    img = imread(tmp_path / "f.png")
    assert img.shape[1] > 1500 and img.shape[0] > 600  # 300 dpi at journal width
    assert img[..., :3].std() > 0.1  # not blank
