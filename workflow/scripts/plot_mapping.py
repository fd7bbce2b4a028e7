"""Figure: a query mapped onto a reference.

Left: the reference's UMAP (grey) with the query's cells placed on it, coloured by the label
transferred from their nearest reference cells; middle: the same, coloured by that label's
confidence (the fraction of the neighbours that agree); right: the interpretative embedding,
reference grey and query coloured, in the reference model's own coordinates.
"""

import numpy as np

import plotstyle
from rule_io import log, setup_logging
from plot_embeddings import category_order, label_handles, legend_columns, point_size, scatter_by_label


def plot_mapping(reference, query, *, title: str, pdf, png) -> list:
    """Draw the figure from the reference's and the query's AnnData; return the label order."""
    import matplotlib.pyplot as plt

    plotstyle.apply()
    labels = query.obs["predicted_label"].astype(str).to_numpy()
    order = category_order(labels)
    colours = plotstyle.categorical_colors(len(order))
    fig, axes = plt.subplots(1, 3, figsize=(plotstyle.DOUBLE_COLUMN, plotstyle.DOUBLE_COLUMN * 0.36),
                             layout="constrained")
    size = point_size(reference.n_obs + query.n_obs)
    panels = (("X_umap", "UMAP", axes[0]), ("X_umap", "UMAP", axes[1]), ("X_ivae_interp", "Interpretative", axes[2]))
    image = None
    rng = np.random.default_rng(0)
    for i, (key, name, ax) in enumerate(panels):
        ref, qry = np.asarray(reference.obsm[key])[:, :2], np.asarray(query.obsm[key])[:, :2]
        if ref.shape[1] == 1:  # i_dim = 1: the component against a random jitter
            ref = np.column_stack([ref[:, 0], rng.uniform(-1, 1, len(ref))])
            qry = np.column_stack([qry[:, 0], rng.uniform(-1, 1, len(qry))])
        ax.scatter(ref[:, 0], ref[:, 1], s=size, color="0.85", lw=0, rasterized=True)
        if i == 1:
            image = ax.scatter(qry[:, 0], qry[:, 1], s=size, c=query.obs["label_confidence"], cmap=plotstyle.SEQUENTIAL,
                               vmin=0, vmax=1, lw=0, rasterized=True)
        else:
            scatter_by_label(ax, qry, labels, order, colours)
        ax.set_xlabel(f"{name} 1")
        ax.set_ylabel(f"{name} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_title("Query on the reference UMAP\n(colour: transferred label)")
    axes[1].set_title("Confidence of the transferred label\n(fraction of neighbours agreeing)")
    axes[2].set_title("Interpretative embedding\n(grey: reference)")
    fig.colorbar(image, ax=axes[1], shrink=0.7, aspect=25, pad=0.02).set_label("Confidence")
    fig.legend(handles=label_handles(order, colours, labels), title="Transferred label", loc="outside right center",
               frameon=False, ncols=legend_columns(len(order)), fontsize=5, title_fontsize=6)
    fig.suptitle(title)
    plotstyle.save(fig, pdf, png)
    return order


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    reference = ad.read_h5ad(snakemake.input.reference, backed="r")
    query = ad.read_h5ad(snakemake.input.query)
    mapping = query.uns["mapping"]
    agreement = f"; {100 * mapping['agreement']:.0f} % agree with the query's own labels" if "agreement" in mapping else ""
    source = {"labels": "its labels", "markers": "its marker-named clusters", "clusters": "its Leiden clusters"}
    title = (f"{snakemake.wildcards.query} ({query.n_obs:,} cells) mapped onto {snakemake.wildcards.reference} "
             f"(labels transferred: {source.get(mapping['label_source'], mapping['label_source'])}): "
             f"{mapping['genes_found']:,} of {mapping['genes']:,} genes found{agreement}")
    order = plot_mapping(reference, query, title=title, pdf=snakemake.output.pdf, png=snakemake.output.png)
    log.info("drew %d transferred labels", len(order))


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
