"""Map a query dataset onto a trained reference: results/{query}/mapped_to/{reference}/.

Three steps, each a rule (the first and last need scanpy, the middle one PyTorch):

1. ``genes``: the query's raw counts pass its own QC (its ``preprocess`` settings) and are
   taken at the reference model's genes, matched by Ensembl ID where both datasets have
   IDs (var['gene_ids']), else by name; genes the query lacks are zero-filled. The overlap
   is reported (overlap.tsv), and an overlap below ``mapping.min_gene_overlap`` is an error.
2. ``embed``: the reference's model embeds the query in eval mode. A reference trained with
   covariates needs the same obs columns in the query; categories it never saw (new
   samples) get weights of their own, trained on the query alone, every other weight
   frozen (scArches' architecture surgery; ``mapping.surgery_epochs``, the reference's
   other training settings and seed, CUDA when present).
3. ``transfer``: each query cell's label is the majority among its ``mapping.n_neighbors``
   nearest reference cells in the latent (``X_ivae``), with the fraction of them that agree
   as its confidence; the query is placed on the reference's UMAP (scanpy's ``ingest``).
   The reference's labels are whatever its cell_labels.tsv holds (``label_source``: its own
   labels, marker-named clusters or clusters), recorded with the result. Where the query
   has its own labels, their agreement with the transferred ones is reported.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common_io import InputError, atomic_path, log, read_counts, setup_logging, write_h5ad


def match_genes(query_var: pd.DataFrame, reference_var: pd.DataFrame) -> tuple[np.ndarray, str]:
    """(for each reference gene, the query column holding it or -1; "Ensembl ID" or "name").

    IDs are used when both have a complete, unique ``gene_ids`` column, names otherwise."""

    def usable(var: pd.DataFrame) -> bool:
        return "gene_ids" in var and var["gene_ids"].notna().all() and var["gene_ids"].is_unique

    if usable(query_var) and usable(reference_var):
        query, reference, how = query_var["gene_ids"].astype(str), reference_var["gene_ids"].astype(str), "Ensembl ID"
    else:
        query, reference, how = query_var.index.astype(str), reference_var.index.astype(str), "name"
    return pd.Index(query).get_indexer(pd.Index(reference)), how


def at_reference_genes(X: sp.csr_matrix, indexer: np.ndarray) -> sp.csr_matrix:
    """The query's counts in the reference's gene order: missing genes (-1) are all-zero columns."""
    found = np.flatnonzero(indexer >= 0)
    select = sp.csr_matrix((np.ones(len(found)), (indexer[found], found)), shape=(X.shape[1], len(indexer)))
    return sp.csr_matrix(X @ select, dtype=np.float32)


def transfer_labels(reference_latent, reference_labels, query_latent, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """(majority label of each query cell's nearest reference cells, fraction that agree)."""
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(reference_labels).astype(str)
    k = min(n_neighbors, len(labels))
    idx = NearestNeighbors(n_neighbors=k).fit(reference_latent).kneighbors(query_latent, return_distance=False)
    names, codes = np.unique(labels, return_inverse=True)
    votes = np.zeros((len(idx), len(names)))
    np.add.at(votes, (np.repeat(np.arange(len(idx)), k), codes[idx].ravel()), 1.0)
    winner = votes.argmax(1)
    return names[winner], votes[np.arange(len(idx)), winner] / k


def step_genes(snakemake) -> None:
    import anndata as ad

    from preprocess import quality_control

    params = snakemake.params
    what = f"query '{params.query}' ({snakemake.input.counts})"
    query = read_counts(snakemake.input.counts, counts_layer=params.counts_layer, dataset=params.query)
    qc = {k: v for k, v in params.preprocess.items() if k in (
        "qc", "min_genes", "max_genes", "max_pct_mt", "mt_prefix", "qc_nmads", "qc_nmads_mt", "doublets")}
    X, obs, _, _ = quality_control(sp.csr_matrix(query.X), query.obs, query.var.copy(), dataset=params.query, **qc)
    reference = ad.read_h5ad(snakemake.input.reference, backed="r")
    indexer, how = match_genes(query.var, reference.var)
    overlap = float((indexer >= 0).mean())
    log.info("%s: %d of the reference's %d genes found by %s (%.1f %%)", what, (indexer >= 0).sum(), len(indexer),
             how, 100 * overlap)
    if overlap < params.min_gene_overlap:
        raise InputError(f"{what}: only {100 * overlap:.1f} % of reference '{params.reference}''s genes found by "
                         f"{how} (mapping.min_gene_overlap = {params.min_gene_overlap}); is it the same species and "
                         "gene naming?")
    out = ad.AnnData(X=at_reference_genes(X, indexer), obs=obs, var=reference.var[[]].copy())
    out.uns["mapping"] = {"reference": params.reference, "matched_by": how, "genes_found": int((indexer >= 0).sum()),
                          "genes": len(indexer), "overlap": overlap}
    write_h5ad(out, snakemake.output.counts)
    with atomic_path(snakemake.output.overlap) as tmp:
        pd.DataFrame([{"query": params.query, "reference": params.reference, "query_cells": out.n_obs,
                       "reference_genes": len(indexer), "genes_found": int((indexer >= 0).sum()),
                       "overlap": overlap, "matched_by": how}]).to_csv(tmp, sep="\t", index=False)


def step_embed(snakemake) -> None:
    import anndata as ad
    import torch

    from common_io import covariate_codes, load_checkpoint
    from embed import embed
    from model import ModelSettings
    from train import TrainSettings, covariate_surgery, fit, resolve_device

    torch.set_num_threads(snakemake.threads)
    query = ad.read_h5ad(snakemake.input.counts)
    model, ckpt = load_checkpoint(snakemake.input.model)
    covariates = ckpt.get("covariates", {"keys": [], "categories": []})
    what = f"query '{snakemake.params.query}'"
    codes, categories = None, covariates["categories"]
    if covariates["keys"]:
        observed = [sorted(query.obs[k].astype(str).unique()) if k in query.obs else None for k in covariates["keys"]]
        missing = [k for k, o in zip(covariates["keys"], observed) if o is None]
        if missing:
            raise InputError(f"{what}: the reference was trained conditioned on obs {covariates['keys']}; the "
                             f"query lacks {missing}. Give the query those columns (its own samples are new "
                             "categories, learnt by surgery).")
        grown = [list(c) + [v for v in o if v not in c] for c, o in zip(categories, observed)]
        if grown != [list(c) for c in categories]:
            log.info("%s: new categories %s: training their weights only (surgery)", what,
                     {k: g[len(c):] for k, c, g in zip(covariates["keys"], categories, grown)})
            model, trainable = covariate_surgery(model, categories, grown)
            codes, categories = covariate_codes(query.obs, covariates["keys"], grown, what=what)
            # the reference's training settings and seed, at most surgery_epochs epochs, on this machine
            settings = TrainSettings.from_config({**ckpt["train_params"], "device": "auto", "compile": False,
                                                  "epochs": snakemake.params.surgery_epochs})
            device = resolve_device(settings.device)
            model, _ = fit(sp.csr_matrix(query.X), ModelSettings(**{**ckpt["model_params"],
                                                                    "n_categories": tuple(map(len, grown))}),
                           settings, covariates=codes, initial=model, trainable=trainable, device=device)
        else:
            codes, _ = covariate_codes(query.obs, covariates["keys"], categories, what=what)
    latent, interp, after = embed(model, sp.csr_matrix(query.X), covariates=codes)
    out = ad.AnnData(obs=query.obs)
    out.obsm["X_ivae"], out.obsm["X_ivae_interp"], out.obsm["X_ivae_ld"] = latent, interp, after
    out.uns["mapping"] = {**dict(query.uns["mapping"]), "covariates": covariates["keys"],
                          "categories": {k: list(c) for k, c in zip(covariates["keys"], categories)}}
    write_h5ad(out, snakemake.output[0])


def step_transfer(snakemake) -> None:
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
    setup_logging(snakemake.log[0])  # noqa: F821
    {"genes": step_genes, "embed": step_embed, "transfer": step_transfer}[snakemake.params.step](snakemake)  # noqa: F821
