import copy
import re
import sys
from pathlib import Path

from snakemake import __version__ as SNAKEMAKE_VERSION
from snakemake.logging import logger
from snakemake.utils import validate

# sizing.py (standard library only) sizes each job's resources from its input's header.
SCRIPTS = (
    Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parent / "scripts"
)
sys.path.insert(0, str(SCRIPTS))
import sizing

# Per-dataset overrides exactly as the user wrote them: validation below fills schema
# defaults into every section, overrides included, so the merge must use these copies.
_SECTIONS = ("preprocess", "model", "train", "annotation")
_OVERRIDES = {
    name: {s: copy.deepcopy(entry.get(s) or {}) for s in _SECTIONS}
    for name, entry in (config.get("datasets") or {}).items()
    if isinstance(entry, dict)
}

validate(config, "../schemas/config.schema.yaml")

DATASETS = list(config["datasets"])
BUILTIN_SOURCES = sorted(
    {e["source"] for e in config["datasets"].values() if "source" in e}
)


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),


def dataset_params(dataset, section):
    """Global `section` of the config with this dataset's overrides applied."""
    return {**config[section], **_OVERRIDES[dataset][section]}


def counts_input(wildcards):
    """The file holding a dataset's raw counts: the user's path or a fetched source."""
    entry = config["datasets"][wildcards.dataset]
    if "path" in entry:
        return entry["path"]
    return f"results/downloads/{entry['source']}.h5ad"


def preprocess_params(wildcards):
    return dataset_params(wildcards.dataset, "preprocess")


def model_params(wildcards):
    return dataset_params(wildcards.dataset, "model")


def train_params(wildcards):
    return dataset_params(wildcards.dataset, "train")


def annotation_params(wildcards):
    return dataset_params(wildcards.dataset, "annotation")


def dataset_entry(key):
    """Input function for one key of a dataset's entry (counts_layer, label_key)."""

    def get(wildcards):
        return config["datasets"][wildcards.dataset][key]

    return get


def final_outputs():
    return expand(
        [
            "results/{dataset}/embedding.h5ad",
            "results/{dataset}/figures/latent_correlation.pdf",
            "results/{dataset}/figures/latent_correlation.png",
            "results/{dataset}/metrics.tsv",
            "results/{dataset}/figures/metrics.png",
            "results/{dataset}/figures/umap.png",
            "results/{dataset}/figures/interpretative_embedding.png",
            "results/{dataset}/figures/training_curves.png",
            "results/{dataset}/figures/qc.png",
            "results/{dataset}/software_versions.tsv",
        ],
        dataset=DATASETS,
    )


def vae_train_params(wildcards):
    """The dataset's training parameters with irecon = 0: the plain-VAE baseline."""
    return {**train_params(wildcards), "irecon": 0.0}


def seed_param(wildcards):
    return train_params(wildcards)["seed"]


RUN = "beta{beta}_irecon{irecon}_seed{seed}"


def sweep_runs(dataset):
    """(beta, irecon, seed) of every sweep run of a dataset: one factor at a time."""
    train = dataset_params(dataset, "train")
    sweep = config["sweep"]
    runs = {(b, train["irecon"], s) for b in sweep["beta"] for s in sweep["seeds"]}
    runs |= {
        (train["beta"], i, s) for i in [*sweep["irecon"], 0.0] for s in sweep["seeds"]
    }
    return sorted(runs)


def sweep_run_metrics(wildcards):
    return [
        f"results/{wildcards.dataset}/sweep/{RUN.format(beta=f'{b:g}', irecon=f'{i:g}', seed=s)}/metrics.tsv"
        for b, i, s in sweep_runs(wildcards.dataset)
    ]


def sweep_train_params(wildcards):
    return {
        **train_params(wildcards),
        "beta": float(wildcards.beta),
        "irecon": float(wildcards.irecon),
        "seed": int(wildcards.seed),
    }


def sweep_defaults(wildcards):
    train = train_params(wildcards)
    return {"beta": train["beta"], "irecon": train["irecon"]}


def job_mem_mb(step, input_key=0):
    """Resource function: memory (MB) of a `step` job, from the size of its input
    `input_key` (index or name), scaled by the attempt so that a retry asks for more."""

    def mem_mb(wildcards, input, attempt):
        return sizing.mem_mb(step, _input_size(wildcards, input, input_key), attempt)

    return mem_mb


def job_runtime(step, input_key=0):
    """Resource function: runtime (minutes) of a `step` job, like job_mem_mb; training
    time also grows with the dataset's epochs."""

    def runtime(wildcards, input, attempt):
        epochs = train_params(wildcards)["epochs"] if step == "train" else 1
        size = _input_size(wildcards, input, input_key)
        return sizing.runtime_min(step, size, attempt, epochs=epochs)

    return runtime


def _input_size(wildcards, input, input_key):
    path = input[input_key] if isinstance(input_key, int) else getattr(input, input_key)
    layer = None
    if path == counts_input(wildcards):  # the user's file: its counts layer counts
        layer = config["datasets"][wildcards.dataset].get("counts_layer")
    return sizing.matrix_size(path, layer)


def warn_if_gpu_jobs_serialised_on_cluster():
    """`--profile profiles/slurm` loads profiles/default too, whose `gpu=1` then lets one
    training job run at a time on the whole cluster: say so, and what to run instead."""
    if workflow.local_exec or "gpu" not in workflow.global_resources:
        return
    limit = workflow.global_resources["gpu"].value
    logger.warning(
        f"GPU jobs are limited to {limit} at a time on this cluster (resources: gpu={limit}, "
        "from profiles/default unless you set it). For parallel training jobs select the "
        "cluster profile with --workflow-profile profiles/slurm instead of --profile."
    )
