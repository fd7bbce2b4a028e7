"""`run_metrics` rule: one trained model's row of the metrics table.

Its embedding's scores against the reference (metrics.embedding_metrics; KMeans seeded
with the training seed, so that a seed's models share their evaluation draws and the
seeds vary both), how its training ended, and its held-out likelihood on its test cells
(test_likelihood.tsv). A standard model whose training diverged is a row of empty scores
whose note says so.
"""

import pandas as pd

from h5ad_parts import read_obs_columns, read_obsm, read_uns
from rule_io import atomic_path, log, setup_logging
from metrics import (METRIC_COLUMNS, batches_for_mixing, embedding_metrics, held_out_likelihood, known_reference,
                     max_cells_param, scale_note, training_end)


def main(snakemake) -> None:
    """One trained model: its row of the metrics table."""
    setup_logging(snakemake.log[0])
    path = snakemake.input.embedding
    batch_key = snakemake.params.batch_key
    # The cell names, the batch column, the latent and the model's settings: not the rest of obs.
    obs = read_obs_columns(path, [batch_key] if batch_key else [], with_index=True, what=path)
    reference, kind, known = known_reference(snakemake.input.labels, obs.index)
    batch = batches_for_mixing(obs, batch_key, known, kind)
    max_cells = max_cells_param(snakemake)
    ivae = read_uns(path, "ivae")
    if ivae.get("diverged"):  # a standard model whose training diverged (standard_models.write_diverged)
        row = {"method": snakemake.params.method, "seed": int(snakemake.params.seed), "reference": kind,
               "note": f"training diverged: {ivae['diverged']}"}
        write_row(pd.DataFrame([row], columns=METRIC_COLUMNS), snakemake.output[0])
        return
    scores = embedding_metrics(read_obsm(path, "X_ivae")[known], reference, seed=int(snakemake.params.seed),
                               batch=batch, max_cells=max_cells)
    history = pd.read_csv(snakemake.input.log_tsv, sep="\t")
    max_epochs = int(ivae.get("epochs", history["epoch"].max()))
    row = {"method": snakemake.params.method, "seed": int(snakemake.params.seed), **scores,
           **held_out_likelihood(snakemake.input.likelihood), **training_end(history, max_epochs),
           "reference": kind, "note": scale_note(len(reference), max_cells, batch is not None)}
    write_row(pd.DataFrame([row], columns=METRIC_COLUMNS), snakemake.output[0])


def write_row(table: pd.DataFrame, path) -> None:
    log.info("\n%s", table.to_string(index=False))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
