rule metrics:
    """Clustering metrics and correlation scores of iVAE, VAE, PCA, ICA, NMF and FA."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        ivae="results/{dataset}/embedding.h5ad",
        vae="results/{dataset}/vae/embedding.h5ad",
        labels="results/{dataset}/cell_labels.tsv",
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
        mem_mb=job_mem_mb("metrics", "data"),
        runtime=job_runtime("metrics", "data"),
    params:
        label_key=dataset_entry("label_key"),
        seed=seed_param,
    script:
        "../scripts/metrics.py"


rule cell_labels:
    """Leiden clusters, and cell types from labels or marker genes, for figures and metrics."""
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        "results/{dataset}/cell_labels.tsv",
    log:
        "logs/cell_labels/{dataset}.log",
    benchmark:
        "benchmarks/cell_labels/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        mem_mb=job_mem_mb("cell_labels"),
        runtime=job_runtime("cell_labels"),
    params:
        label_key=dataset_entry("label_key"),
        annotation=annotation_params,
        seed=seed_param,
    script:
        "../scripts/cell_labels.py"


rule software_versions:
    """Python, PyTorch (and CUDA), scanpy, anndata, Snakemake and the device used."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model="results/{dataset}/model.pt",
    output:
        "results/{dataset}/software_versions.tsv",
    log:
        "logs/software_versions/{dataset}.log",
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        snakemake_version=SNAKEMAKE_VERSION,
    script:
        "../scripts/software_versions.py"
