"""Figure: clustering metrics and correlation scores of the iVAE, the VAE and baselines.

One small panel per metric of ``metrics.tsv`` (NMI, ARI, ASW, CH, DB, corr_score), one
horizontal bar per method; the iVAE and the VAE in colour, the linear baselines (PCA,
ICA, NMF, FA) in grey. Each panel says which direction is better; the figure title says
what the clusterings were compared against (``reference``).
"""


import numpy as np
import pandas as pd

import plotstyle
from common_io import log, setup_logging

#: (metric, long name, direction note) in panel order.
METRICS = [
    ("NMI", "Normalised mutual information", "higher is better"),
    ("ARI", "Adjusted Rand index", "higher is better"),
    ("ASW", "Average silhouette width", "higher is better"),
    ("CH", "Calinski\u2013Harabasz index", "higher is better"),
    ("DB", "Davies\u2013Bouldin index", "lower is better"),
    ("corr_score", "Correlation score", "iVAE paper's correlation score"),
]
REFERENCES = {
    "labels": "against cell-type labels",
    "clusters": "against Leiden clusters of the log-normalised data",
}


def _format(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-2):
        return f"{value:.1e}".replace("e-0", "e\u2212").replace("e+0", "e").replace("e-", "e\u2212")
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def plot_metrics(table: pd.DataFrame, *, dataset: str, pdf, png) -> list:
    """Bar chart per metric (one bar per method); return the metrics drawn."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    table = table.reset_index(drop=True) if "method" in table.columns else table.rename_axis("method").reset_index()
    methods = table["method"].astype(str).tolist()
    drawn = [m for m in METRICS if m[0] in table.columns]
    if not drawn:
        raise ValueError(f"{dataset}: the metrics table has none of {[m[0] for m in METRICS]}.")
    colours = [plotstyle.MODEL_COLORS.get(m, plotstyle.BASELINE_GREY) for m in methods]
    ncols = 3
    nrows = int(np.ceil(len(drawn) / ncols))
    width = plotstyle.DOUBLE_COLUMN
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, width * (0.23 + 0.03 * len(methods) / 6) * nrows),
                             layout="constrained", squeeze=False)
    y = np.arange(len(methods))
    for k, (ax, (metric, long_name, note)) in enumerate(zip(axes.flat, drawn)):
        values = pd.to_numeric(table[metric], errors="coerce").to_numpy(dtype=float)
        finite = np.where(np.isfinite(values), values, 0.0)
        ax.barh(y, finite, color=colours, height=0.7)
        span = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
        span = span if span > 0 else 1.0
        for yi, value, shown in zip(y, values, finite):
            ax.text(shown + 0.02 * span if shown >= 0 else shown - 0.02 * span, yi, _format(value),
                    va="center", ha="left" if shown >= 0 else "right", fontsize=5.5)
        low = min(0.0, np.nanmin(values) if np.isfinite(values).any() else 0.0)
        ax.set_xlim(low * 1.3 if low < 0 else 0, span * 1.3)
        ax.set_yticks(y, methods)
        ax.invert_yaxis()
        ax.set_xlabel(long_name if metric != "corr_score" else "corr_score")
        if k % ncols == 0:
            ax.set_ylabel("Method")
        ax.set_title(f"{metric}\n({note})")
        ax.axvline(0, color="black", lw=0.5)
        ax.tick_params(length=2)
        ax.spines[["top", "right"]].set_visible(False)
        for label, colour in zip(ax.get_yticklabels(), colours):
            if colour != plotstyle.BASELINE_GREY:
                label.set_fontweight("bold")
    for ax in axes.flat[len(drawn):]:
        ax.set_visible(False)
    references = table["reference"].dropna().astype(str).unique() if "reference" in table else []
    against = "; ".join(REFERENCES.get(r, f"against {r}") for r in references)
    fig.suptitle(f"{dataset}: embeddings compared {against}" if against else f"{dataset}: embedding metrics")
    plotstyle.save(fig, pdf, png)
    return [m[0] for m in drawn]


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = pd.read_csv(snakemake.input.tsv, sep="\t")
    metrics = plot_metrics(table, dataset=snakemake.wildcards.dataset,
                           pdf=snakemake.output.pdf, png=snakemake.output.png)
    log.info("drew %s for %s", ", ".join(metrics), ", ".join(table["method"].astype(str)))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
