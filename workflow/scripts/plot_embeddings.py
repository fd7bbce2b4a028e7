"""Figures: the interpretative embedding and UMAPs of the latent, coloured by cell label.

1. The interpretative embedding ``X_ivae_interp`` (first two components), one point per
   cell, coloured by cell label.
2. A grid of UMAPs: rows are the iVAE's latent z (``X_ivae``; its UMAP from adata.h5ad),
   the iVAE trained without the dataset's covariates where it has some, and the plain
   VAE's (irecon = 0, same seed); columns colour the cells by label, by batch (with a
   ``batch_key``) and by total counts (log colour scale). (The latent after the
   interpretative module is an image of the i_dim-wide interpretative embedding, drawn in 1.)

Cell labels come from adata.h5ad (``label``, ``label_source`` in {labels, markers,
clusters}, from cell_labels.tsv); the legend title says which.

Atlas scale: above ``evaluation.max_cells`` cells both figures draw, and the UMAPs are
computed on, the label-stratified subsample whose UMAP adata.h5ad holds
(``obs["umap_subsample"]``), and their titles say "a subsample of N of M cells (stratified
by label)". Only obs and the needed obsm arrays are read, never the expression matrices.
"""


import numpy as np
import pandas as pd

import plotstyle
from numba_cache import cache_umap_compilation
from rule_io import log, setup_logging
from h5ad_parts import read_obs, read_obsm
from subsample import subsample_cells

#: Legend title for each ``label_source`` of cell_labels.tsv.
LABEL_TITLES = {
    "labels": "Cell type",
    "markers": "Cell type (marker-based)",
    "clusters": "Leiden cluster",
}


def label_title(sources) -> str:
    """Legend title for the ``label_source`` column (its most common value)."""
    sources = pd.Series(sources).dropna().astype(str)
    if sources.empty:
        return "Cell label"
    source = sources.value_counts().index[0]
    return LABEL_TITLES.get(source, "Cell label")


def category_order(labels) -> list:
    """Categories in display order: numerically for cluster ids, else by size (largest first)."""
    labels = pd.Series(labels).astype(str)
    counts = labels.value_counts()
    names = list(counts.index)
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names, key=lambda name: (-counts[name], name))


def point_size(n: int) -> float:
    """Marker area (pt^2) that keeps n points readable without a solid blob."""
    return float(np.clip(4000.0 / max(n, 1), 0.3, 8.0))


def scatter_by_label(ax, coords, labels, order, colours, *, seed=0):
    """Scatter cells coloured by label, in a random (seeded) order so no group hides another."""
    labels = np.asarray(labels).astype(str)
    perm = np.random.default_rng(seed).permutation(len(labels))
    lut = dict(zip(order, colours))
    ax.scatter(coords[perm, 0], coords[perm, 1], c=[lut[lab] for lab in labels[perm]],
               s=point_size(len(labels)), lw=0, rasterized=True)


def legend_entries(labels) -> dict:
    """Each label's legend text: its name and how many cells have it."""
    counts = pd.Series(np.asarray(labels).astype(str)).value_counts()
    return {name: f"{name} ({n:,})" for name, n in counts.items()}


def label_handles(order, colours, labels):
    from matplotlib.lines import Line2D

    entries = legend_entries(labels)
    return [Line2D([], [], ls="", marker="o", ms=4, mew=0, color=colour, label=entries[name])
            for name, colour in zip(order, colours)]


def legend_columns(n: int, max_rows: int = 16) -> int:
    return 1 if n <= max_rows else int(np.ceil(n / max_rows))


def style_axes(ax, xlabel, ylabel):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")


def cells_text(n: int, n_total: int | None = None) -> str:
    """"n = N cells", or, for a subsample of ``n_total`` cells, "subsample of N of M cells,
    stratified by label"."""
    if n_total is None or n_total == n:
        return f"n = {n:,} cells"
    return f"subsample of {n:,} of {n_total:,} cells, stratified by label"


