"""Figure: correlation between latent components before and after the interpretative module,
each against what chance or the architecture alone gives.

Left, the posterior-mean latent z (``X_ivae``); middle, the latent after the module,
ld = latent_decoder(latent_encoder(z)) (``X_ivae_ld``); same component order, one colour
scale, each titled with its mean |off-diagonal r|. Right, each observed mean |r| against
its null (correlation_nulls.py): for z, its components permuted independently across cells;
for ld, untrained modules of the same shape applied to the same z, and the best rank-i_dim
reconstruction of z. Below, the module's question across models (correlation_models.py):
the paired differences over seeds between the iVAE's z and each control's (VAE,
VAE-narrow, VAE-beta-matched, iVAE-stop-gradient), and between the iVAE's ld and the VAE's
z through its own untrained module; each seed a dot, the mean with its 95 % interval, the
equivalence margin shaded, the Holm-corrected verdict. The maths is in correlation.py and
correlation_models.py; this module only draws.
"""


import numpy as np
import pandas as pd

import plotstyle
from correlation import correlation_matrix, mean_abs_offdiagonal
from correlation_models import MARGIN
from rule_io import log, setup_logging

PANELS = {"before": ("Before the module", "z"), "after": ("After the module", "ld")}


def _matrix(ax, corr, title, name, cmap):
    n = corr.shape[0]
    image = ax.imshow(np.ma.masked_invalid(corr), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ticks = np.arange(n)
    labels = [str(i + 1) if n <= 30 or i % 5 == 4 else "" for i in ticks]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel(f"Component of {name}")
    ax.set_ylabel(f"Component of {name}")
    ax.set_title(f"{title}\nmean |off-diagonal r| = {mean_abs_offdiagonal(corr):.2f}")
    ax.tick_params(length=2)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if np.isfinite(corr[i, j]):
                    ax.text(j, i, f"{corr[i, j]:.2f}".replace("0.", ".").replace("-.", "\u2212."), ha="center",
                            va="center", fontsize=4.5, color="white" if abs(corr[i, j]) > 0.6 else "black")
    return image


def _nulls(ax, summary: pd.DataFrame, draws: pd.DataFrame, others: pd.DataFrame | None = None):
    """Each panel's null draws (grey points on a band over their 2.5-97.5 % range), the
    observed value (diamond; the other training seeds' as hollow diamonds) and, after the
    module, the best rank-i_dim projection of z."""
    from matplotlib.lines import Line2D

    rng = np.random.default_rng(0)
    for y, (panel, colour) in enumerate(zip(PANELS, plotstyle.BEFORE_AFTER)):
        values = draws.loc[draws["panel"] == panel, "value"].to_numpy()
        row = summary[summary["panel"] == panel].iloc[0]
        ax.plot([row["null_low"], row["null_high"]], [y, y], color="0.8", lw=9, solid_capstyle="butt", zorder=1)
        ax.scatter(values, y + rng.uniform(-0.1, 0.1, len(values)), s=2, color="0.45", lw=0, zorder=2,
                   rasterized=True)
        if np.isfinite(row.get("rank_i_dim", np.nan)):
            ax.plot([row["rank_i_dim"]] * 2, [y - 0.22, y + 0.22], color="black", lw=1.2, zorder=3)
        ax.scatter([row["observed"]], [y], marker="D", s=30, color=colour, edgecolor="black", lw=0.5, zorder=4)
        if others is not None and len(others):
            seeds = others.loc[others["panel"] == panel, "observed"]
            ax.scatter(seeds, [y] * len(seeds), marker="D", s=14, facecolor="none", edgecolor=colour, lw=0.7,
                       zorder=5)
        ax.annotate(f"observed {row['observed']:.2f}, null {row['null_mean']:.2f} "
                    f"[{row['null_low']:.2f}\u2013{row['null_high']:.2f}]: percentile {row['percentile']:.0f}",
                    (0.01, y + 0.3), xycoords=("axes fraction", "data"), fontsize=5, va="top")
    ax.set_yticks(range(len(PANELS)), [f"{PANELS[p][0]}\n(null: {'permuted' if p == 'before' else 'untrained'})"
                                       for p in PANELS])
    ax.set_ylim(len(PANELS) - 0.45, -0.45)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Mean |off-diagonal r|")
    ax.set_title("Observed vs what chance (z) and the\nmodule's architecture (ld) give")
    handles = [Line2D([], [], ls="", marker="D", ms=4, mfc="0.5", mec="black", label="observed"),
               Line2D([], [], ls="", marker="D", ms=3, mfc="none", mec="0.3", label="other training seeds"),
               Line2D([], [], ls="", marker="o", ms=2, color="0.45", label=f"null ({int(summary['n_draws'].iloc[0])} draws)"),
               Line2D([], [], color="0.8", lw=5, label="null 95 % range"),
               Line2D([], [], color="black", lw=1.2, label="best rank-i_dim\nprojection of z")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, frameon=False, fontsize=5)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(length=2)


def _row_label(row) -> str:
    if row.metric == "ld":
        return f"after: iVAE ld \u2212 {row.reference}'s\nuntrained module"
    return f"z: iVAE \u2212 {row.reference}"


def _models(ax, models: pd.DataFrame, tests: pd.DataFrame, margin: float):
    """The paired differences (iVAE minus a control) of mean |off-diagonal r|, one row per
    comparison of ``tests``: every seed's difference, the mean and its 95 % interval, the
    equivalence margin, the verdict."""
    wide = {metric: models.pivot(index="seed", columns="method", values=metric) for metric in ("z", "ld")}
    ax.axvspan(-margin, margin, color="0.92", zorder=0, lw=0)
    ax.axvline(0, color="0.5", lw=0.6, zorder=1)
    rng = np.random.default_rng(0)
    for y, row in enumerate(tests.itertuples()):
        colour = plotstyle.BEFORE_AFTER[0 if row.metric == "z" else 1]
        seeds = (wide[row.metric][row.method] - wide[row.metric][row.reference]).dropna()
        ax.scatter(seeds, y + rng.uniform(-0.12, 0.12, len(seeds)), s=6, color=colour, alpha=0.6, lw=0, zorder=2)
        if np.isfinite(row.low):
            ax.plot([row.low, row.high], [y, y], color="black", lw=1.0, zorder=3)
        ax.scatter([row.mean], [y], marker="D", s=22, color=colour, edgecolor="black", lw=0.5, zorder=4)
        ci = f"[{row.low:+.3f}, {row.high:+.3f}]" if np.isfinite(row.low) else "(one seed: no interval)"
        ax.annotate(f"{row.verdict}: {row.mean:+.3f} {ci}, n = {row.n}", (1.01, y), xycoords=("axes fraction", "data"),
                    fontsize=5.5, va="center")
    ax.set_yticks(range(len(tests)), [_row_label(r) for r in tests.itertuples()])
    ax.set_ylim(len(tests) - 0.5, -0.5)
    ax.set_xlabel("Difference in mean |off-diagonal r| (paired by seed)")
    ax.set_title(f"Does the module correlate z? iVAE minus each control, paired by seed (mean, 95 % interval; "
                 f"verdicts Holm-corrected over {len(tests)} tests; grey: equivalence margin \u00b1{margin:g})",
                 fontsize=6.5)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(length=2)


def plot_latent_correlation(latent: np.ndarray, after: np.ndarray, summary: pd.DataFrame, draws: pd.DataFrame, *,
                            dataset: str, pdf: str, png: str, others: pd.DataFrame | None = None,
                            models: pd.DataFrame | None = None, tests: pd.DataFrame | None = None,
                            margin: float = 0.05) -> dict:
    """Draw the figure for one model (``summary``/``draws``: its rows of the null tables;
    ``others``: the other training seeds' rows of the summary, drawn beside it); with
    ``models`` and ``tests`` (correlation_models.py's tables), the panel across models below.

    Returns the mean |off-diagonal r| of each matrix: ``{"before": ..., "after": ...}``.
    """
    import matplotlib.pyplot as plt

    plotstyle.apply()
    corrs = {"before": correlation_matrix(latent), "after": correlation_matrix(after)}
    across = tests is not None and len(tests) > 0
    top_height = plotstyle.DOUBLE_COLUMN * 0.36
    bottom_height = 0.45 + 0.28 * len(tests) if across else 0.0
    fig = plt.figure(figsize=(plotstyle.DOUBLE_COLUMN, top_height + bottom_height), layout="constrained")
    top, bottom = (fig.subfigures(2, 1, height_ratios=[top_height, bottom_height], hspace=0.02) if across
                   else (fig, None))
    axes = top.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25]})
    cmap = plt.get_cmap(plotstyle.DIVERGING).with_extremes(bad="0.85")  # grey: undefined r
    for ax, (key, (title, name)) in zip(axes[:2], PANELS.items()):
        image = _matrix(ax, corrs[key], title, name, cmap)
    cbar = top.colorbar(image, ax=axes[:2], shrink=0.85, aspect=25, pad=0.02)
    cbar.set_label("Pearson correlation r")
    cbar.ax.tick_params(length=2)
    _nulls(axes[2], summary, draws, others)
    if across:
        _models(bottom.subplots(), models, tests, margin)
    fig.suptitle(f"{dataset}: correlation between latent components (n = {latent.shape[0]:,} cells)")
    plotstyle.save(fig, pdf, png)
    return {key: mean_abs_offdiagonal(corr) for key, corr in corrs.items()}


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    emb = ad.read_h5ad(snakemake.input.embedding)
    seed = int(snakemake.params.seed)  # the main model's: correlation_nulls covers it
    summary = pd.read_csv(snakemake.input.nulls, sep="\t")
    draws = pd.read_csv(snakemake.input.draws, sep="\t")
    tests = pd.read_csv(snakemake.input.tests, sep="\t")
    scores = plot_latent_correlation(emb.obsm["X_ivae"], emb.obsm["X_ivae_ld"], summary[summary["seed"] == seed],
                                     draws[draws["seed"] == seed], dataset=snakemake.wildcards.dataset,
                                     pdf=snakemake.output.pdf, png=snakemake.output.png,
                                     others=summary[summary["seed"] != seed],
                                     models=pd.read_csv(snakemake.input.models, sep="\t"), tests=tests,
                                     margin=MARGIN)
    log.info("mean |off-diagonal r|: before %.3f, after %.3f", scores["before"], scores["after"])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
