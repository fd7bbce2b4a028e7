rule preprocess:
    """QC, normalisation and highly variable genes with scanpy; raw counts kept."""
    input:
        counts_input,
    output:
        h5ad="results/{dataset}/preprocessed.h5ad",
        qc="results/{dataset}/qc.tsv",
        bounds="results/{dataset}/qc_bounds.tsv",
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "logs/benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("preprocess"),
        runtime=job_runtime("preprocess"),
    params:
        dataset="{dataset}",
        counts_layer=dataset_entry("counts_layer"),
        label_key=dataset_entry("label_key"),
        batch_key=dataset_entry("batch_key"),
        covariates=covariate_keys,
        preprocess=preprocess_params,
    script:
        "../scripts/preprocess.py"


rule plot_qc:
    """Distributions of the QC metrics with their thresholds, and which cells were removed."""
    input:
        qc="results/{dataset}/qc.tsv",
        bounds="results/{dataset}/qc_bounds.tsv",
    output:
        pdf="results/{dataset}/figures/qc.pdf",
        png=report(
            "results/{dataset}/figures/qc.png",
            caption="../report/qc.rst",
            category="Quality control",
            labels={"dataset": "{dataset}", "figure": "QC"},
        ),
    log:
        "logs/plot_qc/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_qc/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/plot_qc.py"
