"""The input formats users bring: Matrix Market triplets as 10x and GEO write them, and loom.

Every file is written from scanpy's pbmc68k_reduced counts; what is read back must equal
the source exactly.
"""

import gzip
import logging

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.io
import scipy.sparse as sp

import readers
from readers import check_counts, read_counts
from rule_io import InputError
from conftest import write_10x_h5, write_10x_mtx, write_loom, write_mtx

#: Cell names that a reader must not parse as numbers or mangle.
ODD_NAMES = ["0001", "3348", "cell 1", "Zelle-ä"]
GEO = "GSM5555555_sample1_"


@pytest.fixture
def src(pbmc68k_counts):
    """60 cells with odd names, integer counts in X, labels and numbers in obs."""
    adata = pbmc68k_counts[:60].copy()
    adata.obs_names = ODD_NAMES + list(adata.obs_names[len(ODD_NAMES):])
    return adata


def ids(adata):
    """The gene IDs the writers give when var has none."""
    return [f"ENSG{i:011d}" for i in range(adata.n_vars)]


def assert_same(a, b, *, gene_ids: list | None):
    """Same cells, genes and gene IDs (None: no gene_ids column), and exactly the same counts, as CSR float32."""
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.var_names) == list(b.var_names)
    assert sp.isspmatrix_csr(a.X) and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
    if gene_ids is None:
        assert "gene_ids" not in a.var
    else:
        assert list(a.var["gene_ids"]) == gene_ids


def test_geo_prefixed_gz_directory_and_matrix_file(src, tmp_path):
    matrix = write_mtx(src, tmp_path / "geo", prefix=GEO)
    assert matrix.name == f"{GEO}matrix.mtx.gz" and scipy.io.mmread(matrix).dtype.kind == "i"
    assert_same(read_counts(tmp_path / "geo"), src, gene_ids=ids(src))
    assert_same(read_counts(matrix), src, gene_ids=ids(src))


def test_legacy_uncompressed_genes_tsv_with_two_columns(src, tmp_path):
    matrix = write_mtx(src, tmp_path / "v2", compress=False, genes_file="genes.tsv", gene_columns=2)
    assert matrix.name == "matrix.mtx" and (tmp_path / "v2" / "genes.tsv").exists()
    a = read_counts(tmp_path / "v2")
    assert_same(a, src, gene_ids=ids(src))
    assert "feature_types" not in a.var


def test_features_with_one_column_name_the_genes(src, tmp_path):
    assert_same(read_counts(write_mtx(src, tmp_path / "one", gene_columns=1)), src, gene_ids=None)


def test_mixed_compression_and_extra_barcode_columns(src, tmp_path):
    matrix = write_mtx(src, tmp_path / "mixed", prefix=GEO)
    barcodes = tmp_path / "mixed" / f"{GEO}barcodes.tsv.gz"
    barcodes.unlink()
    (tmp_path / "mixed" / f"{GEO}barcodes.tsv").write_text(
        "".join(f"{name}\tsample1\n" for name in src.obs_names), encoding="utf-8")
    assert_same(read_counts(matrix), src, gene_ids=ids(src))


def test_only_gene_expression_features_kept(src, tmp_path, caplog):
    antibody = sp.csr_matrix(np.arange(src.n_obs, dtype=np.float32)[:, None])
    var = pd.DataFrame({"gene_ids": [*ids(src), "CD3"],
                        "feature_types": ["Gene Expression"] * src.n_vars + ["Antibody Capture"]},
                       index=[*src.var_names, "CD3_TotalSeqB"])
    citeseq = ad.AnnData(X=sp.hstack([src.X, antibody]).tocsr(), obs=src.obs, var=var)
    caplog.set_level(logging.INFO, logger="ivae")
    assert_same(read_counts(write_mtx(citeseq, tmp_path / "citeseq")), src, gene_ids=ids(src))
    assert "dropped 1 'Antibody Capture'" in caplog.text


