"""Figure: every metric of every model, mean ± s.d. over training seeds with each seed's value.

One small panel per metric of ``metrics.tsv`` (rows: method x seed). Trained models (the
iVAE, its controls, regularised VAEs) are bars of the mean over seeds with an s.d. error
bar and one dot per seed; the linear baselines (PCA, ICA, NMF, FA), fitted once per
training seed (their own randomness: ICA, NMF and FA's starts), are grey bars. Each panel
says which direction is better where one is
(none for the correlation score and the participation ratio, which describe the latent);
the title says what the clusterings were compared against.
"""


import numpy as np
import pandas as pd

import plotstyle
from rule_io import log, setup_logging
from methods import BASELINES

#: (metric, axis label, panel note) in panel order; the note says which direction is better.
METRICS = [
    ("ARI", "Adjusted Rand index", "higher is better"),
    ("NMI", "Normalised mutual information", "higher is better"),
    ("ASW", "Label silhouette, (s + 1) / 2", "higher is better"),
    ("CH", "Calinski\u2013Harabasz (reference)", "higher is better"),
    ("DB", "Davies\u2013Bouldin (reference)", "lower is better"),
    ("ASW_kmeans", "Silhouette of own KMeans", "paper's variant"),
    ("CH_kmeans", "Calinski\u2013Harabasz (own KMeans)", "paper's variant"),
    ("DB_kmeans", "Davies\u2013Bouldin (own KMeans)", "paper's variant; lower"),
    ("corr_score", "Correlation score", "higher: more correlated"),
    ("participation_ratio", "Participation ratio", "effective dimensions"),
    ("test_iwae_nll", "Test cells' NLL (IWAE bound, nats)", "lower is better"),
    ("batch_ASW", "Batch ASW within cell types", "higher: better mixed"),
    ("graph_connectivity", "kNN graph connectivity", "higher: better mixed"),
    ("batch_entropy", "kNN batch entropy", "higher: better mixed"),
]
REFERENCES = {
    "labels": "against the dataset's cell-type labels",
    "clusters": "against Leiden clusters of the log-normalised genes (no labels: this reference "
                "is built from the same genes as PCA and favours the linear baselines)",
}


def _format(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.2g}"


def plot_metrics(table: pd.DataFrame, *, dataset: str, pdf, png, colours: dict | None = None) -> list:
    """Draw one panel per metric present (and not all missing; ``colours``: method ->
    colour); return the metrics drawn."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    methods = list(dict.fromkeys(table["method"].astype(str)))
    drawn = [m for m in METRICS if m[0] in table and pd.to_numeric(table[m[0]], errors="coerce").notna().any()]
    if not drawn:
        raise ValueError(f"{dataset}: the metrics table has none of {[m[0] for m in METRICS]}.")
    ncols = 4
    nrows = int(np.ceil(len(drawn) / ncols))
    width = plotstyle.DOUBLE_COLUMN
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, width * (0.2 + 0.025 * len(methods)) * nrows),
                             layout="constrained", squeeze=False)
    y = np.arange(len(methods))
    rng = np.random.default_rng(0)
    for k, (ax, (metric, label, note)) in enumerate(zip(axes.flat, drawn)):
        values = {m: pd.to_numeric(table.loc[table["method"] == m, metric], errors="coerce").dropna().to_numpy()
                  for m in methods}
        means = np.array([v.mean() if len(v) else np.nan for v in values.values()])
        sds = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values.values()])
        bar_colours = [plotstyle.method_colour(m, colours) for m in methods]
        ax.barh(y, np.nan_to_num(means), xerr=sds, color=bar_colours, height=0.65, error_kw={"lw": 0.7, "capsize": 1.5})
        for yi, m in zip(y, methods):
            if len(values[m]) > 1:
                ax.scatter(values[m], yi + rng.uniform(-0.15, 0.15, len(values[m])), s=4, color="black", lw=0,
                           zorder=3)
        finite = np.concatenate([v for v in values.values() if len(v)] or [np.zeros(1)])
        span = max(np.nanmax(np.abs(finite)), 1e-12)
        for yi, mean, sd in zip(y, means, sds):
            if np.isfinite(mean):
                text = _format(mean) + (f" \u00b1 {_format(sd)}" if sd > 0 else "")
                ax.text(max(mean, 0) + sd + 0.03 * span, yi, text, va="center", ha="left", fontsize=5)
        low = min(0.0, np.nanmin(finite))
        ax.set_xlim(low * 1.3 if low < 0 else 0, span * 1.55)
        ax.set_yticks(y, methods)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.set_title(f"{metric}\n({note})")
        ax.axvline(0, color="black", lw=0.5)
        ax.tick_params(length=2)
        ax.spines[["top", "right"]].set_visible(False)
        if k % ncols:
            ax.set_yticklabels([])
    for ax in axes.flat[len(drawn):]:
        ax.set_visible(False)
    references = table["reference"].dropna().astype(str).unique()
    against = "; ".join(REFERENCES.get(r, f"against {r}") for r in references)
    fig.suptitle(f"{dataset}: models and baselines {against}.\n{seeds_caption(table)}; grey: linear baselines, "
                 "one fit per training seed", fontsize=6.5)
    plotstyle.save(fig, pdf, png)
    return [m[0] for m in drawn]


def seeds_caption(table: pd.DataFrame) -> str:
    """What the trained models' bars are: mean ± s.d. over their seeds, or one seed's value
    (no s.d. exists then, and the caption says so rather than "over 1 training seeds")."""
    n_seeds = table[~table["method"].isin(BASELINES)].groupby("method")["seed"].nunique()
    if len(n_seeds) and n_seeds.max() == 1:
        return "Trained models: one training seed each (no s.d.; evaluation.seeds sets more)"
    seeds = f"{n_seeds.min()}" if len(n_seeds) and n_seeds.min() == n_seeds.max() else "several"
    return f"Trained models: mean \u00b1 s.d. over {seeds} training seeds, dots = seeds"


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = pd.read_csv(snakemake.input.tsv, sep="\t")
    metrics = plot_metrics(table, dataset=snakemake.wildcards.dataset, pdf=snakemake.output.pdf,
                           png=snakemake.output.png, colours=snakemake.params.colours)
    log.info("drew %s for %s", ", ".join(metrics), ", ".join(dict.fromkeys(table["method"].astype(str))))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
