"""Figure: training curves of the iVAE and the plain-VAE baseline.

One small panel per loss term of ``training_log.tsv`` (the columns after ``epoch`` and
``seconds``), x = epoch, one line per model. Terms are the means over each epoch's
batches, weighted as in the objective (e.g. ``irecon`` is irecon x the NLL through the
interpretative module, so it is 0 for the VAE trained with irecon = 0). Terms that are
zero throughout in every log are not drawn.
"""


import numpy as np
import pandas as pd

import plotstyle
from common_io import log, setup_logging

#: y-axis label of each known term (weights as in the objective).
TERM_LABELS = {
    "loss": "Total loss",
    "recon": "Reconstruction\n(NB NLL from z)",
    "irecon": "irecon \u00d7 NB NLL\n(through the module)",
    "kl": "beta \u00d7 KL",
    "dip": "dip \u00d7 DIP-VAE-II",
    "tc": "tc \u00d7 total correlation",
    "mmd": "info \u00d7 MMD",
}
NON_TERMS = ("epoch", "seconds")


def loss_terms(logs: dict) -> list:
    """Terms to draw: loss columns of any log, in log order, that are not zero throughout."""
    terms = []
    for frame in logs.values():
        for column in frame.columns:
            if column in NON_TERMS or column in terms:
                continue
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
            if np.any(np.isfinite(values) & (values != 0)):
                terms.append(column)  # non-zero in at least one log
    return terms


def _model_colour(name: str, i: int) -> str:
    for key, colour in plotstyle.MODEL_COLORS.items():
        if name.split()[0] == key:
            return colour
    return plotstyle.OKABE_ITO[i % len(plotstyle.OKABE_ITO)]


def plot_training_curves(logs: dict, *, dataset: str, pdf, png) -> list:
    """Draw one panel per non-zero loss term, one line per model; return the terms drawn."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    terms = loss_terms(logs)
    if not terms:
        raise ValueError(f"{dataset}: no non-zero loss term in the training logs.")
    ncols = min(len(terms), 4)
    nrows = int(np.ceil(len(terms) / ncols))
    width = plotstyle.DOUBLE_COLUMN
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, width * 0.27 * nrows + 0.25), layout="constrained",
                             squeeze=False)
    handles = {}
    for ax, term in zip(axes.flat, terms):
        absent = []
        values_all = []
        for i, (name, frame) in enumerate(logs.items()):
            if term not in frame:
                absent.append(name)
                continue
            values = pd.to_numeric(frame[term], errors="coerce").to_numpy(dtype=float)
            if not np.any(np.isfinite(values) & (values != 0)):
                absent.append(name)
                continue
            (line,) = ax.plot(frame["epoch"], values, color=_model_colour(name, i), lw=1.0, label=name)
            handles.setdefault(name, line)
            values_all.append(values[np.isfinite(values)])
        values_all = np.concatenate(values_all)
        if values_all.size and values_all.min() > 0 and values_all.max() / values_all.min() > 20:
            ax.set_yscale("log")  # terms that fall by orders of magnitude
        if absent:
            ax.text(0.97, 0.95, "0 throughout for\n" + "\n".join(absent), transform=ax.transAxes,
                    ha="right", va="top", fontsize=5.5, color="0.35")
        ax.set_title(term)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(TERM_LABELS.get(term, term))
        ax.tick_params(length=2, which="both")
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes.flat[len(terms):]:
        ax.set_visible(False)
    fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(f"{dataset}: training curves (means over each epoch's batches; terms weighted as in the objective)")
    plotstyle.save(fig, pdf, png)
    return terms


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    logs = {
        "iVAE": pd.read_csv(snakemake.input.ivae, sep="\t"),
        "VAE (irecon = 0)": pd.read_csv(snakemake.input.vae, sep="\t"),
    }
    terms = plot_training_curves(logs, dataset=snakemake.wildcards.dataset,
                                 pdf=snakemake.output.pdf, png=snakemake.output.png)
    log.info("drew %s", ", ".join(terms))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
