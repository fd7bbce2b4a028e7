rule embed:
    """Posterior-mean embeddings of every cell by one trained model (eval mode, no
    gradients, in batches), and its held-out likelihood on its test cells."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model="results/{dataset}/runs/{method}/seed{seed}/model.pt",
    output:
        h5ad="results/{dataset}/runs/{method}/seed{seed}/embedding.h5ad",
        latent="results/{dataset}/runs/{method}/seed{seed}/latent.npy",
        iembed="results/{dataset}/runs/{method}/seed{seed}/iembed.npy",
        likelihood="results/{dataset}/runs/{method}/seed{seed}/test_likelihood.tsv",
    log:
        "logs/embed/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/embed/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method=NOT_STANDARD,
    conda:
        "../../envs/train.yaml"
    threads: job_threads(2, "data")
    resources:
        mem_mb=job_mem_mb("embed", "data"),
        runtime=job_runtime("embed", "data"),
    params:
        batch_size=4096,
        importance_samples=importance_samples,
        likelihood_cells=likelihood_cells,
        seed=eval_seed,
    script:
        "../scripts/embed.py"
