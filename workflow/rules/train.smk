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
    conda:
        "../../envs/train.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=job_mem_mb("train"),
        runtime=job_runtime("train"),
    params:
        model=model_params,
        train=train_params,
    script:
        "../scripts/train.py"


use rule train as train_vae with:
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        model="results/{dataset}/vae/model.pt",
        log_tsv="results/{dataset}/vae/training_log.tsv",
    log:
        "logs/train_vae/{dataset}.log",
    benchmark:
        "benchmarks/train_vae/{dataset}.tsv"
    params:
        model=model_params,
        train=vae_train_params,
