"""Chunked preprocessing (stream.py, preprocess.py's passes): the same result as in memory
and as scanpy, whatever the chunk size and whichever file the counts are streamed from."""

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import write_10x_h5

from readers import read_counts
from rule_io import InputError
from preprocess import preprocess, preprocess_to_file
from stream import CsrWriter, H5Counts, MemoryCounts, open_counts

PARAMS = dict(min_genes=50, min_cells=3, max_genes=None, max_pct_mt=None, mt_prefix="MT-",
              n_top_genes=300, target_sum=1e4)


@pytest.fixture(scope="module")
def counts(pbmc68k_counts):
    """pbmc68k_reduced's counts with a two-level batch column (every third cell)."""
    out = pbmc68k_counts.copy()
    out.obs["batch"] = np.where(np.arange(out.n_obs) % 3 == 0, "b1", "b2")
    return out


def assert_same_anndata(a, b):
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.var_names) == list(b.var_names)
    pd.testing.assert_frame_equal(a.obs, b.obs, check_dtype=False, check_categorical=False)
    pd.testing.assert_frame_equal(a.var, b.var, check_dtype=False)
    for x, y in ((a.X, b.X), (a.layers["counts"], b.layers["counts"])):
        assert (x != y).nnz == 0
    assert (a.raw is None) == (b.raw is None)
    if a.raw is not None:
        assert list(a.raw.var_names) == list(b.raw.var_names)
        assert (a.raw.X != b.raw.X).nnz == 0
    assert a.uns["qc"]["removed"] == b.uns["qc"]["removed"]


@pytest.mark.parametrize("batch_key", [None, "batch"])
def test_seurat_v3_is_scanpys(counts, batch_key):
    """Our two-pass seurat_v3 picks scanpy's genes with scanpy's statistics, with and without batches."""
    import scanpy as sc

    out, _ = preprocess(counts.copy(), batch_key=batch_key, **PARAMS)
    ref = counts[counts.X.getnnz(axis=1) >= 50].copy()
    sc.pp.filter_genes(ref, min_cells=3)
    hvg = sc.pp.highly_variable_genes(ref, n_top_genes=300, flavor="seurat_v3", batch_key=batch_key, inplace=False)
    hvg.index = ref.var_names
    assert set(out.var_names) == set(hvg.index[hvg["highly_variable"]])
    ours = out.var.loc[out.var_names]
    theirs = hvg.loc[out.var_names]
    for column in ("means", "variances", "variances_norm", "highly_variable_rank"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-9, err_msg=column)


@pytest.mark.parametrize("settings", [
    {},
    {"qc": "mad", "batch_key": "batch"},
    {"keep_raw": False, "n_top_genes": 5000},  # fewer genes than asked: all of them, no seurat_v3 pass
])
def test_chunk_size_does_not_change_the_result(counts, settings):
    params = {**PARAMS, **settings}
    whole, whole_table = preprocess(counts.copy(), chunk_cells=100_000, **params)
    chunked, chunked_table = preprocess(counts.copy(), chunk_cells=97, **params)
    assert_same_anndata(whole, chunked)
    pd.testing.assert_frame_equal(whole_table, chunked_table)


@pytest.mark.parametrize("where", ["X", "layer", "raw.X"])
def test_streamed_from_h5ad_to_h5ad_equals_in_memory(counts, tmp_path, where):
    """The workflow's path (an h5ad read by rows, the output written by rows) gives the
    in-memory result, with the counts in X, in a layer or in .raw."""
    src = counts.copy()
    counts_layer = None
    if where == "layer":
        src.layers["umi"], counts_layer = src.X.copy(), "umi"
        src.X = sp.csr_matrix(np.log1p(src.X.toarray()))
    elif where == "raw.X":
        src.raw, counts_layer = src.copy(), "raw.X"
        src = src[:, :100].copy()
        src.X = sp.csr_matrix(np.log1p(src.X.toarray()))
    path = tmp_path / "in.h5ad"
    src.write_h5ad(path)
    source = open_counts(path, counts_layer=counts_layer)
    assert isinstance(source, H5Counts)
    assert source.shape == counts.shape
    out_path = tmp_path / "out.h5ad"
    table, bounds = preprocess_to_file(source, out_path, chunk_cells=150, batch_key="batch", **PARAMS)
    streamed = ad.read_h5ad(out_path)
    expected, expected_table = preprocess(counts.copy(), batch_key="batch", **PARAMS)
    assert_same_anndata(streamed, expected)
    pd.testing.assert_frame_equal(table, expected_table)
    pd.testing.assert_frame_equal(bounds.astype({"lower": float, "upper": float}), expected.uns["qc"]["bounds"])
    assert streamed.uns["preprocess"]["chunk_cells"] == 150
    with h5py.File(out_path) as f:  # compressed like every other h5ad the workflow writes
        assert f["layers/counts/data"].compression == "gzip"


def test_10x_h5_streamed_as_scanpy_reads_it(pbmc68k_counts, tmp_path):
    path = write_10x_h5(pbmc68k_counts, tmp_path / "filtered_feature_bc_matrix.h5")
    source = open_counts(path)
    whole = read_counts(path)
    assert isinstance(source, H5Counts)
    pd.testing.assert_frame_equal(source.var, whole.var)
    assert list(source.obs.index) == list(whole.obs_names)
    blocks = [block for *_, block in source.chunks(123)]
    assert (sp.vstack(blocks) != whole.X).nnz == 0


