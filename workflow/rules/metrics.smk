rule metrics:
    """Clustering metrics and correlation scores of iVAE, VAE, PCA, ICA, NMF and FA."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        ivae="results/{dataset}/embedding.h5ad",
        vae="results/{dataset}/vae/embedding.h5ad",
    output:
        tsv=report(
            "results/{dataset}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"dataset": "{dataset}", "table": "metrics"},
        ),
    log:
        "logs/metrics/{dataset}.log",
    benchmark:
        "benchmarks/metrics/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        label_key=dataset_entry("label_key"),
        seed=seed_param,
    script:
        "../scripts/metrics.py"
