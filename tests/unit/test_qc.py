"""Cell QC: metrics against scanpy, MAD thresholds against the best-practices recipe, doublets."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from preprocess import preprocess
from qc import TOP_COLUMN, cell_metrics, mad_bounds, qc_bounds, qc_failures, scrublet_doublets, top_n_percent

PARAMS = dict(min_genes=50, min_cells=3, max_genes=None, max_pct_mt=None, mt_prefix="MT-",
              n_top_genes=300, target_sum=1e4)


def test_metrics_equal_scanpys(pbmc68k_counts):
    import scanpy as sc

    ref = pbmc68k_counts.copy()
    ref.var["mt"] = ref.var_names.str.startswith("MT-")
    sc.pp.calculate_qc_metrics(ref, qc_vars=["mt"], percent_top=[20], log1p=False, inplace=True)
    ours = cell_metrics(sp.csr_matrix(pbmc68k_counts.X), ref.var["mt"].to_numpy(), top_genes=True)
    for column in ("n_genes_by_counts", "total_counts", "pct_counts_mt", TOP_COLUMN):
        np.testing.assert_allclose(ours[column], ref.obs[column], rtol=1e-6, err_msg=column)


def test_top_n_percent_by_hand_across_chunks():
    X = sp.csr_matrix(np.array([[5, 1, 0, 4], [0, 0, 0, 0], [2, 2, 2, 2], [0, 9, 0, 0]], dtype=np.float32))
    expected = [100 * 9 / 10, 0.0, 100 * 4 / 8, 100.0]  # top 2 genes of each cell
    np.testing.assert_allclose(top_n_percent(X, 2, chunk=3), expected)
    np.testing.assert_allclose(top_n_percent(X, 2, chunk=1), expected)


def test_mad_bounds_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # median 3, |deviations| 2 1 0 1 97 -> MAD 1
    assert mad_bounds(values, 3) == (0.0, 6.0)
    low, high = mad_bounds(np.expm1(values), 3, log1p=True)  # the same on the log1p scale
    assert low == pytest.approx(np.expm1(0.0)) and high == pytest.approx(np.expm1(6.0))
    assert all(np.isnan(mad_bounds(np.zeros(10), 3)))  # no spread: no bound


def test_mad_qc_equals_the_best_practices_recipe(pbmc68k_counts):
    """The sc-best-practices `is_outlier` code (Heumos et al. 2023) removes the same cells."""
    import scanpy as sc
    from scipy.stats import median_abs_deviation

    ref = pbmc68k_counts.copy()
    ref.var["mt"] = ref.var_names.str.startswith("MT-")
    sc.pp.calculate_qc_metrics(ref, qc_vars=["mt"], percent_top=[20], log1p=True, inplace=True)

    def is_outlier(metric, nmads):
        m = ref.obs[metric]
        return (m < np.median(m) - nmads * median_abs_deviation(m)) | (np.median(m) + nmads * median_abs_deviation(m) < m)

    outlier = (is_outlier("log1p_total_counts", 5) | is_outlier("log1p_n_genes_by_counts", 5)
               | is_outlier("pct_counts_in_top_20_genes", 5))
    mt = ref.obs["pct_counts_mt"]
    # One MT- gene here, with no counts in 76 % of cells: the MT MAD is 0, and the recipe
    # would remove every cell with any MT count. Without spread we set no bound instead.
    assert median_abs_deviation(mt) == 0 and (mt > 0).mean() > 0.2
    mt_outlier = np.zeros(len(mt), bool)
    expected_kept = set(ref.obs_names[~(outlier | mt_outlier) & (ref.obs["n_genes_by_counts"] >= 50)])
    _, table = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "qc": "mad"})
    qc_kept = set(table.index[~table["qc_fail"].str.startswith(("low", "high"))])
    assert qc_kept == expected_kept
    assert len(expected_kept) < pbmc68k_counts.n_obs  # the recipe removes some cells here


def test_bounds_and_failures():
    metrics = pd.DataFrame({"n_genes_by_counts": [100, 300, 3000], "total_counts": [200.0, 900.0, 9000.0],
                            "pct_counts_mt": [1.0, 12.0, 2.0]}, index=["a", "b", "c"])
    bounds = qc_bounds(metrics, qc="fixed", min_genes=200, max_genes=2500, max_pct_mt=5.0)
    assert list(bounds["metric"]) == ["n_genes_by_counts", "pct_counts_mt"]
    assert list(qc_failures(metrics, bounds)) == ["low n_genes_by_counts", "high pct_counts_mt",
                                                  "high n_genes_by_counts"]
    open_ended = qc_bounds(metrics, qc="fixed", min_genes=0, max_genes=None, max_pct_mt=None)
    assert list(qc_failures(metrics, open_ended)) == ["", "", ""]
    # the figure's panel title names only the thresholds that are set
    assert list(bounds["basis"]) == ["fixed: min_genes, max_genes", "fixed: max_pct_mt"]
    assert list(open_ended["basis"]) == ["fixed: min_genes"]
    with pytest.raises(ValueError, match="qc must be"):
        qc_bounds(metrics, qc="strict", min_genes=0, max_genes=None, max_pct_mt=None)


def test_scrublet_scores_simulated_doublets_higher(pbmc68k_counts):
    """Cells made by adding two real cells' counts score higher than the real ones."""
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(pbmc68k_counts.X)
    pairs = rng.choice(X.shape[0], size=(70, 2))
    doublets = X[pairs[:, 0]] + X[pairs[:, 1]]
    scores, predicted, threshold = scrublet_doublets(sp.vstack([X, doublets]).tocsr())
    assert scores.shape == predicted.shape == (X.shape[0] + 70,) and predicted.dtype == bool
    assert scores[X.shape[0]:].mean() > 2 * scores[:X.shape[0]].mean()
    if np.isfinite(threshold):
        np.testing.assert_array_equal(predicted, scores > threshold)
    else:
        assert not predicted.any()


