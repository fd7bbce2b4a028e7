"""`snakemake --use-conda`: every env of envs/ provides what its rules import, at run time.

Conda channels cannot be reached here, so a fake `conda` (conda_shim/) builds each env as
a virtualenv holding exactly the env file's packages at its versions, installed by pip,
which resolves their dependencies as conda would. Snakemake itself runs from a virtualenv
holding only Snakemake: a script's preamble appends the main process's sys.path to the
env's, so a main process with the workflow's packages would supply what an env lacks.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import GLOBAL, REPO
from integration_helpers import pypi_reachable, write_config

SHIM = Path(__file__).resolve().parent / "conda_shim"
sys.path.insert(0, str(SHIM))
from fake_conda import pypi_requirement  # noqa: E402

#: Marker genes for the unlabelled dataset, so that marker-based annotation runs too.
MARKERS = {"T": ["CD3E", "IL7R"], "B": ["MS4A1", "CD79A"], "NK": ["GNLY", "NKG7"], "Monocyte": ["CD14", "LYZ"]}


pytestmark = pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable: pip cannot build the envs")


def env_requirements(text: str) -> set[str]:
    """The pip requirements the fake conda installs for an env file's text."""
    return {r for r in map(pypi_requirement, yaml.safe_load(text)["dependencies"]) if r}


def rule_scripts() -> dict[str, tuple[str, str]]:
    """Rule name -> (its script's file name, its env's name), read from workflow/rules/*.smk;
    a `use rule A as B` rule has A's."""
    rules, parents = {}, {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=(?:use )?rule )", smk.read_text(), flags=re.M):
            if use := re.match(r"use rule (\w+) as (\w+)", block):
                parents[use[2]] = use[1]
            elif (rule := re.match(r"rule (\w+):", block)) and "script:" in block:
                script = re.search(r'script:\s*\n\s*"([^"]+)"', block)[1]
                conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)[1]
                rules[rule[1]] = (Path(script).name, Path(conda).stem)
    return {**rules, **{child: rules[parent] for child, parent in parents.items()}}


def shim_events(log: Path, event: str) -> list[dict]:
    """The fake conda's records of one kind (``create`` or ``run``) in ``log``."""
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [r for r in records if r["event"] == event]


@pytest.fixture(scope="session")
def snakemake_python(tmp_path_factory) -> Path:
    """The Python of a virtualenv holding only Snakemake (the version requirements.txt pins) and
    pip, which the fake conda, run by this Python, uses to fill the envs."""
    pin = next(line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
               if line.startswith("snakemake=="))
    venv = tmp_path_factory.mktemp("snakemake-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-compile", pin], check=True)
    return python


@pytest.fixture(scope="session")
def conda_snakemake(snakemake_python, tmp_path_factory):
    """Run ``snakemake --use-conda`` with the fake conda; returns (result, fake conda's log).

    The session's runs share one --conda-prefix, so an env file already built (same
    content, hence same Snakemake hash) is reused, as on a cluster.
    """
    conda_prefix = tmp_path_factory.mktemp("conda-envs")

    def run(snakefile: Path, workdir: Path, *targets: str):
        log = workdir / "fake_conda.log"
        env = {**os.environ, "PATH": f"{SHIM / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "CONDA_SHIM_PYTHON": str(snakemake_python), "CONDA_SHIM_LOG": str(log)}
        env.pop("PYTHONPATH", None)  # it would reach the jobs through the main process's sys.path
        # One thread per job, and two trainings at once: most of a job here is single-threaded
        # start-up (imports, first compilation of the env's modules), so two jobs at a time
        # keep both cores busy.
        cmd = [str(snakemake_python), "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
               "--cores", "2", "--max-threads", "1", "--resources", "gpu=2",
               "--use-conda", "--conda-prefix", str(conda_prefix), *targets]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200), log

    return run


#: Every env and nearly every rule, with two trainings (the iVAE and the VAE that the UMAP
#: figure needs) rather than every control: the rules left out (metrics, plot_metrics,
#: plot_spectrum, plot_training) read the models' tables with what run_metrics and the
#: other figure rules import in the same envs. The whole default target runs in test_workflow.
ENV_TARGETS = [f"results/markers/{name}" for name in (
    "adata.h5ad", "figures/qc.png", "figures/latent_correlation.png", "figures/umap.png",
    "figures/component_genes.png", "software_versions.tsv", "runs/iVAE/seed0/run_metrics.tsv",
    "baselines/seed0.tsv")]


@pytest.fixture(scope="module")
def envs_run(conda_snakemake, tmp_path_factory):
    """ENV_TARGETS in the envs, on a built-in source without labels (Leiden clusters named
    by marker genes), with MAD QC and Scrublet doublets, so that every optional import
    (scikit-image's threshold) runs too."""
    workdir = tmp_path_factory.mktemp("conda-wf")
    write_config(workdir, {
        "datasets": {"markers": {"source": "scanpy_pbmc68k_reduced"}},
        **GLOBAL,
        "preprocess": {**GLOBAL["preprocess"], "qc": "mad", "doublets": "scrublet"},
        "train": {**GLOBAL["train"], "epochs": 3},
        "evaluation": {"seeds": [0], "null_draws": 20},
        "annotation": {"markers": MARKERS},
    })
    result, log = conda_snakemake(REPO / "Snakefile", workdir, *ENV_TARGETS)
    assert result.returncode == 0, f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return workdir, log, result