def test_other_inputs_are_read_whole(pbmc68k_counts, tmp_path):
    dense = pbmc68k_counts.copy()
    dense.X = dense.X.toarray()
    dense.write_h5ad(tmp_path / "dense.h5ad")
    assert isinstance(open_counts(tmp_path / "dense.h5ad"), MemoryCounts)


def test_chunks_only_the_kept_rows(pbmc68k_counts):
    source = MemoryCounts(pbmc68k_counts.X, pbmc68k_counts.obs, pbmc68k_counts.var)
    keep = np.zeros(pbmc68k_counts.n_obs, dtype=bool)
    keep[[3, 250, 251, 699]] = True
    got = list(source.chunks(250, keep))
    assert [(lo, hi, b.shape[0]) for lo, hi, b in got] == [(0, 250, 1), (250, 500, 2), (500, 700, 1)]
    assert (sp.vstack([b for *_, b in got]) != pbmc68k_counts.X[keep]).nnz == 0


def test_bad_values_in_a_later_chunk_are_named(pbmc68k_counts, tmp_path):
    src = pbmc68k_counts.copy()
    src.X = src.X.astype(np.float32)
    src.X.data[-1] = 0.5  # in the last cell
    src.write_h5ad(tmp_path / "bad.h5ad")
    source = open_counts(tmp_path / "bad.h5ad", dataset="atlas")
    with pytest.raises(InputError, match=r"dataset 'atlas'.*non-integer"):
        preprocess_to_file(source, tmp_path / "out.h5ad", chunk_cells=100, **PARAMS)


def test_each_cell_is_checked_once(pbmc68k_counts, tmp_path, monkeypatch):
    """The first pass checks every cell's counts; the later passes read them unchecked."""
    import stream

    pbmc68k_counts.write_h5ad(tmp_path / "in.h5ad")
    checked = []
    monkeypatch.setattr(stream, "check_counts", lambda block, what: checked.append(block.shape[0]))
    source = open_counts(tmp_path / "in.h5ad")
    preprocess_to_file(source, tmp_path / "out.h5ad", chunk_cells=150, **PARAMS)
    assert sum(checked) == pbmc68k_counts.n_obs and len(checked) == 5


def test_missing_counts_layer_named(pbmc68k_h5ad):
    with pytest.raises(InputError, match="counts_layer 'umi' is not a layer"):
        open_counts(pbmc68k_h5ad, counts_layer="umi", dataset="d")


def test_csr_writer_appends_rows(tmp_path):
    from anndata.io import read_elem

    rng = np.random.default_rng(0)
    blocks = [sp.random(n, 7, density=0.3, format="csr", random_state=rng, dtype=np.float32) for n in (5, 0, 3)]
    with h5py.File(tmp_path / "m.h5", "w") as f:
        writer = CsrWriter(f, "M", 7)
        for block in blocks:
            writer.append(block)
        with pytest.raises(ValueError, match="columns"):
            writer.append(sp.csr_matrix((1, 6), dtype=np.float32))
    with h5py.File(tmp_path / "m.h5") as f:
        back = read_elem(f["M"])
    np.testing.assert_array_equal(back.toarray(), sp.vstack(blocks).toarray())


def test_chunk_sums_are_bincounts_bitwise():
    """The compiled sums equal np.bincount over the stored entries bitwise: the same values
    in the same order (the clipped sums are not integers, so order matters)."""
    from stream import clipped_sums, gene_sums, row_sums

    rng = np.random.default_rng(0)
    block = sp.random(300, 40, density=0.3, format="csr", random_state=1, dtype=np.float32)
    block.data = rng.poisson(30, block.nnz).astype(np.float32) + 1
    codes = rng.integers(0, 3, 300)
    rows = np.repeat(codes, np.diff(block.indptr))
    key = rows * 40 + block.indices
    sums, sumsq, n = np.zeros((3, 40)), np.zeros((3, 40)), np.zeros(40, dtype=np.int64)
    gene_sums(block.indptr, block.indices, block.data, codes, sums, sumsq, n)
    np.testing.assert_array_equal(sums.ravel(), np.bincount(key, weights=block.data.astype(np.float64), minlength=120))
    np.testing.assert_array_equal(sumsq.ravel(), np.bincount(key, weights=(block.data * block.data).astype(np.float64),
                                                             minlength=120))
    np.testing.assert_array_equal(n, np.bincount(block.indices, minlength=40))

    kept = np.ones(40, dtype=bool)
    kept[[3, 17]] = False  # genes dropped by QC
    gene_pos = np.where(kept, np.cumsum(kept) - 1, -1)
    clip = rng.uniform(20, 40, (3, 38))
    csum, csumsq = np.full((3, 38), 0.1), np.full((3, 38), 0.2)  # added to what is there
    clipped_sums(block.indptr, block.indices, block.data, codes, gene_pos, clip, csum, csumsq)
    mask = gene_pos[block.indices] >= 0
    k = (rows * 38 + gene_pos[block.indices])[mask]
    v = np.minimum(block.data[mask].astype(np.float64), clip.ravel()[k])
    np.testing.assert_array_equal(csum.ravel(), 0.1 + np.bincount(k, weights=v, minlength=114))
    np.testing.assert_array_equal(csumsq.ravel(), 0.2 + np.bincount(k, weights=v * v, minlength=114))
    assert (v < block.data[mask]).any()  # some counts were clipped

    np.testing.assert_array_equal(row_sums(block.indptr, block.indices, block.data, kept),
                                  np.asarray(block[:, kept].sum(axis=1)).ravel())
