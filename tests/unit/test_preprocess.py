import numpy as np
import pytest
import scipy.sparse as sp

from rule_io import InputError
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


def test_settings_mirror_the_schema():
    """PreprocessSettings has the schema's preprocess keys, and its defaults are the schema's."""
    from dataclasses import MISSING, fields

    from conftest import schema_defaults

    from preprocess import CellQC, PreprocessSettings

    defaults = schema_defaults("preprocess")
    assert {f.name for f in fields(PreprocessSettings)} == set(defaults)
    for f in fields(PreprocessSettings):
        assert f.default is MISSING or f.default == defaults[f.name], f.name
    assert PreprocessSettings.from_config(defaults) == PreprocessSettings(**defaults)
    assert isinstance(PreprocessSettings(**defaults), CellQC)  # qc_decision takes either
    with pytest.raises(ValueError, match=r"unknown \['n_top_gene'\], missing \['n_top_genes'\]"):
        PreprocessSettings.from_config({**{k: v for k, v in defaults.items() if k != "n_top_genes"},
                                        "n_top_gene": 10})


def test_settings_or_keywords_not_both(pbmc68k_counts):
    from preprocess import PreprocessSettings

    settings = PreprocessSettings(**PARAMS)
    with pytest.raises(TypeError, match="not both"):
        preprocess(pbmc68k_counts.copy(), settings, min_genes=10)


def test_quality_control_takes_the_cell_qc_keys(pbmc68k_counts):
    """map_genes' QC of a query: the CellQC keys of its preprocess section, the same cells as preprocess."""
    from preprocess import quality_control

    X, obs, table, _ = quality_control(sp.csr_matrix(pbmc68k_counts.X), pbmc68k_counts.obs, pbmc68k_counts.var.copy(),
                                       qc="fixed", min_genes=250, max_genes=400, max_pct_mt=None, mt_prefix="MT-",
                                       qc_nmads=5.0, qc_nmads_mt=3.0, doublets=None, dataset="query")
    _, expected = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "min_genes": 250, "max_genes": 400})
    kept = ~expected["qc_fail"].isin(["low n_genes_by_counts", "high n_genes_by_counts"])
    assert list(obs.index) == list(expected.index[kept]) and X.shape[0] == kept.sum()
    assert (table["qc_fail"] == "").sum() == kept.sum()


def test_missing_label_key_is_named(pbmc68k_counts):
    from preprocess import check_dataset_keys

    with pytest.raises(InputError, match=r"dataset 'd' \(x.h5ad\): label_key 'celltype' is not an obs column"):
        check_dataset_keys(pbmc68k_counts.obs, label_key="celltype", covariates=[], what="dataset 'd' (x.h5ad)")
    check_dataset_keys(pbmc68k_counts.obs, label_key="bulk_labels", covariates=["bulk_labels"], what="d")


def test_a_dataset_too_small_for_loess_falls_back_to_pearson_residuals(pbmc68k_counts, caplog):
    """15 cells: seurat_v3's loess has no fit; the HVGs are then scanpy's pearson_residuals
    selection on the same QC-passed raw counts, logged and recorded in uns."""
    import anndata as ad
    import scanpy as sc

    small = pbmc68k_counts[np.sort(np.random.default_rng(0).choice(700, 15, replace=False))].copy()
    small.X = sp.csr_matrix(small.X)
    out, _ = preprocess(small.copy(), **{**PARAMS, "min_cells": 1, "n_top_genes": 100})
    assert out.uns["preprocess"]["hvg_flavor"] == "pearson_residuals" and out.n_vars == 100
    assert "loess found no fit on 15 cells" in caplog.text
    genes = np.asarray((small.X > 0).sum(0)).ravel() >= 1
    expected = ad.AnnData(X=small.X[:, genes].astype(np.float32), var=small.var[genes].copy())
    sc.experimental.pp.highly_variable_genes(expected, flavor="pearson_residuals", n_top_genes=100)
    assert set(out.var_names) == set(expected.var_names[expected.var["highly_variable"]])
    assert np.array_equal(out.layers["counts"].toarray(), small[:, out.var_names].X.toarray())
    normal, _ = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "n_top_genes": 100})
    assert normal.uns["preprocess"]["hvg_flavor"] == "seurat_v3"
    every, _ = preprocess(pbmc68k_counts.copy(), **{**PARAMS, "n_top_genes": 5000})
    assert every.uns["preprocess"]["hvg_flavor"] == "all genes"


