"""The workflow through profiles/slurm on a real single-node SLURM cluster (localhost).

tests/integration/slurm/cluster.sh starts munge, MariaDB, slurmdbd (the executor plugin
reads job states with sacct), slurmctld and slurmd with two GPUs backed by /dev/null and
/dev/zero, and stops them afterwards. The test skips, saying why, only where that cannot
run.
"""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from integration_helpers import REPO, write_config

CLUSTER = REPO / "tests" / "integration" / "slurm" / "cluster.sh"
NEEDED = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sacct", "sbatch")


def why_not() -> str | None:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        return f"SLURM test needs Debian's slurm-wlm, slurmdbd, munge and mariadb-server; missing: {missing}"
    if os.geteuid() != 0:
        return "SLURM test starts slurmctld/slurmd/slurmdbd and needs root"
    return None


pytestmark = pytest.mark.skipif(why_not() is not None, reason=why_not() or "")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    started = subprocess.run(["bash", str(CLUSTER), "start", str(state)], env=env, capture_output=True, text=True)
    if started.returncode == 3:
        pytest.skip(started.stderr.strip())
    if started.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], env=env)
        pytest.fail(f"could not start the SLURM cluster:\n{started.stdout}\n{started.stderr}")
    yield env
    subprocess.run(["bash", str(CLUSTER), "stop", str(state)], env=env)


def sacct_jobs(env) -> dict:
    """rule name -> [{Comment, AllocTRES, State, Start, End}, ...] of every job in the
    accounting database (the plugin's comment: rule_{rule}_wildcards_{values})."""
    fields = ["Comment", "AllocTRES", "State", "Start", "End"]
    lines = subprocess.run(["sacct", "-X", "-P", "-n", f"--format={','.join(fields)}"], env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    jobs: dict[str, list] = {}
    for line in lines:
        row = dict(zip(fields, line.split("|")))
        jobs.setdefault(row["Comment"].split("_wildcards")[0].removeprefix("rule_"), []).append(row)
    return jobs


def test_workflow_on_slurm_gpu_jobs_in_parallel(cluster, pbmc68k_counts, tmp_path):
    """Both training jobs (iVAE and VAE) get a GPU each and run at the same time."""
    import anndata as ad
    from conftest import GLOBAL

    # the repository's profile, with this test cluster's account, partition and sizes
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile.pop("software-deployment-method")  # no conda here: the jobs use this Python
    profile.pop("conda-prefix")
    profile["default-resources"].update(slurm_account="ivae", slurm_partition="debug", mem_mb=1000, runtime=10)
    for resources in profile["set-resources"].values():
        resources.update({k: "debug" for k in resources if k == "slurm_partition"})
        resources.update({k: 1 for k in resources if k == "cpus_per_gpu"})
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile["jobs"] = 3
    profile["slurm-init-seconds-before-status-checks"] = 2
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))

    (tmp_path / "data").mkdir()
    pbmc68k_counts.write_h5ad(tmp_path / "data" / "pbmc68k.h5ad")
    write_config(tmp_path, {"datasets": {"pbmc68k": {"path": "data/pbmc68k.h5ad"}},
                            **GLOBAL, "train": {**GLOBAL["train"], "epochs": 8}})
    # As docs/cluster.md says: the cluster profile replaces the workstation one (profiles/default).
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--workflow-profile", str(tmp_path / "profile"),
           "results/pbmc68k/runs/iVAE/seed0/embedding.h5ad", "results/pbmc68k/runs/VAE/seed0/embedding.h5ad"]
    run = subprocess.run(cmd, env=cluster, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "GPU jobs are limited" not in run.stdout + run.stderr

    for model in ("iVAE", "VAE"):
        run_dir = tmp_path / "results" / "pbmc68k" / "runs" / model / "seed0"
        emb = ad.read_h5ad(run_dir / "embedding.h5ad")
        assert emb.obsm["X_ivae"].shape == (emb.n_obs, 8) and emb.n_obs > 500
        assert len(pd.read_csv(run_dir / "training_log.tsv", sep="\t")) == 8

    jobs = sacct_jobs(cluster)
    assert len(jobs["train"]) == 2, jobs["train"]  # the iVAE's and the VAE's, one rule
    train, train_vae = sorted(jobs["train"], key=lambda job: "_iVAE_" in job["Comment"])
    for job in (train, train_vae):
        assert "gres/gpu=1" in job["AllocTRES"] and job["State"] == "COMPLETED", job
    assert "gres/gpu" not in jobs["preprocess"][0]["AllocTRES"]
    # ISO timestamps compare as strings: each started before the other ended
    assert train["Start"] < train_vae["End"] and train_vae["Start"] < train["End"], (train, train_vae)
    # memory came from the rules' size-based requests, not the profile's 1,000 MB default
    assert "mem=1000M" not in train["AllocTRES"], train
    log = (tmp_path / "logs" / "train" / "pbmc68k" / "iVAE" / "seed0.log").read_text()
    assert "on cpu" in log  # the /dev/null GPU is a GPU to SLURM, not to torch
    assert not torch.cuda.is_available()


def test_profile_slurm_with_default_profile_warns(cluster, pbmc68k_counts, tmp_path):
    """`--profile` (instead of --workflow-profile) keeps the workstation's gpu=1: warned."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile.pop("software-deployment-method")
    profile.pop("conda-prefix")
    profile["default-resources"].update(slurm_account="ivae", slurm_partition="debug")
    profile["slurm-init-seconds-before-status-checks"] = 2
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    (tmp_path / "data").mkdir()
    pbmc68k_counts[:300].write_h5ad(tmp_path / "data" / "d.h5ad")
    write_config(tmp_path, {"datasets": {"d": {"path": "data/d.h5ad"}}})
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(tmp_path / "profile"), "--workflow-profile", str(REPO / "profiles" / "default"),
           "results/d/preprocessed.h5ad"]
    # The warning comes at the start (onstart): stop the run once it is seen.
    seen = []
    with subprocess.Popen(cmd, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as run:
        try:
            for line in run.stdout:
                seen.append(line)
                if "GPU jobs are limited to 1 at a time" in line:
                    break
        finally:
            run.kill()  # the job it may have submitted ends with the test cluster (the fixture's stop)
            run.wait()
    assert any("GPU jobs are limited to 1 at a time" in line for line in seen), "".join(seen)