def test_cells_by_genes_matrix_transposed(src, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ivae")
    assert_same(read_counts(write_mtx(src, tmp_path / "t", cells_by_genes=True)), src, gene_ids=ids(src))
    assert "transposed" in caplog.text


def test_10x_directory_reads_as_scanpy_does(src, tmp_path):
    src.var_names = [src.var_names[0], *src.var_names[:-1]]  # a duplicate symbol, made unique the same way
    directory = write_10x_mtx(src, tmp_path / "mtx")
    ours = read_counts(directory)
    theirs = sc.read_10x_mtx(directory, var_names="gene_symbols", make_unique=True)
    assert_same(ours, theirs, gene_ids=list(theirs.var["gene_ids"]))
    assert list(ours.var["feature_types"]) == list(theirs.var["feature_types"])


def test_directory_with_several_matrices_is_ambiguous(src, tmp_path):
    write_mtx(src, tmp_path / "geo", prefix="GSM1_a_")
    write_mtx(src, tmp_path / "geo", prefix="GSM2_b_")
    with pytest.raises(InputError, match=r"dataset 'd' .*2 count matrices.*'GSM1_a_', 'GSM2_b_'.*"
                                         r"point path at one matrix file"):
        read_counts(tmp_path / "geo", dataset="d")
    assert_same(read_counts(tmp_path / "geo" / "GSM2_b_matrix.mtx.gz"), src, gene_ids=ids(src))


def test_missing_barcodes_file_named(src, tmp_path):
    matrix = write_mtx(src, tmp_path / "geo", prefix=GEO)
    (tmp_path / "geo" / f"{GEO}barcodes.tsv.gz").unlink()
    with pytest.raises(InputError, match=rf"dataset 'd' .*expected {GEO}barcodes.tsv\[.gz\] next to {matrix.name}"):
        read_counts(matrix, dataset="d")


def test_matrix_fitting_neither_orientation(src, tmp_path):
    matrix = write_mtx(src, tmp_path / "m")
    with gzip.open(tmp_path / "m" / "barcodes.tsv.gz", "wt") as fh:
        fh.write("\n".join(src.obs_names[:-1]) + "\n")
    with pytest.raises(InputError, match=f"{matrix.name} is {src.n_vars} x {src.n_obs}, but features.tsv.gz lists "
                                         f"{src.n_vars} features and barcodes.tsv.gz {src.n_obs - 1} barcodes"):
        read_counts(matrix, dataset="d")


def test_non_integer_mtx_rejected(src, tmp_path):
    halves = src.copy()
    halves.X = halves.X * 0.5
    matrix = write_mtx(halves, tmp_path / "lognorm")
    with gzip.open(matrix, "rt") as fh:
        assert "real" in fh.readline()
    with pytest.raises(InputError, match="dataset 'd' .*non-integer values"):
        read_counts(matrix, dataset="d")


def test_no_matrix_in_directory_and_unsupported_input_list_formats(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.csv").write_text("a,b\n")
    for path, problem in ((tmp_path / "empty", "no \\[PREFIX\\]matrix.mtx"), (tmp_path / "x.csv", "unsupported input")):
        with pytest.raises(InputError, match=problem) as error:
            read_counts(path, dataset="d")
        for fmt in (".h5ad", ".h5", ".loom", "matrix.mtx[.gz]", "features.tsv[.gz]", "genes.tsv[.gz]", "barcodes.tsv"):
            assert fmt in str(error.value)


@pytest.mark.parametrize("strings", ["fixed", "utf8"])
def test_loom_matrix_layers_and_obs(src, tmp_path, strings):
    unspliced = sp.csr_matrix(np.floor(src.X.toarray() / 2))
    path = write_loom(src, tmp_path / "v.loom", strings=strings,
                      layers={"spliced": src.X, "unspliced": unspliced, "ambiguous": unspliced})
    with h5py.File(path) as f:
        assert f["col_attrs/CellID"].dtype.kind == ("S" if strings == "fixed" else "O")
    a = read_counts(path)
    assert_same(a, src, gene_ids=ids(src))
    assert list(a.obs["bulk_labels"]) == list(src.obs["bulk_labels"])
    np.testing.assert_array_equal(a.obs["n_counts"], src.obs["n_counts"])
    layer = read_counts(path, counts_layer="unspliced")
    np.testing.assert_array_equal(layer.X.toarray(), unspliced.toarray())
    assert list(layer.obs_names) == ODD_NAMES + list(src.obs_names[4:])


def test_loom_errors_name_what_is_missing(src, tmp_path):
    path = write_loom(src, tmp_path / "v.loom", layers={"spliced": src.X})
    with pytest.raises(InputError, match=r"dataset 'd' .*v.loom.*counts_layer 'counts' is not a layer.*\['spliced'\]"):
        read_counts(path, counts_layer="counts", dataset="d")
    with h5py.File(path, "a") as f:
        del f["col_attrs/CellID"]
    with pytest.raises(InputError, match="dataset 'd' .*no cell names; looked for /col_attrs/CellID, "
                                         "/col_attrs/obs_names, /col_attrs/cell_names, /col_attrs/barcodes"):
        read_counts(path, dataset="d")
    with h5py.File(path, "a") as f:
        del f["row_attrs/Gene"]
    with pytest.raises(InputError, match="no gene names; looked for /row_attrs/Gene"):
        read_counts(path, dataset="d")


def test_loom_read_in_blocks_never_whole(src, tmp_path, monkeypatch):
    path = write_loom(src, tmp_path / "v.loom")
    monkeypatch.setattr(readers, "LOOM_BLOCK_VALUES", src.n_vars * 7)  # 7 cells a block: 60 = 8 x 7 + 4
    reads = []
    getitem = h5py.Dataset.__getitem__

    def spy(self, *args, **kwargs):
        values = getitem(self, *args, **kwargs)
        if self.name == "/matrix":
            reads.append(np.shape(values))
        return values

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    assert_same(read_counts(path), src, gene_ids=ids(src))
    assert reads == [(src.n_vars, 7)] * 8 + [(src.n_vars, 4)]


def small(pbmc68k_counts, n=60):
    return pbmc68k_counts[:n].copy()


def assert_same_counts(a, b):
    assert list(a.var_names) == list(b.var_names)
    assert list(a.obs_names) == list(b.obs_names)
    assert sp.issparse(a.X) and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())


def test_read_h5ad_counts_in_x(pbmc68k_h5ad, pbmc68k_counts):
    a = read_counts(pbmc68k_h5ad, dataset="d")
    assert_same_counts(a, pbmc68k_counts)
    assert "bulk_labels" in a.obs


def test_read_h5ad_counts_layer(pbmc68k_counts, tmp_path):
    src = small(pbmc68k_counts)
    src.layers["counts"] = src.X.copy()
    src.X = sp.csr_matrix(np.log1p(src.X.toarray()))
    src.write_h5ad(tmp_path / "x.h5ad")
    assert_same_counts(read_counts(tmp_path / "x.h5ad", counts_layer="counts"), small(pbmc68k_counts))
    with pytest.raises(InputError, match="log-normalised"):
        read_counts(tmp_path / "x.h5ad")
    with pytest.raises(InputError, match="counts_layer 'raw_counts' is not a layer.*'counts'"):
        read_counts(tmp_path / "x.h5ad", counts_layer="raw_counts")


def test_read_10x_directory_and_h5(pbmc68k_counts, tmp_path):
    src = small(pbmc68k_counts)
    assert_same_counts(read_counts(write_10x_mtx(src, tmp_path / "mtx")), src)
    assert_same_counts(read_counts(write_10x_h5(src, tmp_path / "m.h5")), src)


def test_duplicate_gene_names_made_unique(pbmc68k_counts, tmp_path):
    src = small(pbmc68k_counts)
    names = list(src.var_names)
    names[1] = names[0]
    src.var_names = names
    src.write_h5ad(tmp_path / "dup.h5ad")
    a = read_counts(tmp_path / "dup.h5ad")
    assert a.var_names.is_unique and a.n_vars == src.n_vars


@pytest.mark.parametrize("bad, message", [
    (np.array([[1.0, -1.0]]), "negative"),
    (np.array([[1.0, np.nan]]), "NaN"),
    (np.array([[1.0, np.inf]]), "NaN or infinite"),
    (np.array([[1.0, 0.5]]), "non-integer"),
])
def test_check_counts_rejects_non_counts(bad, message):
    with pytest.raises(InputError, match=message):
        check_counts(sp.csr_matrix(bad), what="dataset 'd' (f.h5ad)")
    check_counts(sp.csr_matrix(np.array([[0.0, 3.0]])), what="ok")


def test_read_errors_name_dataset_and_file(tmp_path):
    with pytest.raises(InputError, match=r"dataset 'mine' \(.*nope.h5ad\): no such file"):
        read_counts(tmp_path / "nope.h5ad", dataset="mine")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="unsupported input"):
        read_counts(tmp_path / "x.csv", dataset="mine")
    (tmp_path / "broken.h5ad").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match=r"dataset 'mine' .*broken.h5ad.*could not be read"):
        read_counts(tmp_path / "broken.h5ad", dataset="mine")


