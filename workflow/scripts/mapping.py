"""Mapping a query dataset onto a trained reference: gene matching and label transfer.

The three rules of `snakemake map` (results/{query}/mapped_to/{reference}/) each have a
thin entry script: map_genes.py (the query's QC-passed counts at the reference model's
genes), map_embed.py (the reference's model embeds them, new covariate categories by
surgery) and map_transfer.py (labels by nearest reference cells, the reference's UMAP).
This module holds their pure functions.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp


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
