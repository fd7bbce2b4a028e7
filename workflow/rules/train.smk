wildcard_constraints:
    method="[A-Za-z0-9][A-Za-z0-9_.+=-]*",
    seed="[0-9]+",


rule train:
    """Train the iVAE on the raw counts of the highly variable genes (the GPU rule)."""
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        model="results/{dataset}/model.pt",
        log_tsv="results/{dataset}/training_log.tsv",
    log:
        "logs/train/{dataset}.log",
    benchmark:
        "benchmarks/train/{dataset}.tsv"
    # Priorities order the jobs that are ready at once (local runs): the longest first, so an
    # atlas does not end with one long job on one core. The main model heads the longest
    # chain (embedding, AnnData, figures).
    priority: 1
    conda:
        "../../envs/train.yaml"
    threads: training_claim("threads")
    resources:
        gpu=training_claim("gpu"),
        mem_mb=job_mem_mb("train"),
        runtime=job_runtime("train"),
    params:
        model=model_params,
        train=train_params,
        covariates=covariate_keys,
    script:
        "../scripts/train.py"


use rule train as train_run with:
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        model="results/{dataset}/runs/{method}/seed{seed}/model.pt",
        log_tsv="results/{dataset}/runs/{method}/seed{seed}/training_log.tsv",
    log:
        "logs/train_run/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/train_run/{dataset}/{method}/seed{seed}.tsv"
    priority: 0
    params:
        model=run_model_params,
        train=run_train_params,
        covariates=run_covariates,
