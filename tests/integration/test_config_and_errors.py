"""Config validation and bad input, through the `snakemake` command line."""

import re

import pytest

from integration_helpers import snakemake, write_config


@pytest.fixture
def counts_file(pbmc68k_h5ad, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.h5ad").symlink_to(pbmc68k_h5ad)
    return "data/c.h5ad"


def test_mistyped_key_is_named(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file}}, "train": {"epoch": 3}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert "'epoch' was unexpected" in result.stderr + result.stdout


def test_wrong_type_is_named(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file, "train": {"lr": "fast"}}}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0 and "'fast' is not of type 'number'" in result.stderr + result.stdout


def test_unknown_source_is_an_error(tmp_path):
    write_config(tmp_path, {"datasets": {"d": {"source": "pbmc_10k"}}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0 and "'pbmc_10k' is not one of" in result.stderr + result.stdout


def test_defaults_fill_in_and_plan_is_complete(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file}}})
    result = snakemake(tmp_path, "--dry-run", "--quiet", "rules")
    out = result.stdout
    for rule in ("preprocess", "train", "embed", "plot_latent_correlation"):
        assert rule in out


def test_missing_input_file_stops_before_running(tmp_path):
    write_config(tmp_path, {"datasets": {"d": {"path": "data/absent.h5ad"}}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0 and "data/absent.h5ad" in result.stderr + result.stdout


def test_bad_counts_and_label_key_fail_with_dataset_and_file(tmp_path, pbmc68k_counts):
    import numpy as np
    import scipy.sparse as sp

    (tmp_path / "data").mkdir()
    logn = pbmc68k_counts.copy()
    logn.X = sp.csr_matrix(np.log1p(logn.X.toarray()))
    logn.write_h5ad(tmp_path / "data" / "lognorm.h5ad")
    pbmc68k_counts.write_h5ad(tmp_path / "data" / "ok.h5ad")
    write_config(tmp_path, {"datasets": {
        "lognorm": {"path": "data/lognorm.h5ad"},
        "nolabel": {"path": "data/ok.h5ad", "label_key": "celltype"},
        "bigbatch": {"path": "data/ok.h5ad", "train": {"batch_size": 5000}},
    }, "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None}})
    result = snakemake(tmp_path, "--keep-going", "results/lognorm/preprocessed.h5ad",
                       "results/nolabel/preprocessed.h5ad", "results/bigbatch/runs/iVAE/seed0/model.pt", check=False)
    out = result.stderr + result.stdout
    assert result.returncode != 0
    assert "dataset 'lognorm' (data/lognorm.h5ad): the count matrix holds non-integer values" in out
    assert "dataset 'nolabel' (data/ok.h5ad): label_key 'celltype' is not an obs column" in out
    assert re.search(r"dataset 'bigbatch' \(results/bigbatch/preprocessed.h5ad\): the dataset does not fit the "
                     r"configured run \(nothing was trained\):\n  - training: training cells >= train.batch_size "
                     r"\(5000\)", out)
    assert not (tmp_path / "logs" / "train" / "bigbatch").exists()
    assert not (tmp_path / "results" / "lognorm" / "preprocessed.h5ad").exists()
    assert not (tmp_path / "results" / "bigbatch" / "runs" / "iVAE" / "seed0" / "model.pt").exists()


def test_lint_is_clean():
    from conftest import REPO
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    from conftest import REPO
    import subprocess
    import sys

    files = ["Snakefile", *map(str, sorted((REPO / "workflow" / "rules").glob("*.smk")))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_per_dataset_evaluation_seeds_and_methods_in_the_plan(tmp_path, counts_file):
    """Every model x seed is one job of the one training rule; the iVAE at train.seed is the
    main model, not trained twice; a dataset can have fewer seeds than the global setting."""
    write_config(tmp_path, {"datasets": {"a": {"path": counts_file},
                                         "b": {"path": counts_file, "evaluation": {"seeds": [0]}}}})
    out = snakemake(tmp_path, "--dry-run").stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("Reasons")[0], flags=re.M))
    assert counts["train"] == str(5 * 3 + 5 * 1)  # the iVAE and its 4 controls x seeds, the main iVAEs among them
    assert counts["embed"] == counts["run_metrics"] == counts["train"] and counts["baselines"] == "4"  # one per seed
    assert not {"train_run", "embed_run", "run_metrics_main"} & set(counts)  # one rule per step


def test_mapping_of_an_unknown_dataset_is_named(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file}}, "mappings": {"d": "atlas"}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0 and "mappings: d -> atlas: both must be datasets" in result.stderr + result.stdout


def test_i_dim_not_below_latent_dim_is_named_before_running(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file, "model": {"latent_dim": 4}}}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    out = result.stderr + result.stdout
    assert result.returncode != 0 and "datasets.d: model.i_dim (4) must be smaller than model.latent_dim (4)" in out


def test_swept_i_dim_not_below_latent_dim_is_named_before_running(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file}}, "sweep": {"model": {"i_dim": [10]}}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    out = result.stderr + result.stdout
    assert result.returncode != 0 and "datasets.d (i_dim=10): model.i_dim (10) must be smaller" in out


def test_paper_seeds_outside_the_evaluation_seeds_are_named(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file, "label_key": "bulk_labels"}},
                            "paper": {"seeds": [0, 7]}})
    result = snakemake(tmp_path, "paper", "--dry-run", check=False)
    out = result.stderr + result.stdout
    assert result.returncode != 0 and "config paper.seeds: [7] are not evaluation seeds of dataset 'd'" in out


def test_standard_seeds_are_a_subset_in_the_plan(tmp_path, counts_file):
    """scVI and LDVAE are trained at evaluation.standard_seeds only, in the metrics table
    and in `compare` alike; the other models at every evaluation seed."""
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file}},
                            "evaluation": {"standard_models": ["scVI", "LDVAE"], "standard_seeds": [1]}})
    out = snakemake(tmp_path, "compare", "--dry-run").stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1].split("Reasons")[0], flags=re.M))
    assert counts["train_standard"] == "2"  # scVI and LDVAE at seed 1
    assert "results/d/runs/scVI/seed1/embedding.h5ad" in out
    assert "runs/scVI/seed0/" not in out and "runs/LDVAE/seed2/" not in out
    assert counts["train"] == str((5 + 4) * 3)  # the default run's 5 and compare's 4 models at every seed


def test_standard_seeds_outside_the_evaluation_seeds_are_named(tmp_path, counts_file):
    write_config(tmp_path, {"datasets": {"d": {"path": counts_file}},
                            "evaluation": {"standard_models": ["scVI"], "standard_seeds": [0, 5]}})
    result = snakemake(tmp_path, "--dry-run", check=False)
    out = result.stderr + result.stdout
    assert result.returncode != 0 and "config evaluation.standard_seeds: [5] are not evaluation seeds of dataset 'd'" in out
