"""Figure: correlation between latent components before and after the interpretative module.

Left, the posterior-mean latent z (``X_ivae``); middle, the latent after the module,
ld = latent_decoder(latent_encoder(z)) (``X_ivae_ld``). Both matrices use the same
component order and one colour scale, and are titled with their mean |off-diagonal r|.
Right, the distribution of |r| over the d(d-1)/2 unique component pairs, before and after.
"""


import numpy as np

import plotstyle
from common_io import log, setup_logging


def correlation_matrix(x: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns of ``x`` (cells x components).

    A constant column has no defined correlation: its row and column are NaN (the
    diagonal stays 1), rather than a division-by-zero warning.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    norm = np.sqrt((centred**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (centred.T @ centred) / np.outer(norm, norm)
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return corr


def mean_abs_offdiagonal(corr: np.ndarray) -> float:
    """Mean |r| over the off-diagonal entries, ignoring undefined (NaN) ones."""
    off = corr[~np.eye(corr.shape[0], dtype=bool)]
    return float(np.nanmean(np.abs(off))) if off.size else float("nan")


def offdiagonal_pairs(corr: np.ndarray) -> np.ndarray:
    """|r| of the d(d-1)/2 unique component pairs (upper triangle), undefined ones dropped."""
    values = np.abs(corr[np.triu_indices(corr.shape[0], k=1)])
    return values[np.isfinite(values)]


def plot_latent_correlation(latent: np.ndarray, after: np.ndarray, *, dataset: str, pdf: str, png: str) -> dict:
    """Draw the two correlation matrices and the distribution of their off-diagonal |r|.

    Returns the mean |off-diagonal r| of each matrix: ``{"before": ..., "after": ...}``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

    plotstyle.apply()
    panels = [
        ("Before the interpretative module", "latent mean z", correlation_matrix(latent)),
        ("After the interpretative module", "decoded latent ld", correlation_matrix(after)),
    ]
    n = latent.shape[1]
    fig, axes = plt.subplots(
        1, 3, figsize=(plotstyle.DOUBLE_COLUMN, plotstyle.DOUBLE_COLUMN * 0.36), layout="constrained",
        gridspec_kw={"width_ratios": [1, 1, 0.9]},
    )
    cmap = plt.get_cmap(plotstyle.DIVERGING).with_extremes(bad="0.85")  # grey: undefined r
    scores = {}
    ticks = np.arange(n)
    labels = [str(i + 1) for i in ticks]
    annotate = n <= 12
    for ax, (title, name, corr), key in zip(axes[:2], panels, ("before", "after")):
        score = mean_abs_offdiagonal(corr)
        scores[key] = score
        image = ax.imshow(np.ma.masked_invalid(corr), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\nmean |off-diagonal r| = {score:.2f}")
        ax.set_xticks(ticks, labels if n <= 30 else [lab if i % 5 == 4 else "" for i, lab in enumerate(labels)])
        ax.set_yticks(ticks, labels if n <= 30 else [lab if i % 5 == 4 else "" for i, lab in enumerate(labels)])
        ax.set_xlabel(f"Component of {name}")
        ax.set_ylabel(f"Component of {name}")
        ax.tick_params(length=2)
        if annotate:
            for i in range(n):
                for j in range(n):
                    if np.isfinite(corr[i, j]):
                        ax.text(j, i, f"{corr[i, j]:.2f}".replace("0.", ".").replace("-.", "\u2212."),
                                ha="center", va="center", fontsize=4.5,
                                color="white" if abs(corr[i, j]) > 0.6 else "black")
    cbar = fig.colorbar(image, ax=axes[:2], shrink=0.85, aspect=25, pad=0.02)
    cbar.set_label("Pearson correlation r")
    cbar.ax.tick_params(length=2)

    # Companion panel: the same d(d-1)/2 pairs before and after, as overlaid histograms.
    ax = axes[2]
    bins = np.linspace(0, 1, 21)
    top = 0
    handles = []
    for (title, name, corr), key, colour in zip(panels, ("before", "after"), plotstyle.BEFORE_AFTER):
        values = offdiagonal_pairs(corr)
        label = f"{'Before' if key == 'before' else 'After'} ({name.split()[-1]}), mean {scores[key]:.2f}"
        counts, _, _ = ax.hist(values, bins=bins, histtype="stepfilled", color=colour, alpha=0.35, lw=0)
        ax.hist(values, bins=bins, histtype="step", color=colour, lw=1.0)
        handles.append(Patch(facecolor=to_rgba(colour, 0.35), edgecolor=colour, lw=1.0, label=label))
        top = max(top, counts.max(initial=0))
        if np.isfinite(scores[key]):
            ax.axvline(scores[key], color=colour, lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, top * 1.35 + 0.5)  # headroom for the legend
    ax.set_xlabel("|Pearson r| between two components")
    ax.set_ylabel(f"Component pairs (of {n * (n - 1) // 2})")
    ax.set_title("Off-diagonal |r|, unique pairs\n(dashed: mean)")
    ax.legend(handles=handles, loc="upper center", frameon=False, handlelength=1.2, borderaxespad=0.2)
    ax.tick_params(length=2)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_box_aspect(1)

    fig.suptitle(f"{dataset}: correlation between latent components (n = {latent.shape[0]:,} cells)")
    plotstyle.save(fig, pdf, png)
    return scores


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    emb = ad.read_h5ad(snakemake.input[0])
    scores = plot_latent_correlation(
        emb.obsm["X_ivae"], emb.obsm["X_ivae_ld"], dataset=snakemake.wildcards.dataset,
        pdf=snakemake.output.pdf, png=snakemake.output.png,
    )
    log.info("mean |off-diagonal r|: before %.3f, after %.3f", scores["before"], scores["after"])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
