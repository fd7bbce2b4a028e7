"""Figure: what each model's components mean (components.py's tables).

Left, stability across training seeds: each pair of seeds' median matched |r| (a dot) and
the median over pairs (a bar). Right, the fraction of a model's components whose top genes
are enriched in an MSigDB Hallmark set at FDR 5 %: each seed a dot, mean ± s.d. The random
projections (grey) show what chance gives on the same genes.
"""

import numpy as np
import pandas as pd

import plotstyle
from components import FDR, RANDOM, enriched_fractions
from rule_io import setup_logging


def _colour(model: str) -> str:
    """The method's colour (methods.py); the null grey."""
    return "0.75" if model == RANDOM else plotstyle.method_colour(model.split(" ")[0])


def plot_components(summary: pd.DataFrame, stability: pd.DataFrame, enrichment: pd.DataFrame, *, dataset: str,
                    pdf, png) -> None:
    import matplotlib.pyplot as plt

    plotstyle.apply()
    models = list(summary["model"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(plotstyle.DOUBLE_COLUMN, 0.3 + 0.17 * len(models)),
                                      layout="constrained", sharey=True)
    rng = np.random.default_rng(0)
    for y, model in enumerate(models):
        colour = _colour(model)
        pairs = stability.loc[stability["model"] == model, "median_matched_r"].to_numpy()
        left.scatter(pairs, y + rng.uniform(-0.15, 0.15, len(pairs)), s=5, color=colour, alpha=0.6, lw=0)
        if len(pairs):
            left.plot([np.median(pairs)] * 2, [y - 0.3, y + 0.3], color="black", lw=1.2)
        e = enrichment[enrichment["model"] == model]
        row = summary[summary["model"] == model].iloc[0]
        if len(e):
            per_seed = enriched_fractions(e, int(row["components"]))
            right.scatter(per_seed, y + rng.uniform(-0.15, 0.15, len(per_seed)), s=5, color=colour, alpha=0.6, lw=0)
            sd = row["enriched_fraction_sd"] if np.isfinite(row["enriched_fraction_sd"]) else 0
            right.errorbar([row["enriched_fraction"]], [y], xerr=[sd], fmt="D", ms=4, color=colour, mec="black",
                           mew=0.5, ecolor="black", elinewidth=0.8, capsize=0)
    names = summary["gene_names"].iloc[0] if "gene_names" in summary else "as is"
    if names == "none":
        right.text(0.5, 0.5, "no gene names in this dataset:\nno enrichment", transform=right.transAxes,
                   ha="center", va="center", fontsize=7, color="0.4")
    left.set_yticks(range(len(models)), models)
    left.set_ylim(len(models) - 0.5, -0.5)
    left.set_xlim(0, 1.02)
    right.set_xlim(-0.02, 1.02)
    n_seeds = int(summary["seeds"].max()) if len(summary) else 0
    fewer = summary[summary["seeds"] < n_seeds] if len(summary) else summary
    fewer_text = "; " + ", ".join(f"{m}: {int(n)}" for m, n in zip(fewer["model"], fewer["seeds"])) if len(fewer) else ""
    left.set_xlabel("Median matched |r| between two seeds' components")
    left.set_title("Stability across training seeds\n(Hungarian matching on |r|; bar: median over seed pairs)")
    right.set_xlabel(f"Fraction of components enriched (FDR < {FDR:.0%})")
    right.set_title(f"Hallmark gene sets in each component's top genes\n(mean ± s.d. over {n_seeds} seeds{fewer_text}"
                    + (f"; genes: {names})" if names not in ("as is", "none") else ")"))
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(length=2)
    fig.suptitle(f"{dataset}: what the components mean ({RANDOM}: what chance gives)")
    plotstyle.save(fig, pdf, png)


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    plot_components(pd.read_csv(snakemake.input.summary, sep="\t"), pd.read_csv(snakemake.input.stability, sep="\t"),
                    pd.read_csv(snakemake.input.enrichment, sep="\t"), dataset=snakemake.wildcards.dataset,
                    pdf=snakemake.output.pdf, png=snakemake.output.png)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
