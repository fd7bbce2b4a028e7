import copy
import re
import sys
from argparse import Namespace
from pathlib import Path

import yaml

from snakemake import __version__ as SNAKEMAKE_VERSION
from snakemake.logging import logger
from snakemake.utils import validate

# sizing.py (standard library only) sizes each job's resources from its input's header.
SCRIPTS = (
    Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parent / "scripts"
)
sys.path.insert(0, str(SCRIPTS))
import methods
import run_lock
import sizing

# Per-dataset overrides exactly as the user wrote them: validation below fills schema
# defaults into every section, overrides included, so the merge must use these copies.
_SECTIONS = ("preprocess", "model", "train", "annotation", "evaluation")
_OVERRIDES = {
    name: {s: copy.deepcopy(entry.get(s) or {}) for s in _SECTIONS}
    for name, entry in (config.get("datasets") or {}).items()
    if isinstance(entry, dict)
}

# `compare` likewise: validation fills every train default into each method's entry.
_COMPARE = copy.deepcopy(config.get("compare"))

validate(config, "../schemas/config.schema.yaml")

SCHEMA = yaml.safe_load((SCRIPTS.parent / "schemas" / "config.schema.yaml").read_text())
COMPARE = (
    _COMPARE if _COMPARE is not None else SCHEMA["properties"]["compare"]["default"]
)
for _name, _entry in COMPARE.items():  # a name that is a built-in method is an error
    methods.compare_method(_name, _entry)
for _query, _reference in config["mappings"].items():
    if _query not in config["datasets"] or _reference not in config["datasets"]:
        raise ValueError(
            f"mappings: {_query} -> {_reference}: both must be datasets of `datasets` "
            f"({', '.join(config['datasets'])})"
        )
DATASETS = list(config["datasets"])
BUILTIN_SOURCES = sorted(
    {e["source"] for e in config["datasets"].values() if "source" in e}
)


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)),


#: A method wildcard that is not a standard model (those have their own training rule).
NOT_STANDARD = "(?!(?:" + "|".join(methods.STANDARD) + ")/)[^/]+"


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
            "results/{dataset}/adata.h5ad",
            "results/{dataset}/figures/latent_correlation.pdf",
            "results/{dataset}/figures/latent_correlation.png",
            "results/{dataset}/metrics.tsv",
            "results/{dataset}/figures/metrics.png",
            "results/{dataset}/figures/spectrum.png",
            "results/{dataset}/figures/umap.png",
            "results/{dataset}/figures/interpretative_embedding.png",
            "results/{dataset}/figures/training_curves.png",
            "results/{dataset}/figures/qc.png",
            "results/{dataset}/figures/component_genes.png",
            "results/{dataset}/software_versions.tsv",
        ],
        dataset=DATASETS,
    )


# --- trained models: a method (iVAE, a control, a compared or swept model) x a seed ---


def method_of(dataset, name):
    """The methods.Method called `name` for `dataset`: built-in, a `compare` entry or a
    swept setting ("irecon=0.5")."""
    if name in methods.BUILT_IN:
        return methods.BUILT_IN[name]
    if name in COMPARE:
        return methods.compare_method(name, COMPARE[name], list(COMPARE).index(name))
    model_keys = SCHEMA["$defs"]["model"]["properties"]
    integer_keys = [
        key
        for section in ("model", "train")
        for key, spec in SCHEMA["$defs"][section]["properties"].items()
        if spec.get("type") == "integer"
    ]
    return methods.swept_method(name, model_keys, integer_keys)


def method_overrides(dataset, name):
    """(model, train) values of method `name` that differ from the dataset's settings."""
    return method_of(dataset, name).overrides(
        dataset_params(dataset, "model"), dataset_params(dataset, "train")
    )


def run_dir(dataset, method, seed):
    """Where a trained model's files go: one layout for every model, the main one included."""
    return f"results/{dataset}/runs/{method}/seed{seed}"


def is_main_run(wildcards):
    """Whether a job's run is the dataset's main model: the iVAE at train.seed."""
    return wildcards.method == methods.MAIN and int(wildcards.seed) == primary_seed(
        wildcards
    )


def train_priority(wildcards):
    """Priorities order the jobs that are ready at once (local runs): the longest first, so
    an atlas does not end with one long job on one core. The main model (the iVAE at
    train.seed) heads the longest chain (embedding, AnnData, figures)."""
    return 1 if is_main_run(wildcards) else 0


