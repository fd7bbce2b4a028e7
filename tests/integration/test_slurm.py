"""The workflow through profiles/slurm on a real single-node SLURM cluster (localhost).

tests/integration/slurm/cluster.sh starts munge, MariaDB, slurmdbd (the executor plugin
reads job states with sacct), slurmctld and slurmd with one GPU backed by /dev/null,
and stops them afterwards. The test skips, saying why, only where that cannot run.
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


def test_workflow_on_slurm_with_a_gpu_request(cluster, pbmc68k_counts, tmp_path):
    from conftest import GLOBAL

    # the repository's profile, with this test cluster's account, partition and sizes
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile.pop("software-deployment-method")  # no conda here: the jobs use this Python
    profile.pop("conda-prefix")
    profile["default-resources"].update(slurm_account="ivae", slurm_partition="debug", mem_mb=1000, runtime=10)
    for rule, resources in profile["set-resources"].items():
        resources.update({k: "debug" for k in resources if k == "slurm_partition"})
        resources.update({k: 1000 for k in resources if k == "mem_mb"})
        resources.update({k: 1 for k in resources if k == "cpus_per_gpu"})
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile["jobs"] = 2
    profile["slurm-init-seconds-before-status-checks"] = 2
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))

    (tmp_path / "data").mkdir()
    pbmc68k_counts.write_h5ad(tmp_path / "data" / "pbmc68k.h5ad")
    write_config(tmp_path, {"datasets": {"pbmc68k": {"path": "data/pbmc68k.h5ad"}},
                            **GLOBAL, "train": {**GLOBAL["train"], "epochs": 3}})
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(tmp_path / "profile"), "results/pbmc68k/embedding.h5ad"]
    run = subprocess.run(cmd, env=cluster, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    import anndata as ad

    emb = ad.read_h5ad(tmp_path / "results" / "pbmc68k" / "embedding.h5ad")
    assert emb.obsm["X_ivae"].shape == (emb.n_obs, 8) and emb.n_obs > 500
    assert len(pd.read_csv(tmp_path / "results" / "pbmc68k" / "training_log.tsv", sep="\t")) == 3

    jobs = subprocess.run(["sacct", "-X", "-P", "-n", "--format=Comment,AllocTRES,State"], env=cluster,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    by_rule = {line.split("|")[0].split("_wildcards")[0]: line for line in jobs}
    assert "gres/gpu=1" in by_rule["rule_train"] and "COMPLETED" in by_rule["rule_train"]
    assert "gres/gpu" not in by_rule["rule_preprocess"]
    log = (tmp_path / "logs" / "train" / "pbmc68k.log").read_text()
    assert "on cpu" in log  # the /dev/null GPU is a GPU to SLURM, not to torch
    assert not torch.cuda.is_available()
