"""Figure: how many dimensions each model's latent uses.

For every trained model (method x seed; the embeddings' paths name them), the eigenvalues
of the covariance of its posterior-mean latent (``X_ivae``) as fractions of the total
variance, largest first, on a log axis: mean ± s.d. over seeds. The legend gives each
model's participation ratio, (sum of eigenvalues)^2 / sum of squared eigenvalues, the
effective number of dimensions. A latent that collapsed onto i_dim directions shows i_dim
large eigenvalues and a cliff.
"""


import numpy as np
import pandas as pd

import plotstyle
from rule_io import log, setup_logging
from correlation import covariance_spectrum, participation_ratio


def spectra(latents: dict[str, list[np.ndarray]]) -> pd.DataFrame:
    """Long table: method, seed index, component (1-based), variance fraction; and the PR."""
    rows = []
    for method, arrays in latents.items():
        for i, latent in enumerate(arrays):
            eigenvalues = covariance_spectrum(latent)
            fractions = eigenvalues / eigenvalues.sum()
            pr = participation_ratio(latent)
            rows += [{"method": method, "seed": i, "component": k + 1, "fraction": f, "participation_ratio": pr}
                     for k, f in enumerate(fractions)]
    return pd.DataFrame(rows)


def plot_spectrum(latents: dict[str, list[np.ndarray]], *, dataset: str, pdf, png,
                  colours: dict | None = None) -> pd.DataFrame:
    """Draw the spectra (``colours``: method -> colour); return the long table of ``spectra``."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    table = spectra(latents)
    fig, ax = plt.subplots(figsize=(plotstyle.SINGLE_COLUMN * 1.25, plotstyle.SINGLE_COLUMN * 0.8),
                           layout="constrained")
    for method in latents:
        part = table[table["method"] == method]
        grouped = part.groupby("component")["fraction"]
        mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
        pr = part.groupby("seed")["participation_ratio"].first()
        label = f"{method} (PR {pr.mean():.1f}" + (f" \u00b1 {pr.std(ddof=1):.1f})" if len(pr) > 1 else ")")
        colour = plotstyle.method_colour(method, colours)
        ax.errorbar(mean.index, mean.to_numpy(), yerr=sd.to_numpy(), color=colour, marker="o", ms=2.5, lw=1.0,
                    capsize=1.5, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Eigenvalue rank of Cov(q_m)")
    ax.set_ylabel("Fraction of the latent's variance")
    ax.set_xticks(range(1, int(table["component"].max()) + 1))
    n_seeds = table.groupby("method")["seed"].nunique().max()
    ax.set_title(f"{dataset}: spectrum of each latent\n(mean \u00b1 s.d. over {n_seeds} seed(s); "
                 "PR = participation ratio)", fontsize=6.5)
    ax.legend(frameon=False, fontsize=5, loc="upper right")
    ax.tick_params(length=2, which="both")
    ax.spines[["top", "right"]].set_visible(False)
    plotstyle.save(fig, pdf, png)
    return table


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    latents: dict[str, list[np.ndarray]] = {}
    for path, (method, _seed) in zip(snakemake.input, snakemake.params.runs, strict=True):
        z = np.asarray(ad.read_h5ad(path).obsm["X_ivae"])
        if not np.isfinite(z).all():  # a standard model whose training diverged: no spectrum
            log.warning("%s seed %s: its latent is not finite (training diverged); left out", method, _seed)
            continue
        latents.setdefault(method, []).append(z)
    table = plot_spectrum(latents, dataset=snakemake.wildcards.dataset, pdf=snakemake.output.pdf,
                          png=snakemake.output.png, colours=snakemake.params.colours)
    log.info("participation ratios:\n%s",
             table.groupby(["method", "seed"])["participation_ratio"].first().round(2).to_string())


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
