"""Cell labels for colouring figures and as the metrics' reference.

Writes results/{dataset}/cell_labels.tsv, indexed by cell, with columns:
- ``cluster``: Leiden clusters of the log-normalised highly variable genes (seeded);
- ``label``: the dataset's ``label_key`` column when it has one; else, when marker genes
  are configured, each cluster's cell type by marker-gene scores; else the cluster;
- ``label_source``: ``labels``, ``markers`` or ``clusters``: what ``label`` is.

Marker-based annotation: for every cell type in ``annotation.markers``, scanpy's
``score_genes`` (mean log-normalised expression of the markers minus that of random
genes with similar expression) on every QC-passed gene (``.raw``), averaged per cluster.
Among the cell types whose mean score is positive, a cluster takes the one whose score
stands out most across clusters (highest z-score of the cluster means); "Unassigned"
when no score is positive.

Atlas scale: above ``evaluation.max_cells`` cells, only the rows of a uniform seeded
subsample of max_cells cells are read whole; Leiden runs on them and every other cell,
read a block of rows at a time, joins the cluster of the nearest cluster centroid in the
subsample's PCA space (``metrics.subsampled_leiden``). The table then has a fourth column,
``leiden_subsample`` (True: clustered by Leiden; False: assigned to the nearest centroid),
and the marker scores are computed on the subsample's cells (only their cluster means are
used). At or below max_cells nothing changes.
"""

import numpy as np
import pandas as pd

from cell_table import write_cell_table
from rule_io import InputError, log, setup_logging
from leiden_reference import reference_labels, subsampled_leiden
from h5ad_parts import iter_row_blocks, matrix_shape, read_obs, read_rows, read_var_names
from subsample import subsample_cells

UNASSIGNED = "Unassigned"


