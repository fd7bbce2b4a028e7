wildcard_constraints:
    method="[A-Za-z0-9][A-Za-z0-9_.+=-]*",
    seed="[0-9]+",


rule train:
    """Train one model (the iVAE, a control, a compared or swept model) at one seed on the
    raw counts of the highly variable genes (the GPU rule)."""
    input:
        "results/{dataset}/preprocessed.h5ad",
        checks="results/{dataset}/input_checks.tsv",  # after the input checks
    output:
        model="results/{dataset}/runs/{method}/seed{seed}/model.pt",
        log_tsv="results/{dataset}/runs/{method}/seed{seed}/training_log.tsv",
    log:
        "logs/train/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{method}/seed{seed}.tsv"
    priority: train_priority
    conda:
        "../../envs/train.yaml"
    threads: training_claim("threads")
    resources:
        gpu=training_claim("gpu"),
        mem_mb=job_mem_mb("train"),
        runtime=job_runtime("train"),
    params:
        model=run_model_params,
        train=run_train_params,
        covariates=run_covariates,
    script:
        "../scripts/train.py"
