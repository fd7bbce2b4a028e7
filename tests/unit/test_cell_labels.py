import numpy as np
import pandas as pd
import pytest

from cell_labels import UNASSIGNED, annotate_clusters, cell_labels
from rule_io import InputError
from preprocess import preprocess

PBMC_MARKERS = {
    "B": ["MS4A1", "CD79A", "CD79B"],
    "CD14+ monocyte": ["CD14", "LYZ", "S100A8"],
    "NK": ["GNLY", "NKG7"],
    "T": ["CD3D", "CD3E", "IL7R"],
}


@pytest.fixture(scope="module")
def adata(pbmc68k_counts):
    return preprocess(pbmc68k_counts.copy(), min_genes=50, min_cells=3, max_genes=None, max_pct_mt=None,
                      mt_prefix="MT-", n_top_genes=400, target_sum=1e4)[0]


def test_labels_from_label_key(adata):
    table = cell_labels(adata, label_key="bulk_labels", markers=PBMC_MARKERS)
    assert (table["label_source"] == "labels").all()
    assert list(table.index) == list(adata.obs_names) and table.index.name == "cell"
    assert (table["label"].to_numpy() == adata.obs["bulk_labels"].astype(str).to_numpy()).all()
    assert table["cluster"].nunique() > 3


def test_marker_annotation_agrees_with_known_cell_types(adata):
    table = cell_labels(adata, label_key=None, markers=PBMC_MARKERS)
    assert (table["label_source"] == "markers").all()
    truth = adata.obs["bulk_labels"].astype(str)
    b_cells = table["label"][truth == "CD19+ B"]
    monocytes = table["label"][truth == "CD14+ Monocyte"]
    assert (b_cells == "B").mean() > 0.7
    assert (monocytes == "CD14+ monocyte").mean() > 0.7


def test_clusters_when_nothing_is_given(adata):
    table = cell_labels(adata, label_key=None, markers={})
    assert (table["label_source"] == "clusters").all() and table["label"].equals(table["cluster"])


def test_annotate_clusters_hand_made():
    import anndata as ad

    # two clusters: cells 0-1 express gene a, cells 2-3 express gene b; 60 flat genes as controls
    X = np.zeros((4, 62), np.float32)
    X[:2, 0] = 3.0
    X[2:, 1] = 3.0
    X[:, 2:] = np.tile(np.linspace(0.1, 1.0, 60), (4, 1))
    expr = ad.AnnData(X=X, var=pd.DataFrame(index=["a", "b"] + [f"g{i}" for i in range(60)]))
    names, means = annotate_clusters(expr, np.array(["0", "0", "1", "1"]), {"A": ["a"], "B": ["b", "zz"], "C": ["zz"]})
    assert names == {"0": "A", "1": "B"} and list(means.columns) == ["A", "B"]
    names, _ = annotate_clusters(expr, np.array(["0", "0", "1", "1"]), {"A": ["a"]})
    assert names["1"] == UNASSIGNED


def test_errors(adata):
    with pytest.raises(InputError, match="label_key 'celltype' is not an obs column"):
        cell_labels(adata, label_key="celltype", markers=None)
    with pytest.raises(InputError, match="none of the configured marker genes"):
        cell_labels(adata, label_key=None, markers={"X": ["NOTAGENE"]})
