"""Scanpy preprocessing: QC, normalisation, highly variable genes, raw counts kept.

Output contract (results/{dataset}/preprocessed.h5ad):
- cells that pass QC (qc.py: fixed or MAD thresholds, optionally Scrublet doublets), the
  highly variable genes;
- ``layers["counts"]``: raw integer counts (what the iVAE models);
- ``X``: log1p of counts normalised to ``target_sum`` per cell (library size over all genes);
- ``.raw`` (unless ``keep_raw`` is false): the log-normalised values of every gene that
  passed QC (for marker genes);
- ``obs``: the input's columns plus scanpy's QC metrics; ``uns["preprocess"]``: parameters,
  ``uns["qc"]``: the QC bounds and how many cells each removed.

Beside it, results/{dataset}/qc.tsv has every input cell's QC metrics and why it failed
(``qc_fail``, empty for kept cells), and qc_bounds.tsv the bounds; the QC figure draws both.
"""


import numpy as np
import pandas as pd
import scipy.sparse as sp

from common_io import (InputError, atomic_path, covariate_codes, log, read_counts, setup_logging, software_versions,
                       write_cell_table, write_h5ad)
from qc import cell_metrics, qc_bounds, qc_failures, scrublet_doublets


def log_normalise_inplace(X: sp.csr_matrix, target_sum: float) -> None:
    """X.data <- log1p(x / cell total * target_sum), row by row chunks, in place."""
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    step = 1 << 16
    for lo in range(0, X.shape[0], step):
        hi = min(lo + step, X.shape[0])
        a, b = X.indptr[lo], X.indptr[hi]
        X.data[a:b] *= np.repeat(scale[lo:hi], np.diff(X.indptr[lo:hi + 1])).astype(X.data.dtype)
        np.log1p(X.data[a:b], out=X.data[a:b])


def quality_control(X: sp.csr_matrix, obs, var, *, qc: str, min_genes: int, max_genes: int | None,
                    max_pct_mt: float | None, mt_prefix: str, qc_nmads: float = 5.0, qc_nmads_mt: float = 3.0,
                    doublets: str | None = None, dataset: str = "dataset"):
    """Cell QC (qc.py): ``(X of the kept cells, their obs with the QC metrics, the QC table
    of every cell, the bounds)``. Adds ``var["mt"]``. InputError when no cell is left."""
    n0_cells = X.shape[0]
    var["mt"] = var.index.str.upper().str.startswith(mt_prefix.upper())  # MT- (human) and mt- (mouse)
    metrics = cell_metrics(X, var["mt"].to_numpy(), top_genes=qc == "mad")
    metrics.index = obs.index
    bounds = qc_bounds(metrics, qc=qc, min_genes=min_genes, max_genes=max_genes, max_pct_mt=max_pct_mt,
                       nmads=qc_nmads, nmads_mt=qc_nmads_mt)
    table = metrics.assign(qc_fail=qc_failures(metrics, bounds))
    keep = (table["qc_fail"] == "").to_numpy()
    log.info("QC (%s): kept %d of %d cells; %d %s* genes; bounds:\n%s", qc, keep.sum(), n0_cells,
             int(var["mt"].sum()), mt_prefix, bounds.to_string(index=False))
    if not keep.any():
        raise InputError(f"dataset '{dataset}': no cells left after QC ({qc}; min_genes={min_genes}, "
                         f"max_genes={max_genes}, max_pct_mt={max_pct_mt}); relax preprocess.")
    if not keep.all():
        X = X[keep]
    if doublets == "scrublet":
        table["doublet_score"], table["predicted_doublet"] = np.nan, False
        scores, predicted, threshold = scrublet_doublets(X)
        table.loc[keep, "doublet_score"], table.loc[keep, "predicted_doublet"] = scores, predicted
        bounds.loc[len(bounds)] = ["doublet_score", np.nan, threshold, "Scrublet's automatic threshold"]
        log.info("Scrublet: %d of %d QC-passed cells called doublets (score > %.3f)", predicted.sum(),
                 len(predicted), threshold)
        if predicted.all():
            raise InputError(f"dataset '{dataset}': Scrublet called every cell a doublet.")
        table.loc[table.index[keep][predicted], "qc_fail"] = "doublet"
        X = X[~predicted]
        keep = (table["qc_fail"] == "").to_numpy()
    obs = obs.assign(**{c: metrics[c].to_numpy() for c in metrics})[keep]
    return X, obs, table, bounds