def test_labels_are_checked_after_qc(pbmc68k_counts):
    from preprocess import check_labels

    obs = pbmc68k_counts.obs
    check_labels(obs, "bulk_labels", what="d")
    check_labels(obs, None, what="d")
    one = obs.assign(x="T cell")
    with pytest.raises(InputError, match=r"dataset 'd' \(x.h5ad\): label_key 'x' has 1 group\(s\) among the 700 cells "
                                         r"left after QC \(only 'T cell'\).*leave label_key out"):
        check_labels(one, "x", what="dataset 'd' (x.h5ad)")
    with pytest.raises(InputError, match="has 0 group"):
        check_labels(obs.assign(x=np.nan), "x", what="d")
    few = obs.iloc[:3].assign(x=["a", "b", "c"])
    with pytest.raises(InputError, match="3 groups among 3 labelled cells"):
        check_labels(few, "x", what="d")
    some_missing = np.where(np.arange(700) % 7 == 0, None, np.array(["a", "b"] * 350, dtype=object))
    check_labels(obs.assign(x=some_missing), "x", what="d")  # unlabelled cells are left out of the scores


def test_covariates_must_be_categories(pbmc68k_counts):
    from preprocess import check_dataset_keys

    obs = pbmc68k_counts.obs.assign(donor=["d1", "d2"] * 350, tech=1, plate=np.arange(700) % 4 * 1.0,
                                    cont=np.linspace(0, 1, 700), cell_id=[str(i) for i in range(700)])
    check_dataset_keys(obs, label_key=None, covariates=["donor", "tech", "plate"], what="d")  # integer floats: codes
    with pytest.raises(InputError, match=r"dataset 'd': obs\['cont'\] holds non-integer numbers"):
        check_dataset_keys(obs, label_key=None, covariates=["donor", "cont"], what="dataset 'd'")
    with pytest.raises(InputError, match=r"obs\['cell_id'\] has 700 distinct values for 700 cells"):
        check_dataset_keys(obs, label_key=None, covariates=["cell_id"], what="d")
    with pytest.raises(InputError, match=r"obs\['n_counts'\] holds non-integer numbers|obs\['n_counts'\] has"):
        check_dataset_keys(obs, label_key=None, covariates=["n_counts"], what="d")


# --- pinned outputs: the exact bytes the code made when these tests were written ---
#
# Digests (sha256, 16 hex digits) of every output part, for in-memory and streamed inputs,
# fixed and MAD QC, with and without batches. They hold for this environment's library
# versions: re-record them (the tests print what they got) only with a change meant to
# alter the numbers, or a library upgrade, and say so in the commit.

def _sha(text: str | bytes) -> str:
    import hashlib

    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()[:16]


def _frame_text(df) -> str:
    """Every value exactly (floats as repr), the index, the column names, dtypes and categories."""
    import pandas as pd

    kinds = [f"{c}:{d}:{list(d.categories) if isinstance(d, pd.CategoricalDtype) else ''}"
             for c, d in df.dtypes.items()]
    return f"{df.index.name}|{df.index.dtype}|{kinds}\n{df.to_csv()}"


def _matrix_text(X) -> bytes:
    """A CSR matrix's type, shape, dtypes and stored bytes (data, indices, indptr)."""
    head = f"{type(X).__name__}{X.shape}{X.data.dtype.str}{X.indices.dtype.str}{X.indptr.dtype.str}".encode()
    return head + X.data.tobytes() + X.indices.tobytes() + X.indptr.tobytes()


def _uns_text(value) -> str:
    """uns, nested, in its own key order; the software versions by package name only (they are
    the environment's, not the code's)."""
    import pandas as pd

    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{list(v) if k == 'software' else _uns_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, pd.DataFrame):
        return _frame_text(value)
    if isinstance(value, np.ndarray):
        return f"{value.dtype.str}{value.shape}{value.tolist()!r}"
    return f"{type(value).__name__}:{value!r}"


def digest(adata) -> dict:
    """The digest of each part of a preprocessed AnnData."""
    out = {"X": _sha(_matrix_text(adata.X)), "counts": _sha(_matrix_text(adata.layers["counts"])),
           "obs": _sha(_frame_text(adata.obs)), "var": _sha(_frame_text(adata.var)), "uns": _sha(_uns_text(adata.uns))}
    if adata.raw is not None:
        out["raw.X"], out["raw.var"] = _sha(_matrix_text(adata.raw.X)), _sha(_frame_text(adata.raw.var))
    return out


