"""Shared fixtures: the scripts on sys.path and small real datasets, built once."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(scope="session")
def pbmc68k_counts():
    """scanpy's pbmc68k_reduced with its exact integer counts (700 cells x 765 genes)."""
    from obtain import pbmc68k_reduced_counts

    return pbmc68k_reduced_counts()


#: Small but real settings for the integration runs on pbmc68k_reduced.
GLOBAL = {
    "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None, "n_top_genes": 500},
    "model": {"hidden_dim": 64, "latent_dim": 8},
    "train": {"epochs": 25, "batch_size": 64},
}


@pytest.fixture(scope="session")
def run(pbmc68k_counts, tmp_path_factory):
    """Two datasets in one run: an .h5ad with labels, and a 10x .h5 with overrides."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from integration_helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("wf")
    (workdir / "data").mkdir()
    pbmc68k_counts.write_h5ad(workdir / "data" / "pbmc68k.h5ad")
    write_10x_h5(pbmc68k_counts[:400], workdir / "data" / "small.h5")
    write_config(workdir, {
        "datasets": {
            "pbmc68k": {"path": "data/pbmc68k.h5ad", "label_key": "bulk_labels"},
            "small10x": {"path": "data/small.h5", "train": {"epochs": 3}, "model": {"i_dim": 3}},
        },
        **GLOBAL,
    })
    result = snakemake(workdir)
    return workdir, result


@pytest.fixture(scope="session")
def pbmc68k_h5ad(pbmc68k_counts, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pbmc68k_counts.h5ad"
    pbmc68k_counts.write_h5ad(path)
    return path


def write_10x_mtx(adata, directory: Path) -> Path:
    """Write ``adata`` (counts in X) as a 10x Cell Ranger v3 matrix directory."""
    import gzip

    import scipy.io
    import scipy.sparse as sp

    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.csr_matrix(adata.X).T.astype(np.int64))
    with gzip.open(directory / "features.tsv.gz", "wt") as fh:
        for i, gene in enumerate(adata.var_names):
            fh.write(f"ENSG{i:011d}\t{gene}\tGene Expression\n")
    with gzip.open(directory / "barcodes.tsv.gz", "wt") as fh:
        fh.write("\n".join(adata.obs_names) + "\n")
    return directory


def write_10x_h5(adata, path: Path) -> Path:
    """Write ``adata`` (counts in X) as a 10x Cell Ranger v3 .h5 file."""
    import h5py
    import scipy.sparse as sp

    X = sp.csr_matrix(adata.X)  # cells x genes CSR == genes x cells CSC, as 10x stores it
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(adata.obs_names, dtype="S")
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([adata.n_vars, adata.n_obs], dtype=np.int32)
        feats = m.create_group("features")
        feats["id"] = np.array([f"ENSG{i:011d}" for i in range(adata.n_vars)], dtype="S")
        feats["name"] = np.array(adata.var_names, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * adata.n_vars, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * adata.n_vars, dtype="S")
    return path
