"""The paper's comparisons as sweeps: metrics of one run, and the summary over runs.

One run = one (beta, irecon, seed) training of the iVAE on a dataset. ``run_metrics``
scores its latent (``X_ivae``) like the metrics table does; ``summarise`` collects the runs
and draws each metric against beta (irecon fixed), against irecon (beta fixed), and the
plain VAE (irecon = 0) against the iVAE, as mean ± s.d. over seeds.
"""

import numpy as np
import pandas as pd

import plotstyle
from common_io import atomic_path, log, setup_logging
from metrics import clustering_metrics, correlation_score, read_reference

METRICS = ["NMI", "ARI", "ASW", "CH", "DB", "corr_score"]
BETTER = {"NMI": "higher", "ARI": "higher", "ASW": "higher", "CH": "higher", "DB": "lower",
          "corr_score": None}


def run_metrics(latent: np.ndarray, reference: np.ndarray, kind: str, *, beta: float, irecon: float,
                seed: int) -> pd.DataFrame:
    """One-row table: the run's parameters and the metrics of its latent."""
    known = pd.notna(reference)
    scores = clustering_metrics(latent[known], reference[known].astype(str), seed=seed)
    return pd.DataFrame([{"beta": beta, "irecon": irecon, "seed": seed, **scores,
                          "corr_score": correlation_score(latent), "reference": kind}])


def mean_sd(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean and s.d. (over seeds) of every metric for each value of ``by``."""
    grouped = table.groupby(by)[METRICS]
    return grouped.mean().join(grouped.std(ddof=1).fillna(0.0), rsuffix="_sd")


def plot_sweep(table: pd.DataFrame, *, beta_default: float, irecon_default: float, dataset: str,
               pdf: str, png: str) -> None:
    """Three rows of panels: metrics vs beta, metrics vs irecon, VAE vs iVAE; mean ± s.d."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    fig, axes = plt.subplots(3, len(METRICS), figsize=(plotstyle.DOUBLE_COLUMN, plotstyle.DOUBLE_COLUMN * 0.62),
                             layout="constrained")
    vs_beta = mean_sd(table[np.isclose(table["irecon"], irecon_default)], "beta")
    vs_irecon = mean_sd(table[np.isclose(table["beta"], beta_default)], "irecon")
    pair = table[np.isclose(table["beta"], beta_default)
                 & (np.isclose(table["irecon"], 0) | np.isclose(table["irecon"], irecon_default))]
    pair = mean_sd(pair.assign(model=np.where(np.isclose(pair["irecon"], 0), "VAE", "iVAE")), "model")
    n_seeds = table["seed"].nunique()
    for j, metric in enumerate(METRICS):
        title = metric if BETTER[metric] is None else f"{metric} ({BETTER[metric]} is better)"
        for ax, summary, xlabel in ((axes[0, j], vs_beta, f"β (irecon = {irecon_default:g})"),
                                    (axes[1, j], vs_irecon, f"irecon (β = {beta_default:g})")):
            if len(summary):  # values evenly spaced and labelled: sweeps are a few discrete values
                positions = np.arange(len(summary))
                ax.errorbar(positions, summary[metric], yerr=summary[f"{metric}_sd"], marker="o",
                            ms=3, lw=1, capsize=2, color=plotstyle.OKABE_ITO[4])
                ax.set_xticks(positions, [f"{v:g}" for v in summary.index], rotation=90)
            ax.set_xlabel(xlabel)
            ax.set_title(title)
        ax = axes[2, j]
        order = [m for m in ("VAE", "iVAE") if m in pair.index]
        ax.bar(order, pair.loc[order, metric], yerr=pair.loc[order, f"{metric}_sd"], capsize=3,
               color=[plotstyle.OKABE_ITO[0] if m == "VAE" else plotstyle.OKABE_ITO[4] for m in order])
        ax.set_title(title)
        for row in range(3):
            axes[row, j].set_ylabel(metric)
    kind = table["reference"].iloc[0]
    against = "cell-type labels" if kind == "labels" else "Leiden clusters of the log-normalised data"
    fig.suptitle(f"{dataset}: sweeps, mean ± s.d. over {n_seeds} seed(s); NMI/ARI/ASW/CH/DB against {against}\n"
                 f"bottom row: VAE (irecon = 0) vs iVAE (irecon = {irecon_default:g}), both at β = {beta_default:g}")
    plotstyle.save(fig, pdf, png)


def main_run(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    emb = ad.read_h5ad(snakemake.input.embedding)
    reference, kind = read_reference(snakemake.input.labels, emb.obs_names)
    w = snakemake.wildcards
    row = run_metrics(np.asarray(emb.obsm["X_ivae"]), reference, kind, beta=float(w.beta),
                      irecon=float(w.irecon), seed=int(w.seed))
    log.info("%s", row.to_string(index=False))
    with atomic_path(snakemake.output[0]) as tmp:
        row.to_csv(tmp, sep="\t", index=False)


def main_summary(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input], ignore_index=True)
    table = table.sort_values(["beta", "irecon", "seed"], ignore_index=True)
    with atomic_path(snakemake.output.tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    defaults = snakemake.params.defaults
    plot_sweep(table, beta_default=defaults["beta"], irecon_default=defaults["irecon"], dataset=snakemake.wildcards.dataset,
               pdf=snakemake.output.pdf, png=snakemake.output.png)
    for by in ("beta", "irecon"):
        log.info("by %s:\n%s", by, mean_sd(table, by).round(3).to_string())


if "snakemake" in globals():
    (main_summary if snakemake.rule == "sweep_summary" else main_run)(snakemake)  # noqa: F821
