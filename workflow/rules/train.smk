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
    wildcard_constraints:
        method=NOT_STANDARD,
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


rule train_standard:
    """Train a standard model of scvi-tools (scVI or LDVAE) at one seed on the raw counts
    of the highly variable genes, with the workflow's models' cells split and covariates;
    its embedding and held-out likelihood as the embed rule writes them."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        checks="results/{dataset}/input_checks.tsv",
    output:
        model=directory("results/{dataset}/runs/{method}/seed{seed}/scvi_model"),
        log_tsv="results/{dataset}/runs/{method}/seed{seed}/training_log.tsv",
        h5ad="results/{dataset}/runs/{method}/seed{seed}/embedding.h5ad",
        latent="results/{dataset}/runs/{method}/seed{seed}/latent.npy",
        likelihood="results/{dataset}/runs/{method}/seed{seed}/test_likelihood.tsv",
        loadings="results/{dataset}/runs/{method}/seed{seed}/loadings.tsv",
    log:
        "logs/train_standard/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train_standard/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method="|".join(methods.STANDARD),
    conda:
        "../../envs/scvi.yaml"
    threads: training_claim("threads")
    resources:
        gpu=training_claim("gpu"),
        mem_mb=job_mem_mb("train"),
        runtime=job_runtime("train"),
    params:
        method=lambda wildcards: wildcards.method,
        seed=lambda wildcards: int(wildcards.seed),
        train=train_params,
        latent_dim=latent_dim_param,
        covariates=covariate_keys,
        importance_samples=importance_samples,
        likelihood_cells=likelihood_cells,
        eval_seed=eval_seed,
    script:
        "../scripts/standard_models.py"
