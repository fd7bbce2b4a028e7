"""Figure: the genes of each component (component_genes.tsv).

Two heatmaps sharing their rows: for every latent component (z1, z2, ...) and every
interpretative component (i1, i2, ...), its ``n_top`` genes by decoder response (|log2 fold
change| of the decoded expression between the component's 10th and 90th percentile, the
others at their median; counts per 10,000 with a pseudocount of 1), grouped by component. Left: that decoder response of each of
those genes to every component; right: the gene's correlation with every component across
cells. A gene heading several components is drawn once among the latent ones and once among
the interpretative ones.
"""

import numpy as np
import pandas as pd

import plotstyle
from rule_io import log, setup_logging


def column_names(table: pd.DataFrame) -> list[tuple[str, int, str]]:
    """(space, component, label) of every component: z1.. for the latent, i1.. for the module's."""
    pairs = table[["space", "component"]].drop_duplicates()
    prefix = {"latent": "z", "interpretative": "i"}
    return [(s, int(c), f"{prefix.get(s, s)}{int(c)}") for s, c in pairs.itertuples(index=False)]


def top_genes(table: pd.DataFrame, n_top: int) -> list[tuple[str, str]]:
    """(gene, column label) rows: each component's n_top genes by decoder response, in order;
    a gene heading several latent (or several interpretative) components appears once per space."""
    rows, seen = [], set()
    for space, component, label in column_names(table):
        part = table[(table["space"] == space) & (table["component"] == component)]
        for gene in part.nsmallest(n_top, "rank_log2fc")["gene"]:
            if (space, gene) not in seen:
                seen.add((space, gene))
                rows.append((gene, label))
    return rows


def plot_component_genes(table: pd.DataFrame, *, dataset: str, pdf, png, n_top: int = 3) -> list:
    """Draw the two heatmaps; return the (gene, component) rows drawn."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    columns = column_names(table)
    rows = top_genes(table, n_top)
    index = {(s, c): i for i, (s, c, _) in enumerate(columns)}
    values = {key: np.full((len(rows), len(columns)), np.nan) for key in ("log2fc", "correlation")}
    by_gene = table.set_index("gene")
    for i, (gene, _) in enumerate(rows):
        for record in by_gene.loc[[gene]].itertuples():
            j = index[(record.space, record.component)]
            values["log2fc"][i, j], values["correlation"][i, j] = record.log2fc, record.correlation
    height = max(2.5, 0.12 * len(rows) + 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(plotstyle.DOUBLE_COLUMN, height), layout="constrained", sharey=True)
    limit_fc = np.nanmax(np.abs(values["log2fc"])) or 1.0
    for ax, key, vmax, label in ((axes[0], "log2fc", limit_fc, "Decoder response: log2 fold change of\n"
                                  "counts per 10k + 1, 90th vs 10th percentile"),
                                 (axes[1], "correlation", 1.0, "Correlation with expression\nacross cells (r)")):
        image = ax.imshow(values[key], cmap=plotstyle.DIVERGING, vmin=-vmax, vmax=vmax, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(len(columns)), [c[2] for c in columns])
        ax.set_xlabel("Component (z: latent, i: interpretative)")
        ax.axvline(sum(c[0] == "latent" for c in columns) - 0.5, color="black", lw=0.8)
        for i in range(1, len(rows)):
            if rows[i][1] != rows[i - 1][1]:
                ax.axhline(i - 0.5, color="white", lw=0.6)
        cbar = fig.colorbar(image, ax=ax, shrink=0.6, aspect=25, pad=0.02)
        cbar.set_label(label, fontsize=6)
        cbar.ax.tick_params(length=2)
        ax.tick_params(length=2)
    axes[0].set_yticks(range(len(rows)), [f"{g} ({c})" for g, c in rows], fontsize=max(3.5, min(6, 300 / len(rows))))
    axes[0].set_ylabel(f"Top {n_top} genes of each component by decoder response")
    fig.suptitle(f"{dataset}: what each component means in genes")
    plotstyle.save(fig, pdf, png)
    return rows


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = pd.read_csv(snakemake.input[0], sep="\t", dtype={"gene": str}, keep_default_na=False, na_values=[""])
    rows = plot_component_genes(table, dataset=snakemake.wildcards.dataset, pdf=snakemake.output.pdf,
                                png=snakemake.output.png)
    log.info("drew %d genes", len(rows))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