def dataset_seeds(dataset):
    """The dataset's evaluation seeds: every model is trained once per seed."""
    return dataset_params(dataset, "evaluation")["seeds"]


def standard_seeds(dataset):
    """The seeds of the standard models (scVI, LDVAE): evaluation.standard_seeds, else every
    evaluation seed; they must be evaluation seeds (the verdict pairs them by seed)."""
    seeds = dataset_params(dataset, "evaluation")["standard_seeds"]
    if seeds is None:
        return dataset_seeds(dataset)
    extra = sorted(set(seeds) - set(dataset_seeds(dataset)))
    if extra:
        raise ValueError(
            f"config evaluation.standard_seeds: {extra} are not evaluation seeds of dataset "
            f"{dataset!r} ({dataset_seeds(dataset)}); the standard models are compared with "
            "the other models seed by seed."
        )
    return list(seeds)


def method_seeds(dataset, method):
    """The seeds `method` is trained at: standard_seeds for scVI and LDVAE, else every
    evaluation seed."""
    if method in methods.STANDARD:
        return standard_seeds(dataset)
    return dataset_seeds(dataset)


def run_files(dataset, names, name):
    """`name` (e.g. run_metrics.tsv) of every method in `names` x its seeds (method_seeds)."""
    return [
        f"{run_dir(dataset, m, s)}/{name}"
        for m in names
        for s in method_seeds(dataset, m)
    ]


def method_colours(dataset, names):
    """Each method's colour in the figures of `dataset` (methods.py, config `compare`)."""
    return {name: method_of(dataset, name).colour for name in names}


def run_model_params(wildcards):
    model, _ = method_overrides(wildcards.dataset, wildcards.method)
    return {**model_params(wildcards), **model}


def run_train_params(wildcards):
    _, train = method_overrides(wildcards.dataset, wildcards.method)
    return {**train_params(wildcards), **train, "seed": int(wildcards.seed)}


def sweep_methods(dataset):
    """The swept methods ("key=value") of `sweep`, values different from the dataset's."""
    settings = {**dataset_params(dataset, "model"), **dataset_params(dataset, "train")}
    methods = []
    for section in ("model", "train"):
        for key, values in config["sweep"][section].items():
            methods += [f"{key}={v:g}" for v in values if v != settings[key]]
    return methods


def check_model_widths():
    """Fail before any job runs, naming the dataset and model, where i_dim >= latent_dim:
    the dataset's own settings, every `sweep` value and every `compare` model."""
    for dataset in DATASETS:
        own = dataset_params(dataset, "model")
        for method in [methods.MAIN, *sweep_methods(dataset), *COMPARE]:
            model = {**own, **method_overrides(dataset, method)[0]}
            if model["i_dim"] >= model["latent_dim"]:
                where = "" if method == methods.MAIN else f" ({method})"
                raise ValueError(
                    f"datasets.{dataset}{where}: model.i_dim ({model['i_dim']}) must be smaller "
                    f"than model.latent_dim ({model['latent_dim']}): the interpretative module "
                    "compresses the latent to i_dim components."
                )


check_model_widths()


def eval_seed(wildcards):
    return dataset_params(wildcards.dataset, "evaluation")["seed"]


def null_draws(wildcards):
    return dataset_params(wildcards.dataset, "evaluation")["null_draws"]


def importance_samples(wildcards):
    return dataset_params(wildcards.dataset, "evaluation")["importance_samples"]


def likelihood_cells(wildcards):
    return dataset_params(wildcards.dataset, "evaluation")["likelihood_cells"]


def max_cells_param(wildcards):
    """evaluation.max_cells: above it, superlinear cell-level steps run on a subsample."""
    return dataset_params(wildcards.dataset, "evaluation")["max_cells"]


def primary_seed(wildcards):
    return train_params(wildcards)["seed"]


def job_mem_mb(step, input_key=0, subsampled=False):
    """Resource function: memory (MB) of a `step` job, from the size of its input
    `input_key` (index or name), scaled by the attempt so that a retry asks for more;
    `subsampled`: the job reads only evaluation.max_cells rows of its matrix above it.
    """

    def mem_mb(wildcards, input, attempt):
        max_cells = max_cells_param(wildcards) if subsampled else None
        # the preprocess rule streams inputs stored by rows (map_genes reads its query whole)
        streams = step == "preprocess" and hasattr(wildcards, "dataset")
        chunk_cells = preprocess_params(wildcards)["chunk_cells"] if streams else None
        return sizing.mem_mb(
            step,
            _input_size(wildcards, input, input_key),
            attempt,
            max_cells=max_cells,
            chunk_cells=chunk_cells,
        )

    return mem_mb


