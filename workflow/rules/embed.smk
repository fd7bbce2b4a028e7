rule embed:
    """Posterior-mean embeddings of every cell: eval mode, no gradients, in batches."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model="results/{dataset}/model.pt",
    output:
        h5ad="results/{dataset}/embedding.h5ad",
        latent="results/{dataset}/latent.npy",
        iembed="results/{dataset}/iembed.npy",
    log:
        "logs/embed/{dataset}.log",
    benchmark:
        "benchmarks/embed/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: job_threads(2, "data")
    resources:
        mem_mb=job_mem_mb("embed", "data"),
        runtime=job_runtime("embed", "data"),
    params:
        batch_size=4096,
    script:
        "../scripts/embed.py"


use rule embed as embed_run with:
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model="results/{dataset}/runs/{method}/seed{seed}/model.pt",
    output:
        h5ad="results/{dataset}/runs/{method}/seed{seed}/embedding.h5ad",
        latent="results/{dataset}/runs/{method}/seed{seed}/latent.npy",
        iembed="results/{dataset}/runs/{method}/seed{seed}/iembed.npy",
    log:
        "logs/embed_run/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "benchmarks/embed_run/{dataset}/{method}/seed{seed}.tsv"
