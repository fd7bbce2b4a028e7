"""The latent correlation of every iVAE seed against what chance and the architecture give.

For each training seed's posterior-mean latent z (``X_ivae``) and the latent after the
interpretative module ld (``X_ivae_ld``): the observed mean |off-diagonal r|, and

- before (z): the permutation null (components permuted independently across cells);
- after (ld): the untrained-module null (a randomly initialised module of the same shape
  applied to the same z), and the best rank-i_dim reconstruction of z.

Writes results/{dataset}/latent_correlation.tsv (one row per seed and panel: observed, the
null's mean, s.d., 2.5-97.5 % range, the observed value's percentile in it, the rank-i_dim
reference) and latent_correlation_null.tsv (every null draw, for the figure).
"""

import numpy as np
import pandas as pd

from rule_io import atomic_path, log, setup_logging
from correlation import (correlation_matrix, mean_abs_offdiagonal, null_summary, permutation_null, random_module_null,
                         rank_k_reference)
from h5ad_parts import read_obsm, read_uns


def correlation_nulls(latent: np.ndarray, after: np.ndarray, i_dim: int, *, n_draws: int,
                      seed: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """(summary rows for "before" and "after", the null draws of each) for one model."""
    draws = {"before": permutation_null(latent, n_draws, seed=seed),
             "after": random_module_null(latent, i_dim, n_draws, seed=seed)}
    observed = {"before": mean_abs_offdiagonal(correlation_matrix(latent)),
                "after": mean_abs_offdiagonal(correlation_matrix(after))}
    rank_k = rank_k_reference(latent, i_dim)
    rows = [{"panel": panel, **null_summary(observed[panel], draws[panel]),
             "null": "permuted components" if panel == "before" else "untrained module",
             "rank_i_dim": rank_k if panel == "after" else np.nan} for panel in ("before", "after")]
    return rows, draws


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    rows, draws = [], []
    for path, seed in zip(snakemake.input, snakemake.params.seeds, strict=True):
        # The two latents and i_dim: not the obs (an atlas's per-cell strings).
        i_dim = int(read_uns(path, "ivae/model_params/i_dim"))
        summary, null = correlation_nulls(read_obsm(path, "X_ivae"), read_obsm(path, "X_ivae_ld"), i_dim,
                                          n_draws=snakemake.params.n_draws, seed=snakemake.params.eval_seed)
        rows += [{"seed": seed, **row} for row in summary]
        draws += [{"seed": seed, "panel": panel, "draw": i, "value": v}
                  for panel, values in null.items() for i, v in enumerate(values)]
    table = pd.DataFrame(rows)
    log.info("\n%s", table.round(3).to_string(index=False))
    with atomic_path(snakemake.output.summary) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.draws) as tmp:
        pd.DataFrame(draws).to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
