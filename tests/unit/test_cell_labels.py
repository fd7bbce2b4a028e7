import numpy as np
import pandas as pd
import pytest

from cell_labels import UNASSIGNED, annotate_clusters, cell_labels, check_reference, usable_markers
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
    names, means = annotate_clusters(expr, np.array(["0", "0", "1", "1"]), {"A": ["a"], "B": ["b"]})
    assert names == {"0": "A", "1": "B"} and list(means.columns) == ["A", "B"]
    names, _ = annotate_clusters(expr, np.array(["0", "0", "1", "1"]), {"A": ["a"]})
    assert names["1"] == UNASSIGNED
    with pytest.raises(ValueError, match="not in the data"):  # usable_markers first
        annotate_clusters(expr, np.array(["0", "0", "1", "1"]), {"B": ["b", "zz"]})


def test_usable_markers_coverage_rule():
    genes = ["a", "b", "c"]
    markers = {"A": ["a", "b"], "B": ["b", "zz"], "C": ["zz", "yy", "c"], "D": ["zz"]}
    assert usable_markers(markers, genes, 0.5) == {"A": ["a", "b"], "B": ["b"]}  # C: 1 of 3 < 0.5
    assert usable_markers(markers, genes, 0.3) == {"A": ["a", "b"], "B": ["b"], "C": ["c"]}
    assert usable_markers(markers, genes, 1.0) == {"A": ["a", "b"]}


def test_markers_that_do_not_fit_give_clusters(adata, caplog):
    """Lung markers on blood cells: fewer than two cell types have their markers, so no
    names at all (not "Unassigned" for most cells and a lung name for a few)."""
    lung = {"AT1": ["AGER", "RTKN2"], "AT2": ["SFTPC", "SFTPB", "NAPSA"], "Ciliated": ["FOXJ1", "CAPS"],
            "T": ["CD3D", "CD3E"]}
    table = cell_labels(adata, label_key=None, markers=lung)
    assert (table["label_source"] == "clusters").all() and table["label"].equals(table["cluster"])
    assert "do not fit this dataset" in caplog.text
    table = cell_labels(adata, label_key=None, markers={"X": ["NOTAGENE"], **PBMC_MARKERS})
    assert (table["label_source"] == "markers").all() and "X" not in set(table["label"])


def test_errors(adata):
    with pytest.raises(InputError, match="label_key 'celltype' is not an obs column"):
        cell_labels(adata, label_key="celltype", markers=None)


def test_one_leiden_cluster_is_refused():
    one = pd.DataFrame({"cluster": ["0"] * 5, "label": ["0"] * 5, "label_source": "clusters"})
    with pytest.raises(InputError, match=r"dataset 'd' \(x\): Leiden found 1 cluster\(s\) at "
                                         r"annotation.leiden_resolution 0.5.*Raise the resolution"):
        check_reference(one, what="dataset 'd' (x)", resolution=0.5)
    check_reference(one.assign(label=["0", "0", "1", "1", "1"]), what="d", resolution=1.0)
