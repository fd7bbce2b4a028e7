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
too long at millions of cells on a few cores; see docs/configuration.md, "Atlases".) Every other field covers
every cell.

The workflow's file is made without loading the preprocessed matrices: preprocessed.h5ad
is copied and the new fields are written into the copy (``write_anndata``), so an atlas
costs only its obs, embeddings and graph in memory, and ``.raw`` is carried whatever its size.
"""

import shutil

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cell_table import read_cell_table
from numba_cache import cache_umap_compilation
from rule_io import InputError, atomic_path, log, setup_logging
from subsample import subsample_cells, subsample_note

#: Fields this script adds to preprocessed.h5ad.
EMBEDDINGS = ("X_ivae", "X_ivae_interp", "X_ivae_ld")
LABEL_COLUMNS = ("cluster", "label", "label_source")


def additions(obs_names: pd.Index, emb, labels: pd.DataFrame, *, seed: int = 0, n_neighbors: int = 15,
              max_cells: int | None = None) -> dict:
    """What adata.h5ad adds to preprocessed.h5ad (module doc): ``{"obs": columns, "obsm",
    "obsp", "uns"}``, each a dict; above ``max_cells`` cells (None: never) the graph and
    UMAP of a subsample."""
    import anndata as ad
    import scanpy as sc

    if not emb.obs_names.equals(obs_names) or not labels.index.equals(obs_names):
        raise InputError("the embedding or cell_labels.tsv holds other cells than preprocessed.h5ad; rerun them.")
    n_obs = len(obs_names)
    out = {"obs": {c: labels[c].astype("category").to_numpy() for c in LABEL_COLUMNS},
           "obsm": {key: np.asarray(emb.obsm[key]) for key in EMBEDDINGS}, "obsp": {}, "uns": {}}
    subsampled = max_cells is not None and n_obs > max_cells
    keep = (subsample_cells(n_obs, max_cells, labels=labels["label"].to_numpy(), seed=seed) if subsampled
            else np.arange(n_obs))
    graph = ad.AnnData(obs=pd.DataFrame(index=obs_names[keep]))
    graph.obsm["X_ivae"] = out["obsm"]["X_ivae"][keep]
    cache_umap_compilation()
    if subsampled:
        note = subsample_note(len(keep), n_obs, stratified=True)
        log.info("%d cells, above max_cells %d: kNN graph and UMAP of %s", n_obs, max_cells, note)
    sc.pp.neighbors(graph, use_rep="X_ivae", n_neighbors=min(n_neighbors, graph.n_obs - 1), random_state=seed)
    sc.tl.umap(graph, random_state=seed)
    out["uns"]["neighbors"] = dict(graph.uns["neighbors"])
    out["uns"]["umap"] = dict(graph.uns["umap"])
    if not subsampled:
        out["obsm"]["X_umap"] = graph.obsm["X_umap"]
        out["obsp"] = {key: graph.obsp[key] for key in ("connectivities", "distances")}
        return out
    umap = np.full((n_obs, 2), np.nan, dtype=np.float32)
    umap[keep] = graph.obsm["X_umap"]
    out["obsm"]["X_umap"] = umap
    for key in ("connectivities", "distances"):  # the subsample's graph at its cells' places
        coo = graph.obsp[key].tocoo()
        out["obsp"][key] = sp.csr_matrix((coo.data, (keep[coo.row], keep[coo.col])), shape=(n_obs, n_obs))
    in_subsample = np.zeros(n_obs, dtype=bool)
    in_subsample[keep] = True
    out["obs"]["umap_subsample"] = in_subsample
    out["uns"]["umap_subsample"] = {
        "max_cells": int(max_cells), "n_cells": int(n_obs), "n_subsample": int(len(keep)), "seed": int(seed),
        "stratified_by": "label",
        "note": f"kNN graph (obsp) and X_umap of {note} (obs['umap_subsample']); X_umap is NaN elsewhere"}
    return out


def build_anndata(pre, emb, labels, *, seed: int = 0, n_neighbors: int = 15, max_cells: int | None = None):
    """The AnnData of the module doc, in memory, from the preprocessed AnnData (changed in
    place), the embedding and the labels (``additions``)."""
    add = additions(pre.obs_names, emb, labels, seed=seed, n_neighbors=n_neighbors, max_cells=max_cells)
    for column, values in add["obs"].items():
        pre.obs[column] = values
    for part in ("obsm", "obsp"):
        getattr(pre, part).update(add[part])
    pre.uns.update(add["uns"])
    pre.uns["ivae"] = dict(emb.uns["ivae"])
    return pre


def write_anndata(pre_path, emb, labels, path, **kwargs) -> None:
    """adata.h5ad at ``path``: a copy of preprocessed.h5ad ``pre_path`` with ``additions``
    written into it (gzip-compressed like the rest); its matrices are never loaded."""
    import h5py
    from anndata.io import read_elem, write_elem

    with h5py.File(pre_path, "r") as f:
        obs = read_elem(f["obs"])
    add = additions(obs.index, emb, labels, **kwargs)
    obs = obs.assign(**add["obs"])
    compressed = {"compression": "gzip"}
    with atomic_path(path) as tmp:
        shutil.copyfile(pre_path, tmp)
        with h5py.File(tmp, "r+") as f:
            del f["obs"]
            write_elem(f, "obs", obs, dataset_kwargs=compressed)
            for part in ("obsm", "obsp"):
                for key, value in add[part].items():
                    write_elem(f[part], key, value, dataset_kwargs=compressed)
            for key, value in {**add["uns"], "ivae": dict(emb.uns["ivae"])}.items():
                if key in f["uns"]:
                    del f["uns"][key]
                write_elem(f["uns"], key, value)


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    write_anndata(snakemake.input.data, ad.read_h5ad(snakemake.input.embedding), read_cell_table(snakemake.input.labels),
                  snakemake.output[0], seed=int(snakemake.params.seed), max_cells=int(snakemake.params.max_cells))
    log.info("wrote %s", snakemake.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
