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


rule check_input:
    """Before any training: the preprocessed dataset fits every step of the run at the
    dataset's settings (a batch of training cells, baselines' components, label groups).
    """
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        "results/{dataset}/input_checks.tsv",
    log:
        "logs/check_input/{dataset}.log",
    localrule: True
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        dataset="{dataset}",
        label_key=dataset_entry("label_key"),
        n_components=latent_dim_param,
        training=input_check_settings,
    script:
        "../scripts/input_checks.py"


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
