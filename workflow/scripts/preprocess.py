"""Scanpy preprocessing: QC, normalisation, highly variable genes, raw counts kept.

Output contract (results/{dataset}/preprocessed.h5ad):
- cells that pass QC, the highly variable genes;
- ``layers["counts"]``: raw integer counts (what the iVAE models);
- ``X``: log1p of counts normalised to ``target_sum`` per cell (library size over all genes);
- ``.raw``: the same log-normalised values for every gene that passed QC (for markers);
- ``obs``: the input's columns plus scanpy's QC metrics; ``uns["preprocess"]``: parameters.
"""


import numpy as np
import scipy.sparse as sp

from common_io import InputError, log, read_counts, setup_logging, write_h5ad


def preprocess(
    adata,
    *,
    min_genes: int,
    min_cells: int,
    max_genes: int | None,
    max_pct_mt: float | None,
    mt_prefix: str,
    n_top_genes: int,
    hvg_flavor: str,
    target_sum: float,
    dataset: str = "dataset",
):
    """AnnData of raw counts in X -> the preprocessed AnnData described in the module doc.

    Raises InputError when no cells or no genes are left after QC.
    """
    import scanpy as sc

    adata = adata.copy()
    adata.var["mt"] = adata.var_names.str.startswith(mt_prefix)
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    n0_cells, n0_genes = adata.shape

    keep = adata.obs["n_genes_by_counts"].to_numpy() >= min_genes
    if max_genes is not None:
        keep &= adata.obs["n_genes_by_counts"].to_numpy() <= max_genes
    if max_pct_mt is not None:
        keep &= adata.obs["pct_counts_mt"].to_numpy() <= max_pct_mt
    adata = adata[keep].copy()
    log.info("QC: kept %d of %d cells (min_genes=%s, max_genes=%s, max_pct_mt=%s; %d %s* genes)",
             adata.n_obs, n0_cells, min_genes, max_genes, max_pct_mt, int(adata.var["mt"].sum()), mt_prefix)
    if adata.n_obs == 0:
        raise InputError(f"dataset '{dataset}': no cells left after QC "
                         f"(min_genes={min_genes}, max_genes={max_genes}, max_pct_mt={max_pct_mt}); relax preprocess.")
    sc.pp.filter_genes(adata, min_cells=min_cells)
    log.info("QC: kept %d of %d genes expressed in >= %d cells", adata.n_vars, n0_genes, min_cells)
    if adata.n_vars == 0:
        raise InputError(f"dataset '{dataset}': no genes left after QC (min_cells={min_cells}); relax preprocess.")

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)
    adata.raw = adata

    n_hvg = min(n_top_genes, adata.n_vars)
    if n_hvg < n_top_genes:
        log.info("only %d genes pass QC: all of them are used (n_top_genes=%d)", adata.n_vars, n_top_genes)
        adata.var["highly_variable"] = True
    else:
        hvg_kwargs = {"layer": "counts"} if hvg_flavor in ("seurat_v3", "seurat_v3_paper") else {}
        sc.pp.highly_variable_genes(adata, n_top_genes=n_hvg, flavor=hvg_flavor, subset=False, **hvg_kwargs)
    adata = adata[:, adata.var["highly_variable"].to_numpy()].copy()

    hvg_total = np.asarray(adata.layers["counts"].sum(axis=1)).ravel()
    empty = hvg_total == 0
    if empty.any():
        log.info("dropping %d cells with no counts in the %d highly variable genes", int(empty.sum()), adata.n_vars)
        adata = adata[~empty].copy()
    if adata.n_obs == 0:
        raise InputError(f"dataset '{dataset}': no cell has counts in the highly variable genes.")

    adata.layers["counts"] = sp.csr_matrix(adata.layers["counts"])
    adata.uns["preprocess"] = {
        "min_genes": min_genes, "min_cells": min_cells, "max_genes": max_genes if max_genes is not None else "none",
        "max_pct_mt": max_pct_mt if max_pct_mt is not None else "none", "mt_prefix": mt_prefix,
        "n_top_genes": n_top_genes, "hvg_flavor": hvg_flavor, "target_sum": target_sum,
    }
    log.info("preprocessed: %d cells x %d highly variable genes", adata.n_obs, adata.n_vars)
    return adata


if "snakemake" in globals():
    setup_logging(snakemake.log[0])  # noqa: F821
    params = snakemake.params  # noqa: F821
    raw = read_counts(snakemake.input[0], counts_layer=params.counts_layer, dataset=params.dataset)  # noqa: F821
    log.info("read %s: %d cells x %d genes", snakemake.input[0], raw.n_obs, raw.n_vars)  # noqa: F821
    if params.label_key is not None and params.label_key not in raw.obs:
        raise InputError(
            f"dataset '{params.dataset}' ({snakemake.input[0]}): label_key '{params.label_key}' is not an "  # noqa: F821
            f"obs column; its columns are {list(raw.obs.columns)}."
        )
    out = preprocess(raw, dataset=params.dataset, **params.preprocess)
    write_h5ad(out, snakemake.output[0])  # noqa: F821
