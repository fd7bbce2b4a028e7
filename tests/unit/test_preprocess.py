import numpy as np
import pytest
import scipy.sparse as sp

from common_io import InputError
from preprocess import preprocess

PARAMS = dict(min_genes=50, min_cells=3, max_genes=None, max_pct_mt=None, mt_prefix="MT-",
              n_top_genes=300, target_sum=1e4)


@pytest.fixture(scope="module")
def result(pbmc68k_counts):
    return preprocess(pbmc68k_counts.copy(), **PARAMS)[0]


def scanpy_reference(counts, *, min_genes=50, min_cells=3, n_top_genes=300):
    """scanpy's QC metrics, filters, seurat_v3 HVGs and log-normalisation of ``counts``: the
    cells x HVGs AnnData, and every QC-passed gene log-normalised (what .raw holds)."""
    import scanpy as sc

    ref = counts.copy()
    ref.var["mt"] = ref.var_names.str.startswith("MT-")
    sc.pp.calculate_qc_metrics(ref, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    ref = ref[ref.obs["n_genes_by_counts"] >= min_genes].copy()
    sc.pp.filter_genes(ref, min_cells=min_cells)
    ref.layers["counts"] = ref.X.copy()
    sc.pp.highly_variable_genes(ref, n_top_genes=n_top_genes, flavor="seurat_v3", layer="counts")
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    return ref[:, ref.var["highly_variable"]], ref


def assert_matches(result, ref, full=None):
    assert list(result.var_names) == list(ref.var_names)
    assert list(result.obs_names) == list(ref.obs_names)
    for column in ("n_genes_by_counts", "total_counts", "pct_counts_mt"):
        np.testing.assert_allclose(result.obs[column], ref.obs[column], rtol=1e-6)
    np.testing.assert_allclose(result.var["variances_norm"], ref.var["variances_norm"], rtol=1e-6)
    np.testing.assert_allclose(result.X.toarray(), ref.X.toarray(), rtol=1e-5, atol=1e-6)
    assert (result.layers["counts"] != ref.layers["counts"]).nnz == 0
    if full is not None:
        assert list(result.raw.var_names) == list(full.var_names)
        np.testing.assert_allclose(result.raw.X.toarray(), full.X.toarray(), rtol=1e-5, atol=1e-6)


def test_matches_scanpy(pbmc68k_counts, result):
    """The memory-lean steps give scanpy's QC metrics, HVGs and normalisation."""
    assert_matches(result, *scanpy_reference(pbmc68k_counts))


@pytest.mark.parametrize("keep_raw", [True, False])
def test_genes_dropped_by_qc_leave_the_cell_totals(pbmc68k_counts, keep_raw):
    """Genes in fewer than min_cells cells are dropped before normalising, as scanpy does:
    the cell totals (of X and of .raw) count the QC-passed genes only. Two rare genes with
    many counts in a few cells would change those cells' values if they were counted."""
    import anndata as ad

    rare = np.zeros((pbmc68k_counts.n_obs, 2), dtype=np.float32)
    rare[[0, 5], 0], rare[[5, 9], 1] = 400, 250
    counts = ad.concat([pbmc68k_counts, ad.AnnData(sp.csr_matrix(rare), obs=pbmc68k_counts.obs[[]],
                                                   var=pbmc68k_counts.var.iloc[:0].reindex(["RARE1", "RARE2"]))],
                       axis=1, merge="first")
    counts.X = sp.csr_matrix(counts.X)
    out, _ = preprocess(counts.copy(), **{**PARAMS, "keep_raw": keep_raw})
    ref, full = scanpy_reference(counts)
    assert "RARE1" not in full.var_names and "RARE2" not in full.var_names
    assert_matches(out, ref, full if keep_raw else None)
    assert (out.raw is None) != keep_raw


def test_contract(result, pbmc68k_counts):
    assert result.n_vars == 300
    assert 0 < result.n_obs <= pbmc68k_counts.n_obs
    counts = result.layers["counts"]
    assert sp.issparse(counts)
    # the counts layer is the input's counts for the kept cells and genes
    src = pbmc68k_counts[result.obs_names, result.var_names].X.toarray()
    np.testing.assert_array_equal(counts.toarray(), src)
    # X is log1p(counts / library size over all QC genes * target_sum)
    lib = pbmc68k_counts[result.obs_names].X.sum(1).A1
    expected = np.log1p(src / lib[:, None] * 1e4)
    np.testing.assert_allclose(result.X.toarray(), expected, rtol=1e-5, atol=1e-6)
    assert result.raw is not None and result.raw.n_vars >= result.n_vars
    assert {"n_genes_by_counts", "total_counts", "pct_counts_mt", "bulk_labels"} <= set(result.obs)
    assert result.uns["preprocess"]["n_top_genes"] == 300
    assert (counts.sum(1).A1 > 0).all()


def test_hvgs_are_the_most_variable(result, pbmc68k_counts):
    """seurat_v3 ranks genes by normalised variance of counts; a flat gene is never chosen."""
    assert result.var["highly_variable"].all()
    assert result.var["variances_norm"].min() >= 0.5


def test_fewer_genes_than_requested_keeps_all(pbmc68k_counts):
    out, _ = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "n_top_genes": 5000})
    assert out.n_vars == (np.asarray((pbmc68k_counts.X > 0).sum(0)).ravel() >= 3).sum()


def test_qc_thresholds_filter(pbmc68k_counts):
    strict, table = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "min_genes": 250, "max_genes": 400})
    n_genes = strict.obs["n_genes_by_counts"]
    assert (n_genes >= 250).all() and (n_genes <= 400).all()
    # the QC table covers every input cell and says why each removed one failed
    assert list(table.index) == list(pbmc68k_counts.obs_names)
    expected = np.where(table["n_genes_by_counts"] < 250, "low n_genes_by_counts",
                        np.where(table["n_genes_by_counts"] > 400, "high n_genes_by_counts", ""))
    failed = table["qc_fail"].to_numpy()
    hvg_empty = failed == "no counts in the highly variable genes"
    assert (failed[~hvg_empty] == expected[~hvg_empty]).all()
    assert set(strict.obs_names) == set(table.index[failed == ""])
    assert strict.uns["qc"]["removed"]["low n_genes_by_counts"] == (expected == "low n_genes_by_counts").sum()


def test_no_cells_left_is_a_clear_error(pbmc68k_counts):
    with pytest.raises(InputError, match="dataset 'tiny': no cells left after QC"):
        preprocess(pbmc68k_counts.copy(), dataset="tiny", **{**PARAMS, "min_genes": 100000})


def test_keep_raw_false_drops_raw(pbmc68k_counts):
    out, _ = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "keep_raw": False})
    assert out.raw is None and "counts" in out.layers


def test_no_genes_left_is_a_clear_error(pbmc68k_counts):
    with pytest.raises(InputError, match="no genes left after QC"):
        preprocess(pbmc68k_counts.copy(), dataset="tiny", **{**PARAMS, "min_cells": 100000})
