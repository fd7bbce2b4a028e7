import numpy as np
import pytest
import scipy.sparse as sp

from common_io import InputError, atomic_path, check_counts, read_counts
from conftest import write_10x_h5, write_10x_mtx


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


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".tsv"
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]


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


def test_mouse_mitochondrial_genes_found(pbmc68k_counts):
    from preprocess import preprocess

    src = small(pbmc68k_counts, 200)
    src.var_names = ["mt-Co1", "mt-Nd1", *src.var_names[2:]]
    mt = np.flatnonzero(src.var_names.str.upper().str.startswith("MT-"))  # mt-Co1, mt-Nd1 and MT-ND3
    assert len(mt) == 3
    expected = 100 * src.X[:, mt].sum(1).A1 / src.X.sum(1).A1  # before: preprocess consumes its input
    out, _ = preprocess(src, min_genes=1, min_cells=1, max_genes=None, max_pct_mt=None, mt_prefix="MT-",
                        n_top_genes=50, target_sum=1e4)
    np.testing.assert_allclose(out.obs["pct_counts_mt"], expected[np.isin(src.obs_names, out.obs_names)], rtol=1e-5)
    assert (out.obs["pct_counts_mt"] > 0).any()


def test_cell_table_keeps_every_name_exactly(tmp_path):
    """Names that look like numbers or missing values, spaces, quotes, tabs, non-ASCII."""
    import pandas as pd

    from common_io import read_cell_table, write_cell_table

    names = ["0001", "3348", "12", "NA", "nan", " spaced cell ", "Zelle-ä", 'a "quoted", name', "tab\there", "1e5"]
    table = pd.DataFrame({"cluster": ["01", "2", "2", "3", "3", "1", "1", "0", "0", "10"],
                          "label": ["T", "NA", None, "B", "B", "T", "NK", "NK", "T", "B"],
                          "score": np.arange(10) / 4},
                         index=pd.Index(names, name="cell"))
    write_cell_table(table, tmp_path / "t.tsv")
    back = read_cell_table(tmp_path / "t.tsv", numeric=("score",))
    assert list(back.index) == names and back.index.name == "cell"
    assert list(back["cluster"]) == list(table["cluster"])
    assert back["label"].tolist()[:2] == ["T", "NA"] and pd.isna(back["label"].iloc[2])
    np.testing.assert_array_equal(back["score"].to_numpy(), table["score"].to_numpy())


UMAP_SCRIPT = """
import sys, time
import numpy as np
sys.path.insert(0, {scripts!r})
import plot_embeddings
if sys.argv[1] == "uncached":
    plot_embeddings.cache_umap_compilation = lambda: 0
x = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
x[:150] += 4
np.save(sys.argv[2], plot_embeddings.umap_coordinates(x, seed=0))
"""


def test_umap_compilation_cached_across_processes_with_the_same_result(tmp_path):
    """The second process reuses the first one's compiled umap code from numba's cache, and
    all give the coordinates of a run without the cache."""
    import os
    import subprocess
    import sys

    from conftest import SCRIPTS

    script = tmp_path / "umap_run.py"
    script.write_text(UMAP_SCRIPT.format(scripts=str(SCRIPTS)))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    runs = {}
    for name in ("uncached", "first", "second"):
        subprocess.run([sys.executable, str(script), name, str(tmp_path / f"{name}.npy")], env=env, check=True)
        runs[name] = np.load(tmp_path / f"{name}.npy")
        cached = [p.name for p in (tmp_path / "numba").rglob("umap_*.smooth_knn_dist*.nbi")]
        assert bool(cached) == (name != "uncached"), (name, cached)  # umap itself does not cache it
    np.testing.assert_array_equal(runs["first"], runs["uncached"])
    np.testing.assert_array_equal(runs["second"], runs["uncached"])


def test_counts_layer_read_with_one_index_type(tmp_path, pbmc68k_counts):
    """Slicing rows of a CSR whose indices and indptr differ in type copies the whole matrix
    each time (quadratic over an atlas's batches): the counts are read with one type."""
    import anndata as ad

    from common_io import read_counts_layer, same_index_dtype

    adata = ad.AnnData(X=pbmc68k_counts.X.copy(), var=pbmc68k_counts.var)
    adata.layers["counts"] = pbmc68k_counts.X.copy()
    adata.write_h5ad(tmp_path / "pre.h5ad")
    counts, genes = read_counts_layer(tmp_path / "pre.h5ad")
    assert counts.indices.dtype == counts.indptr.dtype == np.int32
    assert (counts != pbmc68k_counts.X).nnz == 0 and list(genes) == list(pbmc68k_counts.var_names)
    mixed = sp.csr_matrix(pbmc68k_counts.X)
    mixed.indptr = mixed.indptr.astype(np.int64)
    fixed = same_index_dtype(mixed.copy())
    assert fixed.indices.dtype == fixed.indptr.dtype == np.int32
    assert (fixed[10:20] != pbmc68k_counts.X[10:20]).nnz == 0


def test_obs_columns_read_alone(tmp_path, pbmc68k_counts):
    """Training and embedding read the covariate columns they need, not the whole obs (an
    atlas's per-cell strings); values and categories equal anndata's full read."""
    import anndata as ad
    import pandas as pd

    from common_io import read_obs_columns
    from subsample import read_obs

    adata = small(pbmc68k_counts, 80)
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(80) % 3 == 0, "b", "a"))
    adata.obs["note"] = [f"cell {i}" for i in range(80)]
    adata.obs["depth"] = np.arange(80, dtype=np.float64)
    adata.write_h5ad(tmp_path / "pre.h5ad")
    full = ad.read_h5ad(tmp_path / "pre.h5ad").obs
    assert read_obs(tmp_path / "pre.h5ad").equals(full)
    some = read_obs_columns(tmp_path / "pre.h5ad", ["depth", "batch"])
    assert list(some.columns) == ["depth", "batch"] and len(some) == 80
    assert list(some["batch"].cat.categories) == ["a", "b"]
    for key in ("depth", "batch"):
        np.testing.assert_array_equal(np.asarray(some[key]), np.asarray(full[key]))
    assert read_obs_columns(tmp_path / "pre.h5ad", []).shape[1] == 0
    with pytest.raises(InputError, match=r"data\.h5ad: covariate column\(s\) \['donor'\] not in obs; its columns are "
                                         r"\[.*'batch', 'note', 'depth'\]"):
        read_obs_columns(tmp_path / "pre.h5ad", ["batch", "donor"], what="data.h5ad")