def job_runtime(step, input_key=0):
    """Resource function: runtime (minutes) of a `step` job, like job_mem_mb; training
    time also grows with the dataset's epochs."""

    def runtime(wildcards, input, attempt):
        epochs = train_params(wildcards)["epochs"] if step == "train" else 1
        size = _input_size(wildcards, input, input_key)
        return sizing.runtime_min(step, size, attempt, epochs=epochs)

    return runtime


def job_threads(threads, input_key=0):
    """Threads function: `threads` for a job on at least sizing.SMALL_JOB_CELLS cells (its
    input `input_key`), else one (sizing.job_threads); in a local run at most half the
    cores (sizing.local_thread_cap), so that jobs run beside the trainings."""

    def get(wildcards, input):
        n = sizing.job_threads(threads, _input_size(wildcards, input, input_key))
        if workflow.local_exec and workflow.global_resources.get("_cores"):
            n = min(n, sizing.local_thread_cap(workflow.cores))
        return n

    return get


GPU_VISIBLE = sizing.gpu_visible()


def training_claim(kind):
    """Resource/threads function of the rules that train or fine-tune a model: the GPUs
    (`kind` "gpu") or threads a job claims, from its train.device (sizing.training_claims):
    a job that will run on the CPU claims no GPU, and in a local run one thread. A mapping
    job (map_embed, which may fine-tune new covariate weights) follows its reference's.
    """

    def claim(wildcards):
        if hasattr(wildcards, "reference"):
            params = dataset_params(wildcards.reference, "train")
        elif hasattr(wildcards, "method"):
            params = run_train_params(wildcards)
        else:
            params = train_params(wildcards)
        gpus, threads = sizing.training_claims(
            str(params["device"]), local=workflow.local_exec, gpu=GPU_VISIBLE
        )
        return gpus if kind == "gpu" else threads

    return claim


def _input_size(wildcards, input, input_key):
    path = input[input_key] if isinstance(input_key, int) else getattr(input, input_key)
    # a dataset's own file (or a mapping query's): its counts layer is what counts
    dataset = getattr(wildcards, "dataset", None) or getattr(wildcards, "query", None)
    layer = None
    if dataset and path == counts_input(Namespace(dataset=dataset)):
        layer = config["datasets"][dataset].get("counts_layer")
    return sizing.matrix_size(path, layer)


def remove_stale_locks():
    """Before Snakemake locks the directory: the locks of a run of this machine that was
    killed outright are removed (run_lock.py), so the same command resumes it."""
    if workflow.is_main_process:
        done = run_lock.remove_stale_locks(Path(".snakemake"))
        if done:
            logger.warning(done)


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


def latent_dim_param(wildcards):
    return model_params(wildcards)["latent_dim"]


def baseline_files(dataset):
    """The linear baselines' tables, one per evaluation seed."""
    return [f"results/{dataset}/baselines/seed{s}.tsv" for s in dataset_seeds(dataset)]


def compare_methods(dataset):
    """The trained models of `snakemake compare`: the default run's, the standard models
    (scVI, LDVAE) and config `compare`."""
    return [*default_methods(dataset), *methods.STANDARD, *COMPARE]


def standard_models(dataset):
    """The standard models (scVI, LDVAE) of the dataset's default run: evaluation.standard_models."""
    return list(dataset_params(dataset, "evaluation")["standard_models"])


def table_methods(dataset):
    """The trained models of the dataset's metrics table: the default run's and its standard models."""
    return [*default_methods(dataset), *standard_models(dataset)]


def input_check_settings(wildcards):
    """check_input's settings: the dataset's own training settings (those of every model
    that does not override them; a model that does, e.g. a swept batch size, is checked
    by its training job). Settings that rarely change, and that retrain every model when
    they do, so that the check never reruns alone."""
    train = train_params(wildcards)
    return {
        key: train[key]
        for key in ("batch_size", "validation_fraction", "test_fraction")
    }


