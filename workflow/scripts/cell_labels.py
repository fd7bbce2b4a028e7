"""Cell labels for colouring figures and as the metrics' reference.

Writes results/{dataset}/cell_labels.tsv, indexed by cell, with columns:
- ``cluster``: Leiden clusters of the log-normalised highly variable genes (seeded);
- ``label``: the dataset's ``label_key`` column when it has one; else, when marker genes
  are configured, each cluster's cell type by marker-gene scores; else the cluster;
- ``label_source``: ``labels``, ``markers`` or ``clusters``: what ``label`` is.

Marker-based annotation, only for a dataset that gives ``annotation.markers`` and only
with the cell types whose markers the data hold (at least ``annotation.min_marker_coverage``
of them; ``usable_markers``): with fewer than two such types the markers do not fit the
data, and the reference stays the clusters (``label_source`` ``clusters``, logged as a
warning). For each usable cell type, scanpy's
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


#: A marker set names clusters only when at least this many of its cell types are usable.
MIN_MARKER_TYPES = 2


def usable_markers(markers: dict, genes, min_coverage: float) -> dict:
    """The cell types of ``markers`` whose marker genes the data (``genes``) hold, each at
    least ``min_coverage`` of its markers, with the markers found; logs the others."""
    genes = set(map(str, genes))
    usable = {}
    for cell_type, wanted in markers.items():
        found = [g for g in wanted if g in genes]
        coverage = len(found) / len(wanted)
        if found and coverage >= min_coverage:
            usable[cell_type] = found
            if len(found) < len(wanted):
                log.info("markers of %s not in the data: %s", cell_type, ", ".join(sorted(set(wanted) - set(found))))
        else:
            log.warning("cell type %s left out: %d of its %d markers in the data (annotation.min_marker_coverage "
                        "%.2f)", cell_type, len(found), len(wanted), min_coverage)
    return usable


def annotate_clusters(expr, clusters: np.ndarray, markers: dict, *, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """Name clusters by marker-gene scores.

    ``expr``: AnnData of log-normalised expression (cells x genes; gene names as
    var_names); ``markers``: cell type -> marker genes, all in ``expr`` (``usable_markers``).
    Returns ``(cluster -> cell type, cluster x cell type mean scores)``.
    """
    import anndata as ad
    import scanpy as sc

    # score_genes writes only obs: give it the same matrix with an obs of its own, no copy
    expr = ad.AnnData(X=expr.X, obs=pd.DataFrame(index=expr.obs_names), var=pd.DataFrame(index=expr.var_names))
    absent = {t: [g for g in genes if g not in expr.var_names] for t, genes in markers.items()}
    if any(absent.values()):
        raise ValueError(f"marker genes not in the data: {absent}; pass usable_markers(...)")
    scores = pd.DataFrame(index=expr.obs_names)
    for cell_type, genes in markers.items():
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


def fitting_markers(markers: dict | None, genes, min_coverage: float) -> dict | None:
    """``usable_markers`` when at least MIN_MARKER_TYPES cell types are usable, else None
    (the reference is then the clusters; a warning says why)."""
    if not markers:
        return None
    usable = usable_markers(markers, genes, min_coverage)
    if len(usable) < MIN_MARKER_TYPES:
        log.warning("the configured markers do not fit this dataset: %d of %d cell types have at least %.0f%% of "
                    "their markers in the data (%d needed); the reference is Leiden clusters, not cell-type names",
                    len(usable), len(markers), 100 * min_coverage, MIN_MARKER_TYPES)
        return None
    return usable


def cell_labels(adata, *, label_key: str | None, markers: dict | None, seed: int = 0,
                resolution: float = 1.0, min_marker_coverage: float = 0.5) -> pd.DataFrame:
    """The cell_labels table (see the module doc) for a preprocessed AnnData."""
    clusters, _ = reference_labels(adata.obs, adata.X, label_key=None, seed=seed, resolution=resolution)
    table = pd.DataFrame({"cluster": clusters}, index=pd.Index(adata.obs_names, name="cell"))
    if label_key is not None:
        if label_key not in adata.obs:
            raise InputError(f"label_key '{label_key}' is not an obs column; its columns are {list(adata.obs.columns)}.")
        table["label"] = adata.obs[label_key].astype("string").to_numpy()
        table["label_source"] = "labels"
    elif (usable := fitting_markers(markers, (adata.raw if adata.raw is not None else adata).var_names,
                                    min_marker_coverage)):
        expr = adata.raw if adata.raw is not None else adata  # every QC-passed gene when kept
        names, means = annotate_clusters(expr, clusters, usable, seed=seed)
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
                          resolution: float = 1.0, min_marker_coverage: float = 0.5) -> pd.DataFrame:
    """The cell_labels table of the preprocessed .h5ad at ``path`` without reading it whole:
    Leiden on ``subsample_cells(n, max_cells, seed=seed)`` (uniform), the other cells to the
    nearest centroid, marker scores on the subsample (from .raw's genes when stored, else
    X's); a ``leiden_subsample`` column says which cells Leiden clustered. At or below
    ``max_cells`` cells, use ``cell_labels`` (same result as this would give, without it)."""
    import anndata as ad

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
    elif markers and (usable := fitting_markers(markers, (marker_source := _marker_genes(path))[1],
                                                min_marker_coverage)):
        key, genes = marker_source
        expr = ad.AnnData(X=read_rows(path, rows, key), obs=pd.DataFrame(index=obs.index[rows].astype(str)),
                          var=pd.DataFrame(index=genes))
        log.info("marker scores on the subsample's %d cells, from %s", len(rows), key)
        names, means = annotate_clusters(expr, clusters[rows], usable, seed=seed)
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


def check_reference(table: pd.DataFrame, *, what: str, resolution: float) -> None:
    """InputError unless the reference (``label``) has at least two groups: the clustering
    scores compare groups. Labels are checked earlier (preprocess); this catches a dataset
    that Leiden leaves in one cluster."""
    groups = table["label"].dropna().nunique()
    if groups < 2 and (table["label_source"] != "labels").all():
        raise InputError(f"{what}: Leiden found {groups} cluster(s) at annotation.leiden_resolution {resolution:g}; the "
                         "clustering scores need at least 2. Raise the resolution, or give labels (label_key).")


def _marker_genes(path) -> tuple[str, pd.Index]:
    """Where a preprocessed .h5ad keeps the genes for marker scores: ``(matrix key, gene
    names)``, .raw's (every QC-passed gene) when stored, else X's."""
    import h5py

    with h5py.File(path, "r") as f:
        key = "raw/X" if "raw" in f and "X" in f["raw"] else "X"
    return key, read_var_names(path, "raw/var" if key == "raw/X" else "var")


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    annotation = snakemake.params.annotation
    settings = dict(label_key=snakemake.params.label_key, markers=annotation["markers"], seed=annotation["seed"],
                    resolution=annotation["leiden_resolution"],
                    min_marker_coverage=annotation["min_marker_coverage"])
    max_cells = int(snakemake.params.max_cells)
    if matrix_shape(snakemake.input[0])[0] > max_cells:
        table = cell_labels_from_file(snakemake.input[0], max_cells=max_cells, **settings)
    else:
        table = cell_labels(ad.read_h5ad(snakemake.input[0]), **settings)
    check_reference(table, what=f"dataset '{snakemake.wildcards.dataset}' ({snakemake.input[0]})",
                    resolution=annotation["leiden_resolution"])
    write_cell_table(table, snakemake.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
