"""results/{dataset}/adata.h5ad: one AnnData to continue with in scanpy.

The preprocessed cells x highly variable genes (log-normalised ``X``, raw counts in
``layers["counts"]``, every QC-passed gene log-normalised in ``.raw`` where kept, QC metrics
in ``obs``) with, from the main iVAE: ``obsm["X_ivae"]`` (posterior mean), ``X_ivae_interp``
(the i_dim interpretative embedding) and ``X_ivae_ld`` (the latent after the module); the
15-nearest-neighbour graph of ``X_ivae`` (``obsp``, ``uns["neighbors"]``) and its UMAP
(``obsm["X_umap"]``); the cell labels (``obs["cluster"]``, ``label``, ``label_source``);
and the run's parameters in ``uns["ivae"]`` (model, training, covariates, epochs) and
``uns["preprocess"]``.
"""

import numpy as np

from common_io import InputError, cache_umap_compilation, log, read_cell_table, setup_logging, write_h5ad


def build_anndata(pre, emb, labels, *, seed: int = 0, n_neighbors: int = 15):
    """The AnnData of the module doc from the preprocessed data, the embedding and the labels."""
    import scanpy as sc

    if not emb.obs_names.equals(pre.obs_names) or not labels.index.equals(pre.obs_names):
        raise InputError("the embedding or cell_labels.tsv holds other cells than preprocessed.h5ad; rerun them.")
    adata = pre
    for key in ("X_ivae", "X_ivae_interp", "X_ivae_ld"):
        adata.obsm[key] = np.asarray(emb.obsm[key])
    for column in ("cluster", "label", "label_source"):
        adata.obs[column] = labels[column].astype("category").to_numpy()
    cache_umap_compilation()
    sc.pp.neighbors(adata, use_rep="X_ivae", n_neighbors=min(n_neighbors, adata.n_obs - 1), random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    adata.uns["ivae"] = dict(emb.uns["ivae"])
    return adata


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    adata = build_anndata(ad.read_h5ad(snakemake.input.data), ad.read_h5ad(snakemake.input.embedding),
                          read_cell_table(snakemake.input.labels), seed=int(snakemake.params.seed))
    log.info("%s", adata)
    write_h5ad(adata, snakemake.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
