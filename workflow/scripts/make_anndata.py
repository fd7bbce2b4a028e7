"""results/{dataset}/adata.h5ad: one AnnData to continue with in scanpy.

The preprocessed cells x highly variable genes (log-normalised ``X``, raw counts in
``layers["counts"]``, every QC-passed gene log-normalised in ``.raw`` where kept, QC metrics
in ``obs``) with, from the main iVAE: ``obsm["X_ivae"]`` (posterior mean), ``X_ivae_interp``
(the i_dim interpretative embedding) and ``X_ivae_ld`` (the latent after the module); the
15-nearest-neighbour graph of ``X_ivae`` (``obsp``, ``uns["neighbors"]``) and its UMAP
(``obsm["X_umap"]``); the cell labels (``obs["cluster"]``, ``label``, ``label_source``);
and the run's parameters in ``uns["ivae"]`` (model, training, covariates, epochs) and
``uns["preprocess"]``.

Atlas scale: above ``evaluation.max_cells`` cells, the neighbour graph and the UMAP are of
a seeded subsample of max_cells cells stratified by label (``subsample.subsample_cells``):
``obs["umap_subsample"]`` marks its cells, ``obsm["X_umap"]`` is NaN for the others, and
``obsp`` holds the subsample's kNN graph (the other cells' rows and columns are empty, so
``adata[adata.obs["umap_subsample"]]`` is a complete scanpy neighbour graph and UMAP);
``uns["umap_subsample"]`` says so. For a graph of every cell, run ``sc.pp.neighbors(adata,
use_rep="X_ivae")``. (umap-learn's ``transform`` could place the other cells, but took
too long at millions of cells on a few cores; see the README.) Every other field covers
every cell.
"""

import numpy as np
import scipy.sparse as sp

from common_io import InputError, cache_umap_compilation, log, read_cell_table, setup_logging, write_h5ad
from subsample import subsample_cells, subsample_note


def build_anndata(pre, emb, labels, *, seed: int = 0, n_neighbors: int = 15, max_cells: int | None = None):
    """The AnnData of the module doc from the preprocessed data, the embedding and the labels;
    above ``max_cells`` cells (None: never) the graph and UMAP of a subsample, as there."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    if not emb.obs_names.equals(pre.obs_names) or not labels.index.equals(pre.obs_names):
        raise InputError("the embedding or cell_labels.tsv holds other cells than preprocessed.h5ad; rerun them.")
    adata = pre
    for key in ("X_ivae", "X_ivae_interp", "X_ivae_ld"):
        adata.obsm[key] = np.asarray(emb.obsm[key])
    for column in ("cluster", "label", "label_source"):
        adata.obs[column] = labels[column].astype("category").to_numpy()
    cache_umap_compilation()
    if max_cells is None or adata.n_obs <= max_cells:
        sc.pp.neighbors(adata, use_rep="X_ivae", n_neighbors=min(n_neighbors, adata.n_obs - 1), random_state=seed)
        sc.tl.umap(adata, random_state=seed)
    else:
        keep = subsample_cells(adata.n_obs, max_cells, labels=labels["label"].to_numpy(), seed=seed)
        note = subsample_note(len(keep), adata.n_obs, stratified=True)
        log.info("%d cells, above max_cells %d: kNN graph and UMAP of %s", adata.n_obs, max_cells, note)
        sub = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[keep]))
        sub.obsm["X_ivae"] = adata.obsm["X_ivae"][keep]
        sc.pp.neighbors(sub, use_rep="X_ivae", n_neighbors=min(n_neighbors, sub.n_obs - 1), random_state=seed)
        sc.tl.umap(sub, random_state=seed)
        umap = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
        umap[keep] = sub.obsm["X_umap"]
        adata.obsm["X_umap"] = umap
        for key in ("connectivities", "distances"):  # the subsample's graph at its cells' places
            graph = sub.obsp[key].tocoo()
            adata.obsp[key] = sp.csr_matrix((graph.data, (keep[graph.row], keep[graph.col])),
                                            shape=(adata.n_obs, adata.n_obs))
        adata.uns["neighbors"] = dict(sub.uns["neighbors"])
        adata.uns["umap"] = dict(sub.uns["umap"])
        in_subsample = np.zeros(adata.n_obs, dtype=bool)
        in_subsample[keep] = True
        adata.obs["umap_subsample"] = in_subsample
        adata.uns["umap_subsample"] = {
            "max_cells": int(max_cells), "n_cells": int(adata.n_obs), "n_subsample": int(len(keep)),
            "seed": int(seed), "stratified_by": "label",
            "note": f"kNN graph (obsp) and X_umap of {note} (obs['umap_subsample']); X_umap is NaN elsewhere"}
    adata.uns["ivae"] = dict(emb.uns["ivae"])
    return adata


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    adata = build_anndata(ad.read_h5ad(snakemake.input.data), ad.read_h5ad(snakemake.input.embedding),
                          read_cell_table(snakemake.input.labels), seed=int(snakemake.params.seed),
                          max_cells=int(snakemake.params.max_cells))
    log.info("%s", adata)
    write_h5ad(adata, snakemake.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
