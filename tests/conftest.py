"""Shared fixtures: the scripts on sys.path and small real datasets, built once."""

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))


#: The extended tier: the conda envs built and the whole workflow run in them, the whole
#: workflow on 14,000 cells with a covariate, UMAP's compilation cached across three
#: processes, and the scIB metrics (JAX compiles for minutes). CI runs them after the
#: default run.
EXTENDED = {"test_conda_envs.py", "test_large_dataset.py", "test_numba_cache.py", "test_scib.py",
            "test_scib_workflow.py"}


def pytest_collection_modifyitems(config, items):
    """Every integration test (a `snakemake` run in a subprocess) is slow; the SLURM tests
    are also `slurm`, the EXTENDED files `extended`. Unit tests that train or cluster for
    long carry `slow` themselves."""
    for item in items:
        path = Path(str(item.fspath))
        if "integration" in path.parts:
            item.add_marker(pytest.mark.slow)
        if path.name == "test_slurm.py":
            item.add_marker(pytest.mark.slurm)
        if path.name in EXTENDED:
            item.add_marker(pytest.mark.extended)


def schema_defaults(section: str) -> dict:
    """The config schema's default of every key of ``section`` (model, train, ...): the one
    place where defaults are written."""
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return {key: spec["default"] for key, spec in schema["$defs"][section]["properties"].items()}


def train_settings(**overrides):
    """TrainSettings with the schema's defaults, except ``overrides``."""
    from train import TrainSettings

    return TrainSettings.from_config({**schema_defaults("train"), **overrides})


def model_settings(n_genes: int, **overrides):
    """ModelSettings for ``n_genes`` genes with the schema's defaults, except ``overrides``."""
    from model import ModelSettings

    return ModelSettings(n_genes=n_genes, **{**schema_defaults("model"), **overrides})


@pytest.fixture(scope="session")
def pbmc68k_counts():
    """scanpy's pbmc68k_reduced with its exact integer counts (700 cells x 765 genes)."""
    from obtain import pbmc68k_reduced_counts

    return pbmc68k_reduced_counts()


@pytest.fixture(scope="module")
def one_thread():
    """BLAS/OpenMP on one thread: KMeans and the decompositions spin-wait for minutes when other
    work shares the cores, and these matrices are far too small to gain from threads."""
    import sklearn.cluster  # noqa: F401 - load the OpenMP runtime first, or the limit misses it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def lognorm(pbmc68k_counts):
    """pbmc68k log-normalised (CSR, 700 cells x 765 genes, float32) and its obs."""
    import scipy.sparse as sp

    X = sp.csr_matrix(pbmc68k_counts.X, dtype=np.float32)
    X = sp.diags(1e4 / np.asarray(X.sum(1)).ravel()) @ X
    X.data = np.log1p(X.data)
    return sp.csr_matrix(X, dtype=np.float32), pbmc68k_counts.obs.copy()


#: Small but real settings for the integration runs on pbmc68k_reduced.
GLOBAL = {
    "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None, "n_top_genes": 500},
    "model": {"hidden_dim": 64, "latent_dim": 8},
    "train": {"epochs": 25, "batch_size": 64},
    "evaluation": {"seeds": [0, 1], "null_draws": 30},
}


#: Cell names users' data have; the first cells of the integration run's labelled dataset get them.
ODD_CELL_NAMES = ["0001", "3348", "3348", " spaced cell ", "Zelle-ä", "NA", "1e5", "12"]
#: Gene names likewise, given to the most widely expressed genes (so they pass QC).
ODD_GENE_NAMES = ["0002", "1", "Gén-ä", "Gén-ä"]


def with_odd_names(adata):
    """A copy whose cells are named by zero-padded numbers (plus ODD_CELL_NAMES: numbers,
    duplicates, spaces, non-ASCII, "NA") and some of whose genes by ODD_GENE_NAMES."""
    adata = adata.copy()
    cells = [f"{i:04d}" for i in range(adata.n_obs)]
    cells[:len(ODD_CELL_NAMES)] = ODD_CELL_NAMES
    adata.obs_names = cells
    genes = list(adata.var_names)
    widest = np.argsort(-np.asarray((adata.X > 0).sum(0)).ravel())[:len(ODD_GENE_NAMES)]
    for i, name in zip(widest, ODD_GENE_NAMES):
        genes[i] = name
    adata.var_names = genes
    return adata