def sweep_run_methods(dataset):
    """The trained models of `snakemake sweep`: the iVAE, the VAE and every swept value."""
    return [methods.MAIN, "VAE", *sweep_methods(dataset)]


def default_run_metrics(wildcards):
    return [
        *run_files(
            wildcards.dataset, table_methods(wildcards.dataset), "run_metrics.tsv"
        ),
        *baseline_files(wildcards.dataset),
    ]


def compare_run_metrics(wildcards):
    return [
        *run_files(
            wildcards.dataset, compare_methods(wildcards.dataset), "run_metrics.tsv"
        ),
        *baseline_files(wildcards.dataset),
    ]


def sweep_run_metrics(wildcards):
    return run_files(
        wildcards.dataset, sweep_run_methods(wildcards.dataset), "run_metrics.tsv"
    )


def null_seeds(wildcards):
    """The iVAE seeds whose latent correlation is tested: every evaluation seed and train.seed."""
    return list(
        dict.fromkeys([*dataset_seeds(wildcards.dataset), primary_seed(wildcards)])
    )


def ivae_embeddings(wildcards):
    return [
        f"{run_dir(wildcards.dataset, methods.MAIN, s)}/embedding.h5ad"
        for s in null_seeds(wildcards)
    ]


def module_comparison_runs(wildcards):
    """(method, seed) of the latent-correlation comparison: the iVAE and the module's
    controls (methods.MODULE_CONTROLS) at every seed of the dataset."""
    names = [methods.MAIN, *methods.MODULE_CONTROLS]
    return [(m, s) for m in names for s in dataset_seeds(wildcards.dataset)]


def module_comparison_embeddings(wildcards):
    return [
        f"{run_dir(wildcards.dataset, m, s)}/embedding.h5ad"
        for m, s in module_comparison_runs(wildcards)
    ]


#: Datasets the scIB metrics apply to: those with a batch key and cell-type labels.
SCIB_DATASETS = [
    d
    for d, entry in config["datasets"].items()
    if entry["batch_key"] and entry["label_key"]
]


def scib_runs(wildcards):
    """(method, seed) of the scIB table: every default-run model and the standard models
    (scVI with the batch covariate, the field's reference for batch correction, and LDVAE).
    """
    names = dict.fromkeys([*default_methods(wildcards.dataset), *methods.STANDARD])
    return [(m, s) for m in names for s in method_seeds(wildcards.dataset, m)]


def scib_embeddings(wildcards):
    return [
        f"{run_dir(wildcards.dataset, m, s)}/embedding.h5ad"
        for m, s in scib_runs(wildcards)
    ]


def default_embeddings(wildcards):
    return run_files(
        wildcards.dataset, default_methods(wildcards.dataset), "embedding.h5ad"
    )


def compare_embeddings(wildcards):
    return run_files(
        wildcards.dataset, compare_methods(wildcards.dataset), "embedding.h5ad"
    )


def runs_of(names_of):
    """Params function: the [method, seed] of each embedding that an input function built
    from `names_of(dataset)` with run_files lists, in the same order."""

    def get(wildcards):
        return [
            [m, s]
            for m in names_of(wildcards.dataset)
            for s in method_seeds(wildcards.dataset, m)
        ]

    return get


def colours_of(names_of):
    """Params function: the colours of the trained models `names_of(dataset)` lists."""

    def get(wildcards):
        return method_colours(wildcards.dataset, names_of(wildcards.dataset))

    return get


def main_seed_file(method, name):
    """Input function: `name` of `method`'s model at the dataset's train.seed."""

    def get(wildcards):
        return f"{run_dir(wildcards.dataset, method, primary_seed(wildcards))}/{name}"

    return get


def default_methods_param(wildcards):
    return default_methods(wildcards.dataset)


def main_training_logs(wildcards):
    """The training logs of every default method's model at train.seed."""
    return [
        main_seed_file(m, "training_log.tsv")(wildcards)
        for m in default_methods(wildcards.dataset)
    ]


def default_irecon(wildcards):
    """Each default method's irecon weight (its objective's module term), by method."""
    return {
        m: {**train_params(wildcards), **method_overrides(wildcards.dataset, m)[1]}[
            "irecon"
        ]
        for m in default_methods(wildcards.dataset)
    }


def main_run_file(name):
    """Input function: a file of the dataset's main model (the iVAE at train.seed)."""
    return main_seed_file(methods.MAIN, name)