def plot_interpretative(interp: np.ndarray, labels, *, label_title: str, dataset: str, pdf, png,
                        n_total: int | None = None) -> list:
    """Scatter of the interpretative embedding coloured by cell label; return the legend order.
    ``n_total``: the number of cells the drawn ones are a subsample of (None: not a subsample)."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    interp = np.asarray(interp, dtype=np.float64)
    if interp.ndim == 1:
        interp = interp[:, None]
    n, k = interp.shape
    labels = np.asarray(labels).astype(str)
    order = category_order(labels)
    colours = plotstyle.categorical_colors(len(order))
    fig, ax = plt.subplots(figsize=(plotstyle.SINGLE_COLUMN, plotstyle.SINGLE_COLUMN * 0.78), layout="constrained")
    if k >= 2:
        scatter_by_label(ax, interp[:, :2], labels, order, colours)
        ax.set_xlabel("Interpretative component 1")
        ax.set_ylabel("Interpretative component 2")
        what = "first two of " if k > 2 else ""
        ax.set_title(f"{dataset}: interpretative embedding\n({what}{k} components, {cells_text(n, n_total)})")
    else:  # one component: a strip per label
        rows = {name: i for i, name in enumerate(order)}
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, n)
        y = np.array([rows[lab] for lab in labels]) + jitter
        scatter_by_label(ax, np.column_stack([interp[:, 0], y]), labels, order, colours)
        ax.set_yticks(range(len(order)), order)
        ax.invert_yaxis()
        ax.set_xlabel("Interpretative component 1")
        ax.set_ylabel(label_title)
        ax.set_title(f"{dataset}: interpretative embedding\n(1 component, {cells_text(n, n_total)})")
    ax.tick_params(length=2)
    ax.legend(handles=label_handles(order, colours, labels), title=label_title, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False, handletextpad=0.1, borderaxespad=0,
              ncols=legend_columns(len(order)), columnspacing=0.6, title_fontsize=6)
    plotstyle.save(fig, pdf, png)
    return order


def umap_coordinates(latent: np.ndarray, *, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP of ``latent`` (cells x components): scanpy neighbours + UMAP, seeded."""
    import anndata as ad
    import scanpy as sc

    latent = np.asarray(latent, dtype=np.float32)
    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(latent.shape[0])]))
    adata.obsm["X_rep"] = latent
    cache_umap_compilation()
    sc.pp.neighbors(adata, use_rep="X_rep", n_neighbors=min(n_neighbors, latent.shape[0] - 1), random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    return np.asarray(adata.obsm["X_umap"])


def plot_umaps(umaps: dict, labels, total_counts, *, label_title: str, dataset: str, pdf, png,
               batch=None, batch_title: str = "Batch", n_total: int | None = None) -> list:
    """Grid of UMAPs: one row per representation; columns colour the cells by label, by
    batch (when ``batch`` is given) and by total counts. Returns the legend order of the labels.
    ``n_total``: the number of cells the drawn ones are a subsample of (None: not a subsample)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    plotstyle.apply()
    labels = np.asarray(labels).astype(str)
    counts = np.asarray(total_counts, dtype=np.float64)
    order = category_order(labels)
    colours = plotstyle.categorical_colors(len(order))
    n_rows = len(umaps)
    positive = counts[counts > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    perm = np.random.default_rng(0).permutation(len(counts))

    # Column widths in inches: a square panel, plus the column's legend (label, batch) or
    # colour bar (counts); the figure grows with long or many labels instead of letting
    # the legend overlap the panels.
    panel = 2.3
    max_rows = max(16, int(panel * n_rows * 72 / 10))  # legend entries (~10 pt each) the height holds

    def legend_width(categories) -> float:
        texts = legend_entries(categories).values()
        return legend_columns(len(texts), max_rows) * (0.25 + 0.04 * max(map(len, texts)))

    columns = [("label", panel + legend_width(labels))]
    if batch is not None:
        columns.append(("batch", panel + legend_width(batch)))
    columns.append(("counts", panel + 0.9))
    width = max(sum(w for _, w in columns), plotstyle.DOUBLE_COLUMN)  # at least the house width
    fig = plt.figure(figsize=(width, panel * n_rows + 0.5), layout="constrained")
    subfigs = dict(zip([c for c, _ in columns],
                       fig.subfigures(1, len(columns), wspace=0.02, width_ratios=[w for _, w in columns])))
    axes = {name: sub.subplots(n_rows, 1, squeeze=False)[:, 0] for name, sub in subfigs.items()}
    if batch is not None:
        batch = np.asarray(batch).astype(str)
        batch_order = category_order(batch)
        batch_colours = plotstyle.categorical_colors(len(batch_order))
    image = None
    for row, (name, coords) in enumerate(umaps.items()):
        coords = np.asarray(coords)
        scatter_by_label(axes["label"][row], coords, labels, order, colours)
        if batch is not None:
            scatter_by_label(axes["batch"][row], coords, batch, batch_order, batch_colours)
        image = axes["counts"][row].scatter(coords[perm, 0], coords[perm, 1],
                                            c=np.clip(counts[perm], norm.vmin, None) if norm else counts[perm],
                                            cmap=plotstyle.SEQUENTIAL, norm=norm, s=point_size(len(counts)), lw=0,
                                            rasterized=True)
        for column in axes.values():
            column[row].set_title(name)
            style_axes(column[row], "UMAP 1", "UMAP 2")
            column[row].set_box_aspect(1)  # square panels, whatever the column's width
    subfigs["label"].suptitle(f"Colour: {label_title}", fontsize=7, fontweight="bold")
    subfigs["label"].legend(handles=label_handles(order, colours, labels), title=label_title,
                            loc="outside right center", frameon=False, handletextpad=0.1,
                            ncols=legend_columns(len(order), max_rows), columnspacing=0.6, title_fontsize=6)
    if batch is not None:
        subfigs["batch"].suptitle(f"Colour: {batch_title}", fontsize=7, fontweight="bold")
        subfigs["batch"].legend(handles=label_handles(batch_order, batch_colours, batch), title=batch_title,
                                loc="outside right center", frameon=False, handletextpad=0.1,
                                ncols=legend_columns(len(batch_order), max_rows), title_fontsize=6)
    subfigs["counts"].suptitle("Colour: total counts (UMIs)", fontsize=7, fontweight="bold")
    cbar = subfigs["counts"].colorbar(image, ax=axes["counts"], shrink=0.6, aspect=30, pad=0.03)
    cbar.set_label("Total counts (UMIs)")
    if norm is not None:
        cbar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        cbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        cbar.ax.yaxis.set_minor_locator(NullLocator())
    cbar.ax.tick_params(length=2, which="both")
    fig.suptitle(f"{dataset}: UMAPs of the latents ({cells_text(len(labels), n_total)})")
    plotstyle.save(fig, pdf, png)
    return order


def drawn_cells(obs, max_cells: int, *, seed: int = 0) -> np.ndarray | None:
    """The cells the figures draw: None (all) at or below ``max_cells``; above, adata.h5ad's
    UMAP subsample (``obs["umap_subsample"]``), else a label-stratified subsample."""
    if "umap_subsample" in obs:
        keep = np.flatnonzero(obs["umap_subsample"].to_numpy(dtype=bool))
        return None if len(keep) == len(obs) else keep
    if len(obs) <= max_cells:
        return None
    return subsample_cells(len(obs), max_cells, labels=obs["label"].astype(str).to_numpy(), seed=seed)


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    dataset = snakemake.wildcards.dataset
    seed = int(snakemake.params.seed)
    path = snakemake.input.adata
    obs = read_obs(path)  # obs and the needed obsm arrays only: never the expression matrices
    keep = drawn_cells(obs, int(snakemake.params.max_cells), seed=seed)
    n_total = None if keep is None else len(obs)
    cells = obs if keep is None else obs.iloc[keep]
    labels = cells["label"].astype(str).to_numpy()
    title = label_title(cells["label_source"].astype(str))
    log.info("%d cells, %d labels (%s)%s", len(obs), len(set(labels)), title,
             "" if keep is None else f"; drawing {cells_text(len(keep), len(obs))}")

    plot_interpretative(read_obsm(path, "X_ivae_interp", keep), labels, label_title=title, dataset=dataset,
                        pdf=snakemake.output.interp_pdf, png=snakemake.output.interp_png, n_total=n_total)
    umaps = {"iVAE latent z": read_obsm(path, "X_umap", keep)}  # adata.h5ad's, computed once
    if not np.isfinite(umaps["iVAE latent z"]).all():
        raise ValueError(f"{path} has no UMAP coordinates for some of the cells drawn; rerun the anndata rule.")
    others = [("iVAE without the covariates", p) for p in snakemake.input.no_covariates]
    for name, other in [*others, ("VAE latent z (irecon = 0)", snakemake.input.vae)]:
        if not read_obs(other).index.equals(obs.index):
            raise ValueError(f"{other} holds other cells than {path}; rerun embed.")
        log.info("UMAP of the %s (seed %d)", name, seed)
        umaps[name] = umap_coordinates(read_obsm(other, "X_ivae", keep), seed=seed)
    batch_key = snakemake.params.batch_key
    plot_umaps(umaps, labels, cells["total_counts"].to_numpy(), label_title=title, dataset=dataset,
               pdf=snakemake.output.umap_pdf, png=snakemake.output.umap_png,
               batch=cells[batch_key].to_numpy() if batch_key else None, batch_title=f"Batch ({batch_key})",
               n_total=n_total)
    log.info("wrote %s and %s", snakemake.output.interp_pdf, snakemake.output.umap_pdf)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
