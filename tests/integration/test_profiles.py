"""Profiles: parse, refer to real rules, and request GPUs the way the SLURM plugin allows."""

import subprocess
import sys

import pytest
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
    # the GPU request comes from the training rules themselves (sizing.training_claims)
    train_rule = (REPO / "workflow" / "rules" / "train.smk").read_text()
    assert 'gpu=training_claim("gpu")' in train_rule


def test_default_profile():
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile["cores"] == "all" and "gpu=1" in profile["resources"]


@pytest.mark.parametrize("gpu", [True, False], ids=["gpu", "cpu-only"])
def test_workstation_profile_one_gpu_job_at_a_time_cpu_jobs_side_by_side(gpu, pbmc68k_counts, tmp_path):
    """With cores to spare, the two training jobs (iVAE and VAE) run one after the other under
    profiles/default (gpu=1) on a machine with a GPU (here an nvidia-smi on the PATH; torch
    still trains on the CPU), and side by side, one thread each, on a machine without one."""
    import os
    import re

    from integration_helpers import snakemake, write_config

    (tmp_path / "data").mkdir()
    pbmc68k_counts[:300].write_h5ad(tmp_path / "data" / "d.h5ad")
    write_config(tmp_path, {"datasets": {"d": {"path": "data/d.h5ad"}},
                            "preprocess": {"min_genes": 50, "max_genes": None, "max_pct_mt": None, "n_top_genes": 200},
                            "model": {"hidden_dim": 32, "latent_dim": 4, "i_dim": 2}, "train": {"epochs": 2, "batch_size": 64}})
    env = dict(os.environ)
    if gpu:
        fake = tmp_path / "bin" / "nvidia-smi"
        fake.parent.mkdir()
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
        env["PATH"] = f"{fake.parent}{os.pathsep}{env['PATH']}"
    else:
        env["CUDA_VISIBLE_DEVICES"] = "-1"  # no GPU, even on a machine with one
    threads = ["--set-threads", "train=1"] if gpu else []
    result = snakemake(tmp_path, "--cores", "8", *threads, "--workflow-profile", str(REPO / "profiles" / "default"),
                       "results/d/runs/iVAE/seed0/model.pt", "results/d/runs/VAE/seed0/model.pt", env=env)
    out = result.stdout + result.stderr
    events = re.findall(r"^(?:local)?rule (train):|^Finished jobid: \d+ \(Rule: (train)\)", out, flags=re.M)
    sequence = [("start", a) if a else ("end", b) for a, b in events]
    assert len(sequence) == 4 and sequence[0][0] == "start", sequence
    if gpu:
        assert sequence[1] == ("end", sequence[0][1]), sequence
    else:
        assert [kind for kind, _ in sequence] == ["start", "start", "end", "end"], sequence
        for log in (tmp_path / "logs" / "train" / "d" / "iVAE" / "seed0.log",
                    tmp_path / "logs" / "train" / "d" / "VAE" / "seed0.log"):
            assert "on cpu (threads: 1)" in log.read_text()
    # the jobs asked for what sizing.py computes from their inputs' headers
    import sizing

    size = sizing.matrix_size(tmp_path / "results" / "d" / "preprocessed.h5ad")
    block = re.search(r"^(?:local)?rule train:\n(?:    .*\n)*?    resources: (.*)$", out, flags=re.M).group(1)
    assert f"mem_mb={sizing.mem_mb('train', size)}" in block and f"runtime={sizing.runtime_min('train', size, epochs=2)}" in block, block
