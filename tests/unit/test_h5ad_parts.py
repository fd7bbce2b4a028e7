"""h5ad_parts.py: partial reads of an .h5ad (a layer, obs columns) equal anndata's full read."""

import numpy as np
import pytest
import scipy.sparse as sp

from rule_io import InputError


def test_counts_layer_read_with_one_index_type(tmp_path, pbmc68k_counts):
    """Slicing rows of a CSR whose indices and indptr differ in type copies the whole matrix
    each time (quadratic over an atlas's batches): the counts are read with one type."""
    import anndata as ad

    from h5ad_parts import read_counts_layer, same_index_dtype

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

    from h5ad_parts import read_obs_columns
    from h5ad_parts import read_obs

    adata = pbmc68k_counts[:80].copy()
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
