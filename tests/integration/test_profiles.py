"""Profiles: parse, refer to real rules, and request GPUs the way the SLURM plugin allows."""

import subprocess
import sys

import yaml

from integration_helpers import REPO


def rules():
    out = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_slurm_profile():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["software-deployment-method"] == "conda"
    assert {"slurm_account", "slurm_partition", "mem_mb", "runtime"} <= set(profile["default-resources"])
    known = rules()
    assert set(profile["set-resources"]) <= known and set(profile["set-threads"]) <= known
    for rule, resources in profile["set-resources"].items():
        extra = str(resources.get("slurm_extra", ""))
        assert "--gres" not in extra and "--gpus" not in extra, rule
    # the GPU request comes from the training rules themselves (resources: gpu=1)
    train_rule = (REPO / "workflow" / "rules" / "train.smk").read_text()
    assert "gpu=1" in train_rule


def test_default_profile():
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile["cores"] == "all" and "gpu=1" in profile["resources"]


def test_workstation_profile_runs_one_gpu_job_at_a_time(pbmc68k_counts, tmp_path):
    """With cores to spare, the two training jobs (iVAE and VAE) still run one after the
    other under profiles/default (gpu=1): the second starts only after the first finished."""
    import re

    from integration_helpers import snakemake, write_config

    (tmp_path / "data").mkdir()
    pbmc68k_counts[:300].write_h5ad(tmp_path / "data" / "d.h5ad")
    write_config(tmp_path, {"datasets": {"d": {"path": "data/d.h5ad"}},
                            "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None, "n_top_genes": 200},
                            "model": {"hidden_dim": 32, "latent_dim": 4}, "train": {"epochs": 2, "batch_size": 64}})
    result = snakemake(tmp_path, "--cores", "8", "--set-threads", "train=1", "train_run=1",
                       "--workflow-profile", str(REPO / "profiles" / "default"),
                       "results/d/model.pt", "results/d/runs/VAE/seed0/model.pt")
    out = result.stdout + result.stderr
    events = re.findall(r"^(?:local)?rule (train|train_run):|^Finished jobid: \d+ \(Rule: (train|train_run)\)", out,
                        flags=re.M)
    sequence = [("start", a) if a else ("end", b) for a, b in events]
    assert len(sequence) == 4 and sequence[0][0] == "start" and sequence[1] == ("end", sequence[0][1]), sequence
    # the jobs asked for what sizing.py computes from their inputs' headers
    import sizing

    size = sizing.matrix_size(tmp_path / "results" / "d" / "preprocessed.h5ad")
    block = re.search(r"^(?:local)?rule train:\n(?:    .*\n)*?    resources: (.*)$", out, flags=re.M).group(1)
    assert f"mem_mb={sizing.mem_mb('train', size)}" in block and f"runtime={sizing.runtime_min('train', size, epochs=2)}" in block, block
