"""The whole default target on a real two-sample dataset above every size switch: the
built-in Kang et al. 2018 PBMCs (13,999 cells, control and IFN-beta-stimulated), conditioned
on the sample, through `snakemake` in a subprocess; then a new sample mapped onto it.

Above ~9,000 cells scanpy's neighbours use pynndescent (the path that crashed with
pynndescent 0.7), UMAP runs fewer epochs and the silhouette is subsampled; see
tests/unit/test_scale.py for the same paths in isolation. With ``evaluation.max_cells`` at
2,000 the atlas-scale paths run end to end as well (tests/unit/test_subsample.py): Leiden
on a subsample with nearest-centroid assignment, MiniBatchKMeans, the baselines on a
subsample, the UMAPs of a subsample.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from integration_helpers import pypi_reachable, snakemake, write_config

pytestmark = pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from this machine")

#: Fewer epochs and genes than the defaults: what this test is about is the number of cells.
CONFIG = {"datasets": {"kang": {"source": "kang2018_ifnb", "batch_key": "sample"}},
          "preprocess": {"n_top_genes": 500}, "train": {"epochs": 3}, "evaluation": {"seeds": [0], "null_draws": 20, "max_cells": 2000}}


@pytest.fixture(scope="module")
def kang(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kang")
    write_config(workdir, CONFIG)
    snakemake(workdir)
    return workdir


def test_default_target_on_13999_cells_with_a_sample_covariate(kang):
    res = kang / "results" / "kang"
    pre = ad.read_h5ad(res / "preprocessed.h5ad", backed="r")
    assert pre.n_obs > 13_000 and pre.n_vars == 500 and pre.uns["preprocess"]["hvg_batch_key"] == "sample"
    emb = ad.read_h5ad(res / "runs" / "iVAE" / "seed0" / "embedding.h5ad")
    assert emb.obsm["X_ivae"].shape == (pre.n_obs, 10) and np.isfinite(emb.obsm["X_ivae"]).all()
    assert list(emb.uns["ivae"]["covariates"]) == ["sample"]
    labels = pd.read_csv(res / "cell_labels.tsv", sep="\t", dtype=str)
    assert len(labels) == pre.n_obs and labels["cluster"].nunique() > 5
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert set(metrics["method"]) == {"iVAE", "VAE", "VAE-narrow", "VAE-beta-matched", "iVAE-stop-gradient",
                                      "iVAE-no-covariates", "PCA", "ICA", "NMF", "FA"}
    # no cell-type labels here: batch mixing within Leiden clusters of the uncorrected data would
    # mean little, so it is left out (NaN); the labelled multi-sample evidence run computes it
    assert metrics[["batch_ASW", "graph_connectivity", "batch_entropy"]].isna().all().all()
    # above max_cells (2,000): every output says what ran on a subsample
    assert labels["leiden_subsample"].eq("True").sum() == 2000 and labels["cluster"].notna().all()
    assert "Leiden on a uniform subsample of 2000 cells" in (kang / "logs" / "cell_labels" / "kang.log").read_text()
    notes = metrics.set_index("method")["note"]
    assert notes[["iVAE", "VAE", "VAE-narrow"]].str.contains("MiniBatchKMeans (n_init 3, batch 4096) on all",
                                                             regex=False).all()
    assert notes[["PCA", "ICA", "NMF", "FA"]].str.contains(
        f"fitted and scored on a subsample of 2,000 of {pre.n_obs:,} cells (stratified by label)", regex=False).all()
    adata = ad.read_h5ad(res / "adata.h5ad", backed="r")
    assert adata.obs["umap_subsample"].sum() == 2000 and adata.uns["umap_subsample"]["n_subsample"] == 2000
    umap = np.asarray(adata.obsm["X_umap"])
    assert np.isfinite(umap[adata.obs["umap_subsample"].to_numpy()]).all() and np.isnan(umap).any(axis=1).sum() == \
        pre.n_obs - 2000
    assert f"drawing subsample of 2,000 of {pre.n_obs:,} cells, stratified by label" in (
        kang / "logs" / "plot_embeddings" / "kang.log").read_text()
    for figure in ("umap", "latent_correlation", "metrics", "qc", "interpretative_embedding", "training_curves",
                   "spectrum", "component_genes"):
        img = imread(res / "figures" / f"{figure}.png")  # palette PNGs: their size says little
        assert img.shape[1] > 1000 and img[..., :3].std() > 0.05, figure


def test_new_sample_mapped_by_surgery(kang, pbmc68k_counts):
    """A query from another sample (pbmc68k's cells): its category is new to the model, so
    only its weights are trained; the cells land on the reference's UMAP."""
    query = pbmc68k_counts.copy()
    query.obs["sample"] = "pbmc68k"
    (kang / "data").mkdir()
    query.write_h5ad(kang / "data" / "query.h5ad")
    write_config(kang, {**CONFIG, "datasets": {**CONFIG["datasets"], "query": {
        "path": "data/query.h5ad", "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None}}},
        "mappings": {"query": "kang"}, "mapping": {"surgery_epochs": 5, "min_gene_overlap": 0.1}})
    snakemake(kang, "map")
    mapped = ad.read_h5ad(kang / "results" / "query" / "mapped_to" / "kang" / "embedding.h5ad")
    assert list(mapped.uns["mapping"]["categories"]["sample"]) == ["ctrl", "stim", "pbmc68k"]
    assert np.isfinite(mapped.obsm["X_umap"]).all() and mapped.obs["label_confidence"].between(0, 1).all()
    log = (kang / "logs" / "map_embed" / "query" / "kang.log").read_text()
    assert "new categories {'sample': ['pbmc68k']}" in log and "training their weights only" in log
