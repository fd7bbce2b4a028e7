"""`map_transfer` rule: labels transferred from the reference; the query on its UMAP.

Each query cell's label is the majority among its ``mapping.n_neighbors`` nearest
reference cells in the latent (``X_ivae``), with the fraction of them that agree as its
confidence; the query is placed on the reference's UMAP (scanpy's ``ingest``). The
reference's labels are whatever its cell_labels.tsv holds (``label_source``: its own
labels, marker-named clusters or clusters), recorded with the result. Where the query has
its own labels, their agreement with the transferred ones is reported.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rule_io import atomic_path, log, setup_logging, write_h5ad
from mapping import transfer_labels
from numba_cache import cache_umap_compilation


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    import anndata as ad
    import scanpy as sc

    params = snakemake.params
    reference = ad.read_h5ad(snakemake.input.reference)
    query = ad.read_h5ad(snakemake.input.embedding)
    predicted, confidence = transfer_labels(reference.obsm["X_ivae"], reference.obs["label"],
                                            query.obsm["X_ivae"], params.n_neighbors)
    query.obs["predicted_label"] = pd.Categorical(predicted)
    query.obs["label_confidence"] = confidence
    projected = ad.AnnData(X=sp.csr_matrix((query.n_obs, reference.n_vars), dtype=np.float32), obs=query.obs[[]],
                           var=reference.var[[]])
    projected.obsm["X_ivae"] = query.obsm["X_ivae"]
    if "umap_subsample" in reference.obs:  # an atlas: its UMAP and graph are of a subsample
        reference = reference[reference.obs["umap_subsample"].to_numpy(dtype=bool)].copy()
    cache_umap_compilation()  # ingest runs umap's numba code: reuse what earlier jobs compiled
    sc.tl.ingest(projected, reference, obs=None, embedding_method="umap")
    query.obsm["X_umap"] = projected.obsm["X_umap"]
    label_source = str(reference.obs["label_source"].iloc[0])
    summary = {"query_cells": query.n_obs, "label_source": label_source, "median_confidence": float(np.median(confidence)),
               **{k: query.uns["mapping"][k] for k in ("genes_found", "genes", "overlap", "matched_by")}}
    if params.label_key:
        own = query.obs[params.label_key].astype(str).to_numpy()
        shared = np.isin(own, reference.obs["label"].astype(str).unique())
        summary.update(labelled_cells=int(shared.sum()),
                       agreement=float((predicted[shared] == own[shared]).mean()) if shared.any() else float("nan"))
        log.info("labels transferred: %.1f %% agree with the query's own on %d cells whose label the reference has",
                 100 * summary["agreement"], shared.sum())
    query.uns["mapping"] = {**dict(query.uns["mapping"]), **summary}
    write_h5ad(query, snakemake.output.h5ad)
    with atomic_path(snakemake.output.summary) as tmp:
        pd.DataFrame([summary]).to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