def annotate_clusters(expr, clusters: np.ndarray, markers: dict, *, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """Name clusters by marker-gene scores.

    ``expr``: AnnData of log-normalised expression (cells x genes; gene names as
    var_names). Returns ``(cluster -> cell type, cluster x cell type mean scores)``.
    Marker genes absent from ``expr`` are skipped; a cell type with none left is dropped.
    """
    import anndata as ad
    import scanpy as sc

    # score_genes writes only obs: give it the same matrix with an obs of its own, no copy
    expr = ad.AnnData(X=expr.X, obs=pd.DataFrame(index=expr.obs_names), var=pd.DataFrame(index=expr.var_names))
    present = {}
    for cell_type, genes in markers.items():
        found = [g for g in genes if g in expr.var_names]
        missing = sorted(set(genes) - set(found))
        if missing:
            log.warning("markers of %s not in the data: %s", cell_type, ", ".join(missing))
        if found:
            present[cell_type] = found
    if not present:
        raise InputError("none of the configured marker genes is in the data; check annotation.markers.")
    scores = pd.DataFrame(index=expr.obs_names)
    for cell_type, genes in present.items():
        sc.tl.score_genes(expr, genes, score_name="_score", random_state=seed,
                          ctrl_size=min(50, expr.n_vars - len(genes)))
        scores[cell_type] = expr.obs["_score"].to_numpy()
    means = scores.groupby(pd.Series(clusters, index=scores.index), observed=True).mean()
    # Compare cell types on one scale: each type's cluster means as z-scores across clusters
    # (otherwise a type with strongly expressed markers, e.g. NK's GNLY/NKG7, which CD8 T
    # cells also express, outscores the right one); only types scoring > 0 are candidates.
    spread = means.std(axis=0, ddof=0).replace(0, 1.0)
    z = (means - means.mean(axis=0)) / spread
    names = {c: (z.loc[c][means.loc[c] > 0].idxmax() if (means.loc[c] > 0).any() else UNASSIGNED)
             for c in means.index}
    return names, means


def cell_labels(adata, *, label_key: str | None, markers: dict | None, seed: int = 0,
                resolution: float = 1.0) -> pd.DataFrame:
    """The cell_labels table (see the module doc) for a preprocessed AnnData."""
    clusters, _ = reference_labels(adata.obs, adata.X, label_key=None, seed=seed, resolution=resolution)
    table = pd.DataFrame({"cluster": clusters}, index=pd.Index(adata.obs_names, name="cell"))
    if label_key is not None:
        if label_key not in adata.obs:
            raise InputError(f"label_key '{label_key}' is not an obs column; its columns are {list(adata.obs.columns)}.")
        table["label"] = adata.obs[label_key].astype("string").to_numpy()
        table["label_source"] = "labels"
    elif markers:
        expr = adata.raw if adata.raw is not None else adata  # every QC-passed gene when kept
        names, means = annotate_clusters(expr, clusters, markers, seed=seed)
        log.info("mean marker scores per cluster:\n%s", means.round(3).to_string())
        table["label"] = [names[c] for c in clusters]
        table["label_source"] = "markers"
    else:
        table["label"] = clusters
        table["label_source"] = "clusters"
    log.info("labels (%s): %s", table["label_source"].iloc[0],
             table["label"].value_counts(dropna=False).to_dict())
    return table


def cell_labels_from_file(path, *, label_key: str | None, markers: dict | None, max_cells: int, seed: int = 0,
                          resolution: float = 1.0) -> pd.DataFrame:
    """The cell_labels table of the preprocessed .h5ad at ``path`` without reading it whole:
    Leiden on ``subsample_cells(n, max_cells, seed=seed)`` (uniform), the other cells to the
    nearest centroid, marker scores on the subsample (from .raw's genes when stored, else
    X's); a ``leiden_subsample`` column says which cells Leiden clustered. At or below
    ``max_cells`` cells, use ``cell_labels`` (same result as this would give, without it)."""
    import anndata as ad
    import h5py

    obs = read_obs(path)
    n_cells = matrix_shape(path)[0]
    rows = subsample_cells(n_cells, max_cells, seed=seed)
    log.info("%d cells, above max_cells %d: Leiden on a uniform subsample of %d cells (seed %d), every other cell "
             "to the nearest cluster centroid in its PCA space", n_cells, max_cells, len(rows), seed)
    clusters = subsampled_leiden(read_rows(path, rows), iter_row_blocks(path), n_cells, rows, seed=seed,
                                 resolution=resolution)
    in_subsample = np.zeros(n_cells, dtype=bool)
    in_subsample[rows] = True
    table = pd.DataFrame({"cluster": clusters}, index=pd.Index(obs.index, name="cell"))
    if label_key is not None:
        if label_key not in obs:
            raise InputError(f"label_key '{label_key}' is not an obs column; its columns are {list(obs.columns)}.")
        table["label"] = obs[label_key].astype("string").to_numpy()
        table["label_source"] = "labels"
    elif markers:
        with h5py.File(path, "r") as f:
            key = "raw/X" if "raw" in f and "X" in f["raw"] else "X"
        genes = read_var_names(path, "raw/var" if key == "raw/X" else "var")
        expr = ad.AnnData(X=read_rows(path, rows, key), obs=pd.DataFrame(index=obs.index[rows].astype(str)),
                          var=pd.DataFrame(index=genes))
        log.info("marker scores on the subsample's %d cells, from %s", len(rows), key)
        names, means = annotate_clusters(expr, clusters[rows], markers, seed=seed)
        log.info("mean marker scores per cluster:\n%s", means.round(3).to_string())
        table["label"] = [names.get(c, UNASSIGNED) for c in clusters]
        table["label_source"] = "markers"
    else:
        table["label"] = clusters
        table["label_source"] = "clusters"
    table["leiden_subsample"] = in_subsample
    log.info("labels (%s): %s", table["label_source"].iloc[0],
             table["label"].value_counts(dropna=False).to_dict())
    return table


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    annotation = snakemake.params.annotation
    settings = dict(label_key=snakemake.params.label_key, markers=annotation["markers"], seed=annotation["seed"],
                    resolution=annotation["leiden_resolution"])
    max_cells = int(snakemake.params.max_cells)
    if matrix_shape(snakemake.input[0])[0] > max_cells:
        table = cell_labels_from_file(snakemake.input[0], max_cells=max_cells, **settings)
    else:
        table = cell_labels(ad.read_h5ad(snakemake.input[0]), **settings)
    write_cell_table(table, snakemake.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
