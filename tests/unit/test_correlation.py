"""correlation.py: correlation, dimensionality and the nulls of the latent correlation figure."""

import numpy as np
import pytest

from correlation import (correlation_matrix, covariance_spectrum, mean_abs_offdiagonal, null_summary,
                         participation_ratio, permutation_null, random_module, random_module_null, rank_k_reference,
                         torch_linear_init)


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


def test_participation_ratio_ends_and_by_hand():
    rng = np.random.default_rng(1)
    iso = rng.normal(size=(20000, 5))
    assert participation_ratio(iso) == pytest.approx(5, rel=0.02)  # variance spread evenly
    line = np.outer(rng.normal(size=500), [1.0, 2, 3])
    assert participation_ratio(line) == pytest.approx(1.0)  # all on one axis
    x = rng.normal(size=(300, 3)) * [2.0, 1.0, 0.5]
    eig = np.linalg.eigvalsh(np.cov(x.T))
    assert participation_ratio(x) == pytest.approx(eig.sum() ** 2 / (eig**2).sum())
    np.testing.assert_allclose(covariance_spectrum(x), np.sort(eig)[::-1])


def test_permutation_null_is_what_chance_gives():
    """Permuting destroys the dependence: the null's mean |r| is that of independent columns,
    about sqrt(2 / (pi n)), however correlated the input was."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(1000, 1)) @ np.ones((1, 4)) + 0.1 * rng.normal(size=(1000, 4))
    null = permutation_null(z, 50, seed=0)
    assert null.mean() == pytest.approx(np.sqrt(2 / (np.pi * 1000)), rel=0.25)
    assert mean_abs_offdiagonal(correlation_matrix(z)) > 0.9 > null.max()
    np.testing.assert_array_equal(null, permutation_null(z, 50, seed=0))


def test_random_module_null_matches_torch_initialisation():
    """The untrained module is nn.Linear's default initialisation: the same bounds, and the
    same null distribution as modules built by torch."""
    import torch

    rng = np.random.default_rng(3)
    w, b = torch_linear_init(rng, 10, 2)
    assert w.shape == (2, 10) and b.shape == (2,) and np.abs(w).max() <= 1 / np.sqrt(10)
    z = rng.normal(size=(2000, 10))
    ours = random_module_null(z, 2, 200, seed=0)
    theirs = []
    torch.manual_seed(0)
    for _ in range(200):
        enc, dec = torch.nn.Linear(10, 2), torch.nn.Linear(2, 10)
        with torch.no_grad():
            ld = dec(enc(torch.as_tensor(z, dtype=torch.float32))).numpy()
        theirs.append(mean_abs_offdiagonal(correlation_matrix(ld)))
    assert ours.mean() == pytest.approx(np.mean(theirs), abs=0.03)
    assert ours.std() == pytest.approx(np.std(theirs), abs=0.03)
    # an affine image of 2 dimensions: far more correlated than z itself, whatever training does
    assert ours.mean() > 0.4 > mean_abs_offdiagonal(correlation_matrix(z)) + 0.3
    assert random_module(z, 2, rng).shape == z.shape


def test_rank_k_reference_and_summary():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(500, 6)) * [5, 4, 1, 1, 1, 1]
    assert rank_k_reference(z, 6) == pytest.approx(mean_abs_offdiagonal(correlation_matrix(z)), abs=1e-9)
    assert rank_k_reference(z, 2) > mean_abs_offdiagonal(correlation_matrix(z))
    summary = null_summary(0.5, np.linspace(0, 1, 101))
    assert summary["percentile"] == pytest.approx(100 * 51 / 101) and summary["n_draws"] == 101
    assert summary["null_low"] == pytest.approx(0.025) and summary["null_high"] == pytest.approx(0.975)


def test_nulls_equal_the_direct_computation():
    """The fast nulls give, draw for draw, what permuting the columns (rng.permutation, one
    column after another) and passing every cell through random_module give."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(3000, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6) * 10
    z[:, 4] = 2.5  # a constant component: NaN correlations, ignored, as in correlation_matrix
    draws = np.random.default_rng(0)
    direct = [mean_abs_offdiagonal(correlation_matrix(np.column_stack([draws.permutation(c) for c in z.T])))
              for _ in range(20)]
    np.testing.assert_allclose(permutation_null(z, 20, seed=0), direct, rtol=1e-10)
    draws = np.random.default_rng(1)
    direct = [mean_abs_offdiagonal(correlation_matrix(random_module(z, 3, draws))) for _ in range(20)]
    np.testing.assert_allclose(random_module_null(z, 3, 20, seed=1), direct, rtol=1e-9)
