"""Figure: training of the iVAE and its controls, and whether it converged.

One panel per model for its own objective (the total loss: the models minimise different
objectives, so they are never overlaid): the training cells' loss per epoch (solid) and the
held-out cells' (dashed), the epoch whose model was kept marked. One panel of a quantity
all models share: the held-out cells' negative-binomial NLL reconstructed from z (and for
the iVAE, through the interpretative module), the comparable measure of fit.
"""


import numpy as np
import pandas as pd

import plotstyle
from rule_io import log, setup_logging


def _kept_epoch(frame: pd.DataFrame):
    if "selected" in frame and frame["selected"].astype(bool).any():
        return int(frame.loc[frame["selected"].astype(bool), "epoch"].iloc[-1])
    return None


def _style(ax, ylabel):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.25 on a 2-epoch run
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.tick_params(length=2, which="both")
    ax.spines[["top", "right"]].set_visible(False)


def plot_training_curves(logs: dict, *, dataset: str, pdf, png, irecon: dict | None = None,
                         colours: dict | None = None) -> list:
    """``logs``: model name -> training_log.tsv frame; ``irecon``: model name -> its irecon
    weight (to undo the weighting of the module's NLL); ``colours``: model name -> colour.
    Returns the panel titles drawn."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    irecon = irecon or {}
    n = len(logs) + 1
    ncols = n if n <= 4 else 3  # more models: rows of three panels, each wide enough to read
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(plotstyle.DOUBLE_COLUMN, plotstyle.DOUBLE_COLUMN * 0.3 * nrows),
                             layout="constrained", squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes = axes[:n]
    titles = []
    for ax, (name, frame) in zip(axes, logs.items()):
        colour = plotstyle.method_colour(name, colours)
        ax.plot(frame["epoch"], frame["loss"], color=colour, lw=1.0, label="training cells")
        if "val_loss" in frame:
            ax.plot(frame["epoch"], frame["val_loss"], color=colour, lw=1.0, ls="--", label="held-out cells")
        kept = _kept_epoch(frame)
        if kept is not None:
            ax.axvline(kept, color="0.4", lw=0.6, ls=":")
            ax.annotate(f"kept: epoch {kept}", (kept, 0.0), xycoords=("data", "axes fraction"), fontsize=5,
                        ha="right", va="bottom", rotation=90, xytext=(-1.5, 2), textcoords="offset points")
        values = frame[[c for c in ("loss", "val_loss") if c in frame]].to_numpy(dtype=float)
        low, high = np.nanpercentile(values, [0, 95])
        ax.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low))  # the first epochs' losses run off
        ax.set_title(f"{name}: its objective")
        _style(ax, "Loss per cell")
        ax.legend(frameon=False, loc="upper right", fontsize=5)
        titles.append(f"{name}: its objective")

    ax = axes[-1]
    for name, frame in logs.items():
        if "val_recon" not in frame:
            continue
        colour = plotstyle.method_colour(name, colours)
        ax.plot(frame["epoch"], frame["val_recon"], color=colour, lw=1.0, label=f"{name}, from z")
        weight = irecon.get(name, 0.0)
        if weight > 0 and "val_irecon" in frame:
            ax.plot(frame["epoch"], frame["val_irecon"] / weight, color=colour, lw=1.0, ls="--",
                    label=f"{name}, through the module")
    if ax.lines:
        values = np.concatenate([line.get_ydata() for line in ax.lines])
        low, high = np.nanpercentile(values, [0, 95])
        ax.set_ylim(low - 0.05 * (high - low), high + 0.1 * (high - low))
        ax.legend(frameon=False, loc="upper right", fontsize=5)
    ax.set_title("Held-out reconstruction (all models)")
    _style(ax, "NB negative log-likelihood per cell")
    titles.append("Held-out reconstruction (all models)")
    fig.suptitle(f"{dataset}: training (means over each epoch; the loss's terms weighted as in each objective)")
    plotstyle.save(fig, pdf, png)
    return titles


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    logs = {name: pd.read_csv(path, sep="\t")
            for name, path in zip(snakemake.params.methods, snakemake.input, strict=True)}
    titles = plot_training_curves(logs, dataset=snakemake.wildcards.dataset, pdf=snakemake.output.pdf,
                                  png=snakemake.output.png, irecon=dict(snakemake.params.irecon),
                                  colours=snakemake.params.colours)
    log.info("drew %s", "; ".join(titles))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