@pytest.fixture(scope="module")
def batched(pbmc68k_counts):
    """pbmc68k with a two-level batch column (every third cell)."""
    out = pbmc68k_counts.copy()
    out.obs["batch"] = np.where(np.arange(out.n_obs) % 3 == 0, "b1", "b2")
    return out


#: ``preprocess`` in memory: settings beside PARAMS. Together they cover QC by fixed bounds
#: (cells removed by each), by MADs and with Scrublet, batches, chunks, cells without counts
#: in the HVGs, fewer genes than asked and keep_raw false.
PINNED_IN_MEMORY = {
    "fixed": {"min_genes": 202, "max_genes": 400, "max_pct_mt": 0.4, "n_top_genes": 40},
    "mad_batch_chunked": {"qc": "mad", "batch_key": "batch", "chunk_cells": 97},
    "all_genes_no_raw": {"n_top_genes": 5000, "keep_raw": False, "chunk_cells": 250},
    "mad_scrublet": {"qc": "mad", "doublets": "scrublet", "n_top_genes": 60},
}

#: The rule's script on files: (input, dataset entry, the preprocess section's overrides of
#: the schema's defaults). Sparse .h5ad and 10x .h5 inputs are streamed in chunks and written
#: by rows; a dense .h5ad is read whole.
PINNED_RULE = {
    "h5ad_fixed_batch": ("h5ad", {"label_key": "bulk_labels", "batch_key": "batch", "covariates": ["batch"]},
                         {"min_genes": 202, "max_genes": 400, "max_pct_mt": 0.4, "n_top_genes": 40,
                          "chunk_cells": 150}),
    "10x_mad": ("10x", {"label_key": None, "batch_key": None, "covariates": []},
                {"qc": "mad", "n_top_genes": 300, "chunk_cells": 150}),
    "dense_h5ad_mad_batch_no_raw": ("dense_h5ad", {"label_key": None, "batch_key": "batch", "covariates": []},
                                    {"qc": "mad", "n_top_genes": 300, "keep_raw": False}),
}

#: What the code made (the AnnData as returned or as read back from the file; the QC table,
#: qc.tsv and qc_bounds.tsv as written).
PINNED_DIGESTS = {
    "fixed": {
        "X": "55e09401fed2804a", "counts": "641d710146d4d573", "obs": "a9c83d8bf0998a98",
        "var": "a5771b1ac0b929eb", "uns": "de82005fe4698401", "raw.X": "3f94d04ca10cf86a",
        "raw.var": "bef1b471c106c594", "qc_table": "7d95833e9168dad7",
    },
    "mad_batch_chunked": {
        "X": "4ddea6d228f57e61", "counts": "587e625d5e9d3fc1", "obs": "042b6edfb92673bd",
        "var": "d412e8083f709a8b", "uns": "b47c423255ce6de5", "raw.X": "434e30e334beb1ec",
        "raw.var": "66ebc9dcaf5e72b1", "qc_table": "8e05960d895fb1cd",
    },
    "all_genes_no_raw": {
        "X": "47873c46fa40e194", "counts": "ec99bb2ae7463335", "obs": "163bf3e58ce2ba8e",
        "var": "9548dc1e165b5eaa", "uns": "e286ec98e73e1419", "qc_table": "4be06db9504d94b5",
    },
    "mad_scrublet": {
        "X": "987ad1e1a03880f5", "counts": "f2daa4505afd723d", "obs": "0bdaf02cddf0dced",
        "var": "0f83612e2f58850b", "uns": "2cf5dc7006498b00", "raw.X": "630237fa7b2a3933",
        "raw.var": "66ebc9dcaf5e72b1", "qc_table": "127bf51fc08c8f51",
    },
    "h5ad_fixed_batch": {
        "X": "ad6a62e2d038bf94", "counts": "85abfbe26bb4379a", "obs": "9ee0b5807d3b05c5",
        "var": "c49ea110c57443af", "uns": "e255dfbedbd28184", "raw.X": "78efed8222876247",
        "raw.var": "bef1b471c106c594", "qc.tsv": "bb446f106cb6b006", "qc_bounds.tsv": "2a728f133dcd4ea8",
    },
    "10x_mad": {
        "X": "a02e170345246b19", "counts": "4f7b8c202dcb1982", "obs": "c0090f9828f5042c",
        "var": "7eae91718a1562aa", "uns": "9e383e7f5f854005", "raw.X": "41ceb2d47849f3ed",
        "raw.var": "bf847cfe81f6507f", "qc.tsv": "540aec32c0c92bb6", "qc_bounds.tsv": "53495c93b1c05acf",
    },
    "dense_h5ad_mad_batch_no_raw": {
        "X": "340b37bdd6f57b46", "counts": "6bb50e3fe461bc46", "obs": "510f5cc9539e008a",
        "var": "81c2bf2ab2f0332e", "uns": "6ffb8e91ed7fb9ed", "qc.tsv": "502df968c68a5b8e",
        "qc_bounds.tsv": "53495c93b1c05acf",
    },
}


