"""`snakemake scib` on the Lung Cell Atlas subset (1,000 cells, 10x and Smart-seq2, the
authors' cell types): every model's latent, uncorrected PCA and Harmony, scored by
scib-metrics (the extended tier: JAX compiles for minutes)."""

import pandas as pd
import pytest

from integration_helpers import pypi_reachable, snakemake, write_config


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from this machine")
def test_scib_with_its_controls(tmp_path):
    write_config(tmp_path, {
        "datasets": {"lca": {"source": "lung_cell_atlas", "label_key": "cell_ontology_type", "batch_key": "method",
                             "preprocess": {"max_genes": None, "max_pct_mt": None, "n_top_genes": 500}}},
        "model": {"hidden_dim": 32, "latent_dim": 8}, "train": {"epochs": 3},
        "evaluation": {"seeds": [0], "null_draws": 20}})
    snakemake(tmp_path, "scib")
    table = pd.read_csv(tmp_path / "results" / "lca" / "scib.tsv", sep="\t").set_index("embedding")
    assert list(table.index) == ["iVAE z", "VAE z", "VAE-narrow z", "VAE-beta-matched z", "iVAE-stop-gradient z",
                                 "iVAE-no-covariates z", "scVI z", "LDVAE z", "PCA (uncorrected)", "Harmony on PCA"]
    assert (table["seed"] == 0).all() and table[["iLISI", "KBET", "BRAS", "Total"]].notna().all().all()
    # the positive control corrects what the negative one leaves: 10x against Smart-seq2
    assert table.loc["Harmony on PCA", "Batch correction"] > table.loc["PCA (uncorrected)", "Batch correction"]
    assert table.loc["Harmony on PCA", "iLISI"] > table.loc["PCA (uncorrected)", "iLISI"]
    summary = pd.read_csv(tmp_path / "results" / "lca" / "scib_summary.tsv", sep="\t")
    assert (summary["seeds"] == 1).all() and len(summary) == len(table)
