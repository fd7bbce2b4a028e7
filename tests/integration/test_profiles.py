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
