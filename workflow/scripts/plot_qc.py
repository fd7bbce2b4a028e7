"""Figure: quality control of one dataset, every input cell, with the thresholds applied.

Top row: histograms of total counts and detected genes (log10 axes), mitochondrial %, and
where they were used the % of counts in the top 20 genes (``qc: mad``) and the Scrublet
doublet score (``doublets: scrublet``); kept and removed cells stacked in two colours, each
threshold a dashed line. Bottom row: total counts against detected genes, removed cells in
colour, and how many cells each reason removed.
"""

import numpy as np
import pandas as pd

import plotstyle
from cell_table import read_cell_table
from rule_io import log, setup_logging
from qc import TOP_COLUMN

KEPT, REMOVED = plotstyle.OKABE_ITO[4], plotstyle.OKABE_ITO[5]
#: (column, axis label, log10 x axis) of the histogram panels, in order.
HISTOGRAMS = [
    ("total_counts", "Total counts (UMIs) per cell", True),
    ("n_genes_by_counts", "Detected genes per cell", True),
    ("pct_counts_mt", "Mitochondrial counts (%)", False),
    (TOP_COLUMN, "Counts in the top 20 genes (%)", False),
    ("doublet_score", "Scrublet doublet score", False),
]


def _bins(values: np.ndarray, log10: bool) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if log10:
        finite = finite[finite > 0]
        low, high = (finite.min(), finite.max()) if finite.size else (1.0, 10.0)
        return np.logspace(np.log10(low), np.log10(high) + 1e-9, 60)
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    return np.linspace(low, high + 1e-9 if high > low else low + 1, 60)


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.3g}"


def _log_axis(axis) -> None:
    """Log axis ticks as plain numbers (1,000 not 10^3) at 1, 2 and 5 of each decade."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _label(v)))
    axis.set_minor_formatter(NullFormatter())


def _histogram(ax, table, column, label, log10, bounds):
    """Kept and removed cells stacked (counts on a log axis, so that a few removed cells
    show), each bound of ``column`` a dashed line labelled with its value."""
    values = table[column].to_numpy(dtype=float)
    kept = (table["qc_fail"].fillna("") == "").to_numpy()
    ax.set_xlabel(label)
    ax.spines[["top", "right"]].set_visible(False)
    if np.nanmax(values, initial=0) == 0:  # e.g. no gene matched the mitochondrial prefix
        ax.text(0.5, 0.5, "0 for every cell", transform=ax.transAxes, ha="center", va="center", color="0.35")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("no threshold", fontsize=6)
        return
    ax.hist([values[kept], values[~kept]], bins=_bins(values, log10), stacked=True, color=[KEPT, REMOVED], lw=0)
    ax.set_yscale("log")
    if log10:
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
    rows = bounds[bounds["metric"] == column]
    for row in rows.itertuples(index=False):
        for value in (row.lower, row.upper):
            if np.isfinite(value):
                ax.axvline(value, color="black", lw=0.8, ls="--")
                ax.annotate(_label(value), (value, 1.0), xycoords=("data", "axes fraction"), fontsize=5.5,
                            ha="left", va="top", rotation=90, xytext=(1.5, -2), textcoords="offset points")
    drawn = rows[np.isfinite(rows[["lower", "upper"]]).any(axis=1)]
    ax.set_title(drawn["basis"].iloc[0] if len(drawn) else "no threshold", fontsize=6)
    ax.set_ylabel("Cells")
    ax.tick_params(length=2, which="both")
    ax.tick_params(axis="x", labelrotation=45)


def plot_qc(table: pd.DataFrame, bounds: pd.DataFrame, *, dataset: str, pdf, png) -> list:
    """Draw the QC figure (see the module doc); return the metric columns drawn."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    plotstyle.apply()
    drawn = [h for h in HISTOGRAMS if h[0] in table and table[h[0]].notna().any()]
    n = len(drawn)  # 3 to 5 histograms on top; the scatter and the reasons share the bottom row
    wide = (n + 1) // 2
    mosaic = [[f"h{i}" for i in range(n)], ["scatter"] * wide + ["reasons"] * (n - wide)]
    fig, axes = plt.subplot_mosaic(mosaic, figsize=(plotstyle.DOUBLE_COLUMN, plotstyle.DOUBLE_COLUMN * 0.6),
                                   layout="constrained")
    for i, (column, label, log10) in enumerate(drawn):
        _histogram(axes[f"h{i}"], table, column, label, log10, bounds)

    ax = axes["scatter"]
    kept = (table["qc_fail"].fillna("") == "").to_numpy()
    perm = np.random.default_rng(0).permutation(len(table))
    colours = np.where(kept, KEPT, REMOVED)[perm]
    ax.scatter(table["total_counts"].to_numpy()[perm], table["n_genes_by_counts"].to_numpy()[perm], c=colours,
               s=float(np.clip(3000 / max(len(table), 1), 0.2, 4)), lw=0, rasterized=True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.xaxis)
    _log_axis(ax.yaxis)
    ax.set_xlabel("Total counts (UMIs)")
    ax.set_ylabel("Detected genes")
    ax.set_title("Each cell")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(handles=[Patch(color=KEPT, label=f"kept ({kept.sum():,})"),
                       Patch(color=REMOVED, label=f"removed ({(~kept).sum():,})")], frameon=False, loc="upper left")

    ax = axes["reasons"]
    reasons = table["qc_fail"].fillna("").astype(str)
    counts = reasons[reasons != ""].str.split("; ").explode().value_counts()
    if len(counts):
        y = np.arange(len(counts))
        ax.barh(y, counts.to_numpy(), color=REMOVED)
        ax.set_yticks(y, [name.replace("pct_counts_in_top_20_genes", "top-20 %") for name in counts.index])
        ax.invert_yaxis()
        for yi, value in zip(y, counts.to_numpy()):
            ax.text(value, yi, f" {value:,}", va="center", fontsize=5.5)
        ax.set_xlim(0, counts.max() * 1.3)
    else:
        ax.text(0.5, 0.5, "no cell removed", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("Cells failing (a cell can fail several)")
    ax.set_title("Reasons for removal")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(length=2)

    fig.suptitle(f"{dataset}: quality control of {len(table):,} cells, {kept.sum():,} kept "
                 "(dashed lines: thresholds, each panel titled with how it was set)")
    plotstyle.save(fig, pdf, png)
    return [h[0] for h in drawn]


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = read_cell_table(snakemake.input.qc)
    numeric = [c for c in table.columns if c not in ("qc_fail", "predicted_doublet")]
    table[numeric] = table[numeric].apply(pd.to_numeric)
    bounds = pd.read_csv(snakemake.input.bounds, sep="\t")
    drawn = plot_qc(table, bounds, dataset=snakemake.wildcards.dataset, pdf=snakemake.output.pdf,
                    png=snakemake.output.png)
    log.info("drew %s for %d cells", ", ".join(drawn), len(table))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