def test_preprocess_removes_called_doublets(pbmc68k_counts):
    out, table = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "doublets": "scrublet"})
    called = table.index[table["qc_fail"] == "doublet"]
    assert table["predicted_doublet"].astype(bool).sum() == len(called)
    assert not set(called) & set(out.obs_names)
    bounds = out.uns["qc"]["bounds"]
    assert "doublet_score" in set(bounds["metric"])
    assert table.loc[table["qc_fail"] == "", "doublet_score"].notna().all()
    assert out.uns["preprocess"]["doublets"] == "scrublet"


def test_qc_figure(pbmc68k_counts, tmp_path):
    from matplotlib.image import imread

    from plot_qc import plot_qc

    src = pbmc68k_counts.copy()
    src.var_names = ["MT-X", *src.var_names[1:]]
    out, table = preprocess(src, **{**PARAMS, "qc": "mad", "doublets": "scrublet"})
    drawn = plot_qc(table, out.uns["qc"]["bounds"], dataset="d", pdf=tmp_path / "qc.pdf", png=tmp_path / "qc.png")
    assert drawn == ["total_counts", "n_genes_by_counts", "pct_counts_mt", TOP_COLUMN, "doublet_score"]
    assert (tmp_path / "qc.pdf").read_bytes().startswith(b"%PDF")
    img = imread(tmp_path / "qc.png")
    assert img.shape[1] > 1500 and img[..., :3].std() > 0.1
    fixed, table = preprocess(pbmc68k_counts.copy(), **PARAMS)
    assert plot_qc(table, fixed.uns["qc"]["bounds"], dataset="d", pdf=tmp_path / "f.pdf",
                   png=tmp_path / "f.png") == ["total_counts", "n_genes_by_counts", "pct_counts_mt"]


def test_mad_bounds_per_metric_by_hand():
    rng = np.random.default_rng(1)
    metrics = pd.DataFrame({"n_genes_by_counts": rng.integers(300, 3000, 500),
                            "total_counts": rng.integers(1000, 20000, 500).astype(float),
                            TOP_COLUMN: rng.uniform(10, 60, 500), "pct_counts_mt": rng.uniform(0, 10, 500)})
    bounds = qc_bounds(metrics, qc="mad", min_genes=200, max_genes=2500, max_pct_mt=5.0, nmads=4, nmads_mt=2)
    by = bounds.set_index("metric")

    def mad(v):
        return np.median(np.abs(v - np.median(v)))

    log_genes = np.log1p(metrics["n_genes_by_counts"])
    assert by.loc["n_genes_by_counts", "upper"] == pytest.approx(np.expm1(np.median(log_genes) + 4 * mad(log_genes)))
    mt = metrics["pct_counts_mt"]
    assert by.loc["pct_counts_mt", "upper"] == pytest.approx(np.median(mt) + 2 * mad(mt))
    assert np.isnan(by.loc["pct_counts_mt", "lower"])
    assert by.loc["n_genes_by_counts", "upper"] != 2500  # max_genes is not used