def test_counts_from_raw(pbmc68k_counts, tmp_path):
    src = small(pbmc68k_counts)
    adata = src.copy()
    adata.raw = src
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    adata = adata[:, :100].copy()  # X holds fewer genes than .raw, as after HVG selection
    adata.write_h5ad(tmp_path / "r.h5ad")
    assert_same_counts(read_counts(tmp_path / "r.h5ad", counts_layer="raw.X"), src)
    adata.raw = None
    adata.write_h5ad(tmp_path / "noraw.h5ad")
    with pytest.raises(InputError, match="has no .raw"):
        read_counts(tmp_path / "noraw.h5ad", counts_layer="raw.X")


def test_ensembl_ids_replaced_by_symbols(pbmc68k_counts, tmp_path):
    src = small(pbmc68k_counts)
    symbols = list(src.var_names)
    symbols[3] = symbols[2]  # a duplicate symbol
    src.var["gene_name"] = symbols
    src.var_names = [f"ENSG{i:011d}" for i in range(src.n_vars)]
    src.write_h5ad(tmp_path / "ens.h5ad")
    a = read_counts(tmp_path / "ens.h5ad")
    assert a.var_names[0] == symbols[0] and a.var_names.is_unique
    assert a.var["gene_ids"].iloc[0] == "ENSG00000000000"
    src.var = src.var.drop(columns="gene_name")
    src.write_h5ad(tmp_path / "ens_only.h5ad")
    assert read_counts(tmp_path / "ens_only.h5ad").var_names[0] == "ENSG00000000000"