@pytest.mark.parametrize("case", PINNED_IN_MEMORY)
def test_in_memory_outputs_are_pinned(batched, case):
    """The preprocessed AnnData and the QC table, bit for bit as recorded."""
    out, table = preprocess(batched.copy(), **{**PARAMS, **PINNED_IN_MEMORY[case]})
    got = {**digest(out), "qc_table": _sha(_frame_text(table))}
    print(case, got)
    assert got == PINNED_DIGESTS[case]


def write_input(adata, kind: str, directory):
    """``adata``'s counts as a file of ``kind``: h5ad (sparse), dense_h5ad or 10x (.h5)."""
    from conftest import write_10x_h5

    if kind == "10x":
        return write_10x_h5(adata, directory / "filtered_feature_bc_matrix.h5")
    src = adata.copy()
    if kind == "dense_h5ad":
        src.X = src.X.toarray()
    src.write_h5ad(directory / "counts.h5ad")
    return directory / "counts.h5ad"


@pytest.fixture
def restore_logging():
    """The script's setup_logging points the ``ivae`` logger and sys.excepthook at its log: undo it."""
    import sys

    from rule_io import log

    handlers, hook = list(log.handlers), sys.excepthook
    yield
    for handler in log.handlers:
        handler.close()
    log.handlers[:], sys.excepthook = handlers, hook


@pytest.mark.parametrize("case", PINNED_RULE)
def test_rule_outputs_are_pinned(batched, tmp_path, case, restore_logging):
    """The script run as the rule runs it (a ``snakemake`` object in its globals): its three
    outputs bit for bit as recorded."""
    import runpy
    from types import SimpleNamespace

    import anndata as ad
    from conftest import SCRIPTS, schema_defaults

    kind, entry, section = PINNED_RULE[case]
    output = SimpleNamespace(h5ad=str(tmp_path / "preprocessed.h5ad"), qc=str(tmp_path / "qc.tsv"),
                             bounds=str(tmp_path / "qc_bounds.tsv"))
    params = SimpleNamespace(dataset="pbmc", counts_layer=None, **entry,
                             preprocess={**schema_defaults("preprocess"), **section})
    snakemake = SimpleNamespace(input=[str(write_input(batched, kind, tmp_path))], output=output, params=params,
                                log=[str(tmp_path / "preprocess.log")])
    runpy.run_path(str(SCRIPTS / "preprocess.py"), init_globals={"snakemake": snakemake}, run_name="preprocess_rule")
    got = {**digest(ad.read_h5ad(output.h5ad)), "qc.tsv": _sha((tmp_path / "qc.tsv").read_bytes()),
           "qc_bounds.tsv": _sha((tmp_path / "qc_bounds.tsv").read_bytes())}
    print(case, got)
    assert got == PINNED_DIGESTS[case]


def test_mouse_mitochondrial_genes_found(pbmc68k_counts):
    from preprocess import preprocess

    src = pbmc68k_counts[:200].copy()
    src.var_names = ["mt-Co1", "mt-Nd1", *src.var_names[2:]]
    mt = np.flatnonzero(src.var_names.str.upper().str.startswith("MT-"))  # mt-Co1, mt-Nd1 and MT-ND3
    assert len(mt) == 3
    expected = 100 * src.X[:, mt].sum(1).A1 / src.X.sum(1).A1  # before: preprocess consumes its input
    out, _ = preprocess(src, min_genes=1, min_cells=1, max_genes=None, max_pct_mt=None, mt_prefix="MT-",
                        n_top_genes=50, target_sum=1e4)
    np.testing.assert_allclose(out.obs["pct_counts_mt"], expected[np.isin(src.obs_names, out.obs_names)], rtol=1e-5)
    assert (out.obs["pct_counts_mt"] > 0).any()