@pytest.fixture(scope="session")
def run(pbmc68k_counts, tmp_path_factory):
    """Two datasets in one run: an .h5ad with labels and cell and gene names of every form,
    and a 10x .h5 with overrides."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from integration_helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("wf")
    (workdir / "data").mkdir()
    with_odd_names(pbmc68k_counts).write_h5ad(workdir / "data" / "pbmc68k.h5ad")
    write_10x_h5(pbmc68k_counts[:400], workdir / "data" / "small.h5")
    write_config(workdir, {
        "datasets": {
            "pbmc68k": {"path": "data/pbmc68k.h5ad", "label_key": "bulk_labels"},
            "small10x": {"path": "data/small.h5", "train": {"epochs": 3}, "model": {"i_dim": 3},
                         "evaluation": {"seeds": [0]}},
        },
        "mappings": {"small10x": "pbmc68k"},  # `snakemake map`: the 10x cells onto the labelled model
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


def write_mtx(adata, directory: Path, *, prefix: str = "", compress: bool = True, genes_file: str = "features.tsv",
              gene_columns: int = 3, cells_by_genes: bool = False) -> Path:
    """Write ``adata`` (counts in X) as Matrix Market files as GEO deposits them; return the matrix file.

    Files are ``{prefix}matrix.mtx``, ``{prefix}{genes_file}`` and ``{prefix}barcodes.tsv``
    (``.gz`` when ``compress``). The features file has ``gene_columns`` columns (name;
    id, name; id, name, type) with IDs from ``var["gene_ids"]`` (else ``ENSG<i>``) and
    types from ``var["feature_types"]`` (else "Gene Expression"). The matrix is genes x
    cells, or cells x genes with ``cells_by_genes``.
    """
    import gzip

    import scipy.io
    import scipy.sparse as sp

    directory.mkdir(parents=True, exist_ok=True)
    gz = ".gz" if compress else ""
    open_ = gzip.open if compress else open
    X = sp.csr_matrix(adata.X)
    X = X if cells_by_genes else X.T
    matrix = directory / f"{prefix}matrix.mtx{gz}"
    with open_(matrix, "wb") as fh:
        scipy.io.mmwrite(fh, X.astype(np.int64) if np.array_equal(X.data, np.rint(X.data)) else X)
    ids = adata.var["gene_ids"] if "gene_ids" in adata.var else [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    types = adata.var["feature_types"] if "feature_types" in adata.var else ["Gene Expression"] * adata.n_vars
    with open_(directory / f"{prefix}{genes_file}{gz}", "wt", encoding="utf-8") as fh:
        for gene_id, name, kind in zip(ids, adata.var_names, types):
            row = [gene_id, name, kind][:gene_columns] if gene_columns > 1 else [name]
            fh.write("\t".join(row) + "\n")
    with open_(directory / f"{prefix}barcodes.tsv{gz}", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(adata.obs_names) + "\n")
    return matrix


def write_loom(adata, path: Path, *, strings: str = "fixed", layers: dict | None = None) -> Path:
    """Write ``adata`` (counts in X) as a loom file laid out per the loom spec, as loompy and velocyto do.

    /matrix is X as dense genes x cells, chunked and compressed; ``layers`` (name -> cells
    x genes counts) go to /layers as uint16, as velocyto writes them; genes to
    /row_attrs/Gene and /row_attrs/Accession (``ENSG<i>``), cells to /col_attrs/CellID and
    every obs column to /col_attrs. Strings are ``"fixed"``: null-padded ASCII with XML
    entities for other characters (loom < 3), or ``"utf8"``: variable-length UTF-8 (loom 3).
    """
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    def text(values):
        values = [str(v) for v in values]
        if strings == "fixed":
            return np.array([v.encode("ascii", "xmlcharrefreplace") for v in values])
        return np.array(values, dtype=h5py.string_dtype("utf-8"))

    def dense(X):
        return np.asarray(sp.csr_matrix(X).T.todense())

    with h5py.File(path, "w") as f:
        f.attrs["LOOM_SPEC_VERSION"] = "3.0.0"
        f.create_dataset("matrix", data=dense(adata.X), chunks=(64, 16), compression="gzip")
        for name, X in (layers or {}).items():
            f.create_dataset(f"layers/{name}", data=dense(X).astype(np.uint16), chunks=(64, 16), compression="gzip")
        f["row_attrs/Gene"] = text(adata.var_names)
        f["row_attrs/Accession"] = text(f"ENSG{i:011d}" for i in range(adata.n_vars))
        f["col_attrs/CellID"] = text(adata.obs_names)
        for column, values in adata.obs.items():
            numeric = pd.api.types.is_numeric_dtype(values)
            f[f"col_attrs/{column}"] = values.to_numpy() if numeric else text(values)
        f.create_group("col_graphs")
        f.create_group("row_graphs")
    return path


def check_figure_files(pdf, png, width_in):
    """PDF with editable TrueType text; PNG at >= 300 dpi for the intended width, not blank."""
    from matplotlib.image import imread

    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"/FontFile2" in data  # TrueType embedded: text stays editable
    img = imread(png)
    assert img.shape[1] >= width_in * 300 * 0.9, img.shape
    assert img[..., :3].std() > 0.05  # not blank


@pytest.fixture(scope="session")
def clusters_20000():
    """20,000 cells in 8 Gaussian clusters in 10 dimensions, and their cluster ids: above every
    size switch (scanpy's neighbours use pynndescent above 8,192 cells, UMAP runs 200 epochs
    above 10,000, the silhouette is subsampled above 10,000)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8.0, size=(8, 10))
    labels = rng.integers(0, 8, 20_000)
    return (centres[labels] + rng.normal(size=(20_000, 10))).astype(np.float32), labels
