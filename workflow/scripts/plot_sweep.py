"""Figure: the sweeps, one setting at a time.

``results/{dataset}/sweep/metrics.tsv`` holds one row per trained model and seed: the swept
methods are named ``key=value`` (e.g. ``irecon=0.5``, ``i_dim=4``); ``iVAE`` is the
dataset's own settings (where every sweep crosses) and ``VAE`` the plain VAE. One row of
panels per swept setting, one column per metric: mean ± s.d. over seeds against the
setting's values (evenly spaced, labelled), the dataset's value highlighted, and the VAE's
mean ± s.d. as a band.
"""

import numpy as np
import pandas as pd

import plotstyle
from rule_io import log, setup_logging
from methods import SWEPT

METRICS = ["ARI", "NMI", "ASW", "DB", "corr_score", "participation_ratio", "test_iwae_nll"]
BETTER = {"ARI": "higher is better", "NMI": "higher is better", "ASW": "higher is better", "DB": "lower is better",
          "corr_score": "higher: more correlated", "participation_ratio": "effective dimensions",
          "test_iwae_nll": "test NLL (IWAE), lower is better"}


def sweep_points(table: pd.DataFrame, defaults: dict) -> pd.DataFrame:
    """The iVAE runs as (setting, value) points: each swept method at its value, and the
    iVAE at the dataset's value of every setting."""
    rows = []
    for _, row in table.iterrows():
        swept = SWEPT.match(str(row["method"]))
        if swept:
            rows.append({**row, "setting": swept["key"], "value": float(swept["value"])})
        elif row["method"] == "iVAE":
            rows += [{**row, "setting": key, "value": float(value)} for key, value in defaults.items()]
    return pd.DataFrame(rows)


def plot_sweep(table: pd.DataFrame, *, defaults: dict, dataset: str, pdf, png) -> list:
    """Draw the sweep figure; return the settings drawn (rows)."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    points = sweep_points(table, defaults)
    settings = [k for k in defaults if k in set(points.get("setting", []))]
    if not settings:
        raise ValueError(f"{dataset}: the sweep table has no swept setting ({sorted(defaults)}).")
    metrics = [m for m in METRICS if m in table and pd.to_numeric(table[m], errors="coerce").notna().any()]
    vae = table[table["method"] == "VAE"]
    fig, axes = plt.subplots(len(settings), len(metrics), squeeze=False, layout="constrained",
                             figsize=(plotstyle.DOUBLE_COLUMN, plotstyle.DOUBLE_COLUMN * 0.23 * len(settings) + 0.3))
    for i, setting in enumerate(settings):
        part = points[points["setting"] == setting]
        grouped = part.groupby("value")
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            mean, sd = grouped[metric].mean(), grouped[metric].std(ddof=1).fillna(0.0)
            positions = np.arange(len(mean))
            if len(vae):
                v_mean, v_sd = vae[metric].mean(), (vae[metric].std(ddof=1) if len(vae) > 1 else 0.0)
                ax.axhspan(v_mean - v_sd, v_mean + v_sd, color=plotstyle.method_colour("VAE"), alpha=0.15, lw=0)
                ax.axhline(v_mean, color=plotstyle.method_colour("VAE"), lw=0.8)
            ax.errorbar(positions, mean.to_numpy(), yerr=sd.to_numpy(), marker="o", ms=2.5, lw=1, capsize=1.5,
                        color=plotstyle.method_colour("iVAE"))
            at_default = np.isclose(mean.index.to_numpy(), float(defaults[setting]))
            ax.scatter(positions[at_default], mean.to_numpy()[at_default], s=30, facecolor="none",
                       edgecolor="black", lw=0.8, zorder=3)
            ax.set_xticks(positions, [f"{v:g}" for v in mean.index], rotation=90)
            ax.set_xlabel(setting)
            if i == 0:
                ax.set_title(f"{metric}\n({BETTER[metric]})", fontsize=6)
            ax.tick_params(length=2)
            ax.spines[["top", "right"]].set_visible(False)
    n_seeds = table.groupby("method")["seed"].nunique().max()
    kind = table["reference"].dropna().iloc[0] if "reference" in table else "labels"
    against = "cell-type labels" if kind == "labels" else "Leiden clusters of the log-normalised data"
    fig.suptitle(f"{dataset}: one setting at a time (vermillion: iVAE, mean \u00b1 s.d. over {n_seeds} seeds; "
                 f"circled: the dataset's value;\nblue line and band: the VAE, irecon = 0); clustering against {against}",
                 fontsize=6.5)
    plotstyle.save(fig, pdf, png)
    return settings


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = pd.read_csv(snakemake.input.tsv, sep="\t")
    settings = plot_sweep(table, defaults=dict(snakemake.params.defaults), dataset=snakemake.wildcards.dataset,
                          pdf=snakemake.output.pdf, png=snakemake.output.png)
    log.info("drew %s", ", ".join(settings))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