def preprocess(
    adata,
    *,
    min_genes: int,
    min_cells: int,
    max_genes: int | None,
    max_pct_mt: float | None,
    mt_prefix: str,
    n_top_genes: int,
    target_sum: float,
    keep_raw: bool = True,
    qc: str = "fixed",
    qc_nmads: float = 5.0,
    qc_nmads_mt: float = 3.0,
    doublets: str | None = None,
    batch_key: str | None = None,
    dataset: str = "dataset",
):
    """AnnData of raw counts (CSR) in X -> ``(preprocessed AnnData, QC table)``.

    The AnnData is that of the module doc; the QC table has one row per input cell (its
    metrics and ``qc_fail``, why it was removed: empty if kept). Memory-lean for atlases:
    the input's X is consumed (log-normalised in place), and no step holds more than two
    copies of the cells x genes matrix. Highly variable genes are scanpy's ``seurat_v3``
    (variance-stabilised raw counts), batch-aware with ``batch_key`` (genes ranked within
    each batch, as scanpy does). Raises InputError when no cells or no genes are left
    after QC.
    """
    import anndata as ad
    import scanpy as sc

    X = adata.X if sp.isspmatrix_csr(adata.X) or isinstance(adata.X, sp.csr_array) else sp.csr_matrix(adata.X)
    obs, var = adata.obs, adata.var.copy()
    del adata
    n0_genes = X.shape[1]
    X, obs, table, bounds = quality_control(
        X, obs, var, qc=qc, min_genes=min_genes, max_genes=max_genes, max_pct_mt=max_pct_mt, mt_prefix=mt_prefix,
        qc_nmads=qc_nmads, qc_nmads_mt=qc_nmads_mt, doublets=doublets, dataset=dataset)

    n_cells_by_counts = np.bincount(X.indices, minlength=X.shape[1])
    genes = n_cells_by_counts >= min_cells
    log.info("QC: kept %d of %d genes expressed in >= %d cells", genes.sum(), n0_genes, min_cells)
    if not genes.any():
        raise InputError(f"dataset '{dataset}': no genes left after QC (min_cells={min_cells}); relax preprocess.")
    if not genes.all():
        X = X[:, genes]
    var = var[genes].copy()
    var["n_cells_by_counts"] = n_cells_by_counts[genes]
    var["total_counts"] = np.asarray(X.sum(axis=0)).ravel()

    n_hvg = min(n_top_genes, X.shape[1])
    if n_hvg < n_top_genes:
        log.info("only %d genes pass QC: all of them are used (n_top_genes=%d)", X.shape[1], n_top_genes)
        var["highly_variable"] = True
    else:
        hvg = sc.pp.highly_variable_genes(ad.AnnData(X=X, obs=obs[[batch_key]] if batch_key else None, var=var[[]]),
                                          n_top_genes=n_hvg, flavor="seurat_v3", batch_key=batch_key, inplace=False)
        for column in ("highly_variable", "highly_variable_rank", "means", "variances", "variances_norm"):
            var[column] = hvg[column].to_numpy()
    hvg_idx = np.flatnonzero(var["highly_variable"].to_numpy())

    counts = X[:, hvg_idx].tocsr()
    empty = np.asarray(counts.sum(axis=1)).ravel() == 0
    if empty.all():
        raise InputError(f"dataset '{dataset}': no cell has counts in the highly variable genes.")
    if empty.any():
        log.info("dropping %d cells with no counts in the %d highly variable genes", empty.sum(), len(hvg_idx))
        table.loc[obs.index[empty], "qc_fail"] = "no counts in the highly variable genes"
        X, counts, obs = X[~empty], counts[~empty], obs[~empty]

    log_normalise_inplace(X, target_sum)  # X: log-normalised, every QC-passed gene
    out = ad.AnnData(X=X[:, hvg_idx].tocsr(), obs=obs, var=var.iloc[hvg_idx].copy())
    out.layers["counts"] = counts
    if keep_raw:
        out.raw = ad.AnnData(X=X, var=var[[]])
    del X
    out.uns["log1p"] = {"base": None}
    out.uns["software"] = software_versions(["scanpy", "anndata", "numpy", "scipy", "scikit-misc"])
    out.uns["preprocess"] = {
        "min_genes": min_genes, "min_cells": min_cells, "max_genes": max_genes if max_genes is not None else "none",
        "max_pct_mt": max_pct_mt if max_pct_mt is not None else "none", "mt_prefix": mt_prefix,
        "n_top_genes": n_top_genes, "hvg_flavor": "seurat_v3", "target_sum": target_sum, "keep_raw": keep_raw,
        "qc": qc, "qc_nmads": qc_nmads, "qc_nmads_mt": qc_nmads_mt, "doublets": doublets or "none",
        "hvg_batch_key": batch_key or "none",
    }
    out.uns["qc"] = {"bounds": bounds.astype({"lower": float, "upper": float}),
                     "removed": table["qc_fail"].value_counts().drop("", errors="ignore").to_dict()}
    log.info("preprocessed: %d cells x %d highly variable genes", out.n_obs, out.n_vars)
    return out, table


if "snakemake" in globals():
    setup_logging(snakemake.log[0])  # noqa: F821
    params = snakemake.params  # noqa: F821
    raw = read_counts(snakemake.input[0], counts_layer=params.counts_layer, dataset=params.dataset)  # noqa: F821
    log.info("read %s: %d cells x %d genes", snakemake.input[0], raw.n_obs, raw.n_vars)  # noqa: F821
    what = f"dataset '{params.dataset}' ({snakemake.input[0]})"  # noqa: F821
    if params.label_key is not None and params.label_key not in raw.obs:
        raise InputError(f"{what}: label_key '{params.label_key}' is not an obs column; "
                         f"its columns are {list(raw.obs.columns)}.")
    covariate_codes(raw.obs, params.covariates, what=what)  # every covariate present, no missing values
    out, qc_table = preprocess(raw, dataset=params.dataset, batch_key=params.batch_key, **params.preprocess)
    write_h5ad(out, snakemake.output.h5ad)  # noqa: F821
    write_cell_table(qc_table, snakemake.output.qc)  # noqa: F821
    with atomic_path(snakemake.output.bounds) as tmp:  # noqa: F821
        out.uns["qc"]["bounds"].to_csv(tmp, sep="\t", index=False)
