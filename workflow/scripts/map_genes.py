"""`map_genes` rule: a query's QC-passed cells, its counts at the reference model's genes.

The query's raw counts pass its own QC (its ``preprocess`` settings) and are taken at the
reference model's genes, matched by Ensembl ID where both datasets have IDs
(var['gene_ids']), else by name; genes the query lacks are zero-filled. The overlap is
reported (overlap.tsv), and an overlap below ``mapping.min_gene_overlap`` is an error.
"""

from dataclasses import fields

import pandas as pd
import scipy.sparse as sp

from readers import read_counts
from rule_io import InputError, atomic_path, log, setup_logging, write_h5ad
from mapping import at_reference_genes, match_genes


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    import anndata as ad

    from preprocess import CellQC, quality_control

    params = snakemake.params
    what = f"query '{params.query}' ({snakemake.input.counts})"
    query = read_counts(snakemake.input.counts, counts_layer=params.counts_layer, dataset=params.query)
    qc = {f.name: params.preprocess[f.name] for f in fields(CellQC)}  # the query's own cell QC
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


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