def sweep_defaults(wildcards):
    """The dataset's value of every swept setting (where the one-factor sweeps cross)."""
    settings = {**model_params(wildcards), **train_params(wildcards)}
    swept = [*config["sweep"]["model"], *config["sweep"]["train"]]
    return {key: settings[key] for key in swept}


def covariate_keys(wildcards):
    """The obs columns a dataset's models are conditioned on: batch_key, then covariate_keys."""
    entry = config["datasets"][wildcards.dataset]
    keys = [entry["batch_key"]] if entry["batch_key"] else []
    return keys + [k for k in entry["covariate_keys"] if k not in keys]


def run_covariates(wildcards):
    """A trained model's covariates: the dataset's, except for the control without them."""
    if not method_of(wildcards.dataset, wildcards.method).covariates:
        return []
    return covariate_keys(wildcards)


def has_covariates(dataset):
    entry = config["datasets"][dataset]
    return bool(entry["batch_key"] or entry["covariate_keys"])


def default_methods(dataset):
    """The models of the default run: the iVAE, its controls, and with covariates the
    iVAE without them (to show what conditioning does)."""
    return methods.default_methods(has_covariates(dataset))


def no_covariate_embedding(wildcards):
    """The embedding of the iVAE without covariates (the main seed), where the dataset has any."""
    if not has_covariates(wildcards.dataset):
        return []
    return [main_seed_file(methods.NO_COVARIATES, "embedding.h5ad")(wildcards)]


wildcard_constraints:
    query="|".join(map(re.escape, DATASETS)),
    reference="|".join(map(re.escape, DATASETS)),


def query_counts_input(wildcards):
    return counts_input(Namespace(dataset=wildcards.query))


def query_entry(key):
    """Input function for one key of the query dataset's entry."""

    def get(wildcards):
        return config["datasets"][wildcards.query][key]

    return get


def query_preprocess_params(wildcards):
    return dataset_params(wildcards.query, "preprocess")


def reference_model(wildcards):
    """The reference's main model (the iVAE at its train.seed)."""
    seed = dataset_params(wildcards.reference, "train")["seed"]
    return f"{run_dir(wildcards.reference, methods.MAIN, seed)}/model.pt"


#: Datasets the paper's protocol is compared on: those with cell-type labels.
PAPER_DATASETS = [d for d, entry in config["datasets"].items() if entry["label_key"]]
#: The reference package's two models: its iVAE (config paper.irecon) and its VAE (0).
PAPER_IRECON = {"iVAE": float(config["paper"]["irecon"]), "VAE": 0.0}


def paper_seeds(dataset):
    """The seeds of the paper-protocol comparison: config paper.seeds, else the dataset's
    evaluation seeds; they must be evaluation seeds (the workflow's models are those).
    """
    seeds = config["paper"]["seeds"]
    if seeds is None:
        return dataset_seeds(dataset)
    extra = sorted(set(seeds) - set(dataset_seeds(dataset)))
    if extra:
        raise ValueError(
            f"config paper.seeds: {extra} are not evaluation seeds of dataset {dataset!r} "
            f"({dataset_seeds(dataset)}); the paper's protocol scores the default run's models."
        )
    return list(seeds)


def paper_reference_scores(wildcards):
    return [
        f"results/{wildcards.dataset}/paper/{m}/seed{s}/scores.tsv"
        for m in PAPER_IRECON
        for s in paper_seeds(wildcards.dataset)
    ]


def paper_workflow_scores(wildcards):
    return [
        f"{run_dir(wildcards.dataset, m, s)}/paper_scores.tsv"
        for m in PAPER_IRECON
        for s in paper_seeds(wildcards.dataset)
    ]


def component_runs(wildcards):
    """(method, seed) of `snakemake components`: the module comparison's models and the
    standard models (scVI, LDVAE), each at its seeds (method_seeds)."""
    names = [methods.MAIN, *methods.MODULE_CONTROLS, *methods.STANDARD]
    return [(m, s) for m in names for s in method_seeds(wildcards.dataset, m)]


def component_embeddings(wildcards):
    return [
        f"{run_dir(wildcards.dataset, m, s)}/embedding.h5ad"
        for m, s in component_runs(wildcards)
    ]


def ldvae_loadings(wildcards):
    return [
        f"{run_dir(wildcards.dataset, 'LDVAE', s)}/loadings.tsv"
        for s in standard_seeds(wildcards.dataset)
    ]
