"""Bad input through `snakemake`: each class refused before any training, with a message
naming the dataset, the file or key and the fix, and no traceback; the sound fallbacks run
to the end; a run killed outright is resumed by the same command to the same result."""

import os
import signal
import subprocess
import time

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from integration_helpers import REPO, SNAKEMAKE, snakemake, write_config

SMALL = {"model": {"hidden_dim": 32, "latent_dim": 8}, "train": {"epochs": 3, "batch_size": 64},
         "evaluation": {"seeds": [0], "null_draws": 20},
         "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None, "n_top_genes": 300}}


def test_bad_inputs_are_refused_before_any_training(tmp_path, pbmc68k_counts):
    data = tmp_path / "data"
    data.mkdir()
    full = pbmc68k_counts.copy()
    full.obs = full.obs.assign(one="T cell", none=np.nan, cont=np.linspace(0, 1, full.n_obs),
                               cell_id=[f"c{i}" for i in range(full.n_obs)])
    full.write_h5ad(data / "full.h5ad")
    full[:12].copy().write_h5ad(data / "twelve.h5ad")
    datasets = {
        "onelabel": {"path": "data/full.h5ad", "label_key": "one"},
        "nolabels": {"path": "data/full.h5ad", "label_key": "none"},
        "contcov": {"path": "data/full.h5ad", "batch_key": "cont"},
        "idcov": {"path": "data/full.h5ad", "covariate_keys": ["cell_id"]},
        "bigbatch": {"path": "data/full.h5ad", "train": {"batch_size": 1024}},
        "twelve": {"path": "data/twelve.h5ad", "train": {"batch_size": 8}, "model": {"latent_dim": 16, "i_dim": 4}},
    }
    write_config(tmp_path, {"datasets": datasets, **SMALL})
    result = snakemake(tmp_path, "--keep-going", *(f"results/{d}/runs/iVAE/seed0/model.pt" for d in datasets),
                       check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    expected = [
        "dataset 'onelabel' (data/full.h5ad): label_key 'one' has 1 group(s) among the 700 cells left after QC "
        "(only 'T cell'); the clustering scores need at least 2.",
        "dataset 'nolabels' (data/full.h5ad): label_key 'none' has 0 group(s)",
        "dataset 'contcov' (data/full.h5ad): obs['cont'] holds non-integer numbers (a continuous value)",
        "dataset 'idcov' (data/full.h5ad): obs['cell_id'] has 700 distinct values for 700 cells",
        "dataset 'bigbatch' (results/bigbatch/preprocessed.h5ad): the dataset does not fit the configured run "
        "(nothing was trained):",
        "  - training: training cells >= train.batch_size (1024), after 140 held-out cells: needs 1280, has 700; "
        "fix: lower train.batch_size to at most 560",
        "dataset 'twelve' (results/twelve/preprocessed.h5ad): the dataset does not fit",
        "baselines: labelled cells >= latent_dim (16 components): needs 16, has 12; fix: lower model.latent_dim",
    ]
    for message in expected:
        assert message in out, message
    assert "Traceback" not in out
    for dataset in datasets:  # no training job started
        assert not (tmp_path / "results" / dataset / "runs").exists(), dataset
        assert not (tmp_path / "logs" / "train" / dataset).exists(), dataset
    # the refusals of the checks that need the model settings come from check_input, after preprocessing
    assert (tmp_path / "results" / "bigbatch" / "preprocessed.h5ad").exists()
    assert not (tmp_path / "results" / "onelabel" / "preprocessed.h5ad").exists()


@pytest.mark.extended  # the whole default target: about a minute, which README's command cannot spare
def test_a_tiny_dataset_with_markers_of_another_tissue_runs_to_the_end(tmp_path, pbmc68k_counts):
    """15 cells (too few for seurat_v3's loess: Pearson residuals instead) and lung markers
    on blood cells (they do not fit: plain clusters, not cell-type names)."""
    (tmp_path / "data").mkdir()
    rows = np.sort(np.random.default_rng(0).choice(pbmc68k_counts.n_obs, 15, replace=False))
    pbmc68k_counts[rows].copy().write_h5ad(tmp_path / "data" / "tiny.h5ad")
    lung = {"AT1": ["AGER", "RTKN2"], "AT2": ["SFTPC", "SFTPB", "NAPSA"], "Ciliated": ["FOXJ1", "CAPS"]}
    write_config(tmp_path, {"datasets": {"tiny": {"path": "data/tiny.h5ad", "annotation": {"markers": lung}}},
                            **SMALL, "train": {"epochs": 3, "batch_size": 8},
                            "preprocess": {**SMALL["preprocess"], "min_cells": 1, "n_top_genes": 100}})
    snakemake(tmp_path)
    res = tmp_path / "results" / "tiny"
    pre = ad.read_h5ad(res / "preprocessed.h5ad", backed="r")
    assert pre.uns["preprocess"]["hvg_flavor"] == "pearson_residuals" and pre.n_vars == 100
    assert "loess found no fit on 15 cells" in (tmp_path / "logs" / "preprocess" / "tiny.log").read_text()
    labels = pd.read_csv(res / "cell_labels.tsv", sep="\t", dtype=str)
    assert (labels["label_source"] == "clusters").all() and labels["label"].equals(labels["cluster"])
    assert "do not fit this dataset" in (tmp_path / "logs" / "cell_labels" / "tiny.log").read_text()
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert set(metrics["reference"]) == {"clusters"} and np.isfinite(metrics["ARI"]).all()
    checks = pd.read_csv(res / "input_checks.tsv", sep="\t")
    assert checks["passed"].all() and set(checks["step"]) == {"training", "baselines"}
    assert (res / "figures" / "umap.png").stat().st_size > 20_000


def _train_command(workdir):
    return [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1",
            "results/d/runs/iVAE/seed0/model.pt"]


def test_a_run_killed_during_training_resumes_to_the_same_result(tmp_path, pbmc68k_counts):
    """SIGKILL of Snakemake and its training job, once the training has checkpointed; the
    same command then removes the killed run's locks, resumes the training from its
    checkpoint and ends with the model an uninterrupted run makes."""
    config = {"datasets": {"d": {"path": "data/d.h5ad", "label_key": "bulk_labels"}}, **SMALL,
              "train": {"epochs": 150, "batch_size": 64, "checkpoint_every": 2, "early_stopping": False}}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    for workdir in (killed, whole):
        (workdir / "data").mkdir(parents=True)
        pbmc68k_counts.write_h5ad(workdir / "data" / "d.h5ad")
        write_config(workdir, config)
    run = killed / "results" / "d" / "runs" / "iVAE" / "seed0"
    process = subprocess.Popen(_train_command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run / "model.pt.checkpoint").exists():
            assert process.poll() is None and time.monotonic() < deadline, "the training never checkpointed"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job, as a scheduler or the OOM killer would
        process.wait()
    assert not (run / "model.pt").exists() and list((killed / ".snakemake" / "locks").iterdir())

    again = subprocess.run(_train_command(killed), capture_output=True, text=True)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "left by a Snakemake run that was killed" in again.stdout + again.stderr
    assert "resuming from" in (killed / "logs" / "train" / "d" / "iVAE" / "seed0.log").read_text()
    subprocess.run(_train_command(whole), check=True, capture_output=True)

    a, b = (torch.load(w / "results/d/runs/iVAE/seed0/model.pt", weights_only=True) for w in (killed, whole))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    logs = [pd.read_csv(w / "results/d/runs/iVAE/seed0/training_log.tsv", sep="\t").drop(columns="seconds")
            for w in (killed, whole)]
    pd.testing.assert_frame_equal(*logs)
    assert not (run / "model.pt.checkpoint").exists()