def test_every_env_is_built_from_its_file(envs_run):
    """One virtualenv per env file that the run's rules use, holding that file's packages
    at its versions (scib.yaml's rule is not in this run: its spec is checked by
    tests/unit/test_envs.py, its rule run by test_scib_workflow.py)."""
    _, log, result = envs_run
    created = shim_events(log, "create")
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M)) - {"all"}
    used = {rule_scripts()[job][1] for job in jobs}
    assert {"scanpy", "train", "figures"} <= used
    expected = {p.stem: env_requirements(p.read_text()) for p in (REPO / "envs").glob("*.yaml") if p.stem in used}
    assert sorted(sorted(c["requirements"]) for c in created) == sorted(map(sorted, expected.values()))
    assert {"igraph", "leidenalg", "pynndescent"} <= {r.split("==")[0] for r in expected["scanpy"]}


def test_every_script_ran_in_its_rules_env(envs_run):
    """Each job's script ran on the Python of the env its rule names."""
    _, log, result = envs_run
    env_of_text = {p.read_text(): p.stem for p in (REPO / "envs").glob("*.yaml")}
    env_of_prefix = {os.path.realpath(c["prefix"]): env_of_text[Path(c["file"]).read_text()]
                     for c in shim_events(log, "create")}
    ran = {}
    for event in shim_events(log, "run"):
        script = Path(event["script"]).name.split(".", 1)[1]  # Snakemake runs .snakemake/scripts/tmpXXXX.<name>
        prefix = os.path.realpath(event["prefix"])
        assert Path(event["executable"]).parent == Path(event["prefix"]) / "bin"  # `python` found through activate
        ran.setdefault(script, set()).add(env_of_prefix[prefix])
    rules = rule_scripts()
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M)) - {"all"}
    assert {"obtain_builtin", "preprocess", "train", "embed", "cell_labels", "run_metrics", "baselines", "anndata",
            "plot_embeddings", "plot_latent_correlation", "plot_qc", "component_genes"} <= jobs
    expected = {}
    for job in jobs:
        script, env = rules[job]
        expected.setdefault(script, set()).add(env)
    assert ran == expected


def test_results_come_from_the_envs(envs_run):
    """The outputs are real, and the versions they record are the env files' pins."""
    workdir, _, _ = envs_run
    versions = pd.read_csv(workdir / "results" / "markers" / "software_versions.tsv", sep="\t")
    recorded = {(s, p): v for s, p, v in versions[["step", "software", "version"]].itertuples(index=False)}
    scanpy_pins = dict(r.split("==") for r in env_requirements((REPO / "envs" / "scanpy.yaml").read_text()))
    for package in ("scanpy", "anndata", "numpy", "scipy", "scikit-misc"):
        assert recorded[("preprocess", package)] + ".*" == scanpy_pins[package]
    assert recorded[("train", "torch")].startswith("2.13.0")
    assert recorded[("preprocess", "python")] == recorded[("train", "python")] == ".".join(
        map(str, sys.version_info[:3]))  # a virtualenv runs the interpreter it was made from

    labels = pd.read_csv(workdir / "results" / "markers" / "cell_labels.tsv", sep="\t", index_col=0)
    assert set(labels["label_source"]) == {"markers"} and labels["cluster"].nunique() > 1
    assert set(labels["label"]) <= {*MARKERS, "Unassigned"}
    metrics = pd.concat([pd.read_csv(workdir / "results" / "markers" / path, sep="\t")
                         for path in ("runs/iVAE/seed0/run_metrics.tsv", "baselines/seed0.tsv")])
    assert list(metrics["method"]) == ["iVAE", "PCA", "ICA", "NMF", "FA"]
    assert set(metrics["reference"]) == {"clusters"}
    assert np.isfinite(metrics[["NMI", "ARI", "ASW", "corr_score"]].to_numpy()).all()
    qc = pd.read_csv(workdir / "results" / "markers" / "qc.tsv", sep="\t")
    assert qc["doublet_score"].notna().any()  # Scrublet ran in the scanpy env


def test_a_missing_module_fails_the_run(conda_snakemake, pbmc68k_counts, tmp_path):
    """The check has teeth: with scanpy.yaml as it was before issue 8 (no python-igraph and
    no leidenalg), cell_labels' Leiden clustering fails for want of igraph."""
    workflow = tmp_path / "workflow-copy"
    workflow.mkdir()
    for name in ("Snakefile", "workflow", "envs", "profiles"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, workflow / name)
    env = yaml.safe_load((REPO / "envs" / "scanpy.yaml").read_text())
    env["dependencies"] = [d for d in env["dependencies"] if not d.startswith(("python-igraph", "leidenalg"))]
    (workflow / "envs" / "scanpy.yaml").write_text(yaml.safe_dump(env, sort_keys=False))
    pbmc68k_counts[:300].write_h5ad(workflow / "pbmc68k.h5ad")
    write_config(workflow, {"datasets": {"pbmc68k": {"path": "pbmc68k.h5ad"}}, **GLOBAL})

    result, log = conda_snakemake(workflow / "Snakefile", workflow, "results/pbmc68k/cell_labels.tsv")
    assert result.returncode != 0
    assert "Error in rule cell_labels" in result.stdout + result.stderr
    (created,) = shim_events(log, "create")
    assert not any(r.startswith(("igraph", "leidenalg")) for r in created["requirements"])
    rule_log = (workflow / "logs" / "cell_labels" / "pbmc68k.log").read_text()
    assert "ImportError: Please install the igraph package" in rule_log
    assert (workflow / "results" / "pbmc68k" / "preprocessed.h5ad").stat().st_size > 0  # the env ran until then
    assert not (workflow / "results" / "pbmc68k" / "cell_labels.tsv").exists()
