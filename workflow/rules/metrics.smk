rule cell_labels:
    """Leiden clusters, and cell types from labels or marker genes, for figures and metrics."""
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        "results/{dataset}/cell_labels.tsv",
    log:
        "logs/cell_labels/{dataset}.log",
    benchmark:
        "logs/benchmarks/cell_labels/{dataset}.tsv"
    priority: 1  # unblocks the baselines and metrics: start it as soon as a core is free
    conda:
        "../../envs/scanpy.yaml"
    threads: job_threads(2, 0)
    resources:
        mem_mb=job_mem_mb("cell_labels", subsampled=True),
        runtime=job_runtime("cell_labels"),
    params:
        label_key=dataset_entry("label_key"),
        annotation=annotation_params,
        max_cells=max_cells_param,
    script:
        "../scripts/cell_labels.py"


rule run_metrics:
    """One trained model's row of the metrics table: clustering against the reference
    (KMeans seeded with the training seed), correlation score, effective dimensionality,
    held-out likelihood."""
    input:
        embedding="results/{dataset}/runs/{method}/seed{seed}/embedding.h5ad",
        log_tsv="results/{dataset}/runs/{method}/seed{seed}/training_log.tsv",
        likelihood="results/{dataset}/runs/{method}/seed{seed}/test_likelihood.tsv",
        labels="results/{dataset}/cell_labels.tsv",
    output:
        "results/{dataset}/runs/{method}/seed{seed}/run_metrics.tsv",
    log:
        "logs/run_metrics/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/run_metrics/{dataset}/{method}/seed{seed}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("figures", "embedding"),
        runtime=job_runtime("figures", "embedding"),
    params:
        method="{method}",
        seed="{seed}",
        batch_key=dataset_entry("batch_key"),
        max_cells=max_cells_param,
    script:
        "../scripts/run_metrics.py"


rule baselines:
    """PCA, ICA, NMF and factor analysis of the log-normalised genes, fitted with one seed
    per training seed, scored like the models."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        labels="results/{dataset}/cell_labels.tsv",
        checks="results/{dataset}/input_checks.tsv",
    output:
        "results/{dataset}/baselines/seed{seed}.tsv",
    log:
        "logs/baselines/{dataset}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/baselines/{dataset}/seed{seed}.tsv"
    priority: 1  # the longest job after the trainings (minutes on an atlas): not last
    conda:
        "../../envs/scanpy.yaml"
    threads: job_threads(2, "data")
    resources:
        mem_mb=job_mem_mb("metrics", "data", subsampled=True),
        runtime=job_runtime("metrics", "data"),
    params:
        fit_seed="{seed}",
        eval_seed=eval_seed,
        batch_key=dataset_entry("batch_key"),
        n_components=latent_dim_param,
        max_cells=max_cells_param,
    script:
        "../scripts/baselines.py"


rule metrics:
    """The iVAE and its controls over every seed, and the baselines: all rows and the summary."""
    input:
        default_run_metrics,
    output:
        table=report(
            "results/{dataset}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"dataset": "{dataset}", "table": "metrics"},
        ),
        summary="results/{dataset}/metrics_summary.tsv",
    log:
        "logs/metrics/{dataset}.log",
    benchmark:
        "logs/benchmarks/metrics/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/metrics_table.py"


use rule metrics as compare_metrics with:
    input:
        compare_run_metrics,
    output:
        table="results/{dataset}/compare/metrics.tsv",
        summary="results/{dataset}/compare/metrics_summary.tsv",
    log:
        "logs/compare_metrics/{dataset}.log",
    benchmark:
        "logs/benchmarks/compare_metrics/{dataset}.tsv"


use rule metrics as sweep_metrics with:
    input:
        sweep_run_metrics,
    output:
        table="results/{dataset}/sweep/metrics.tsv",
        summary="results/{dataset}/sweep/metrics_summary.tsv",
    log:
        "logs/sweep_metrics/{dataset}.log",
    benchmark:
        "logs/benchmarks/sweep_metrics/{dataset}.tsv"


rule correlation_nulls:
    """Mean |off-diagonal r| of the latent before and after the interpretative module, for
    every iVAE seed, against its nulls: permuted components, an untrained module."""
    input:
        ivae_embeddings,
    output:
        summary="results/{dataset}/latent_correlation.tsv",
        draws="results/{dataset}/latent_correlation_null.tsv",
    log:
        "logs/correlation_nulls/{dataset}.log",
    benchmark:
        "logs/benchmarks/correlation_nulls/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("figures", 0),
        runtime=job_runtime("figures", 0),
    params:
        seeds=null_seeds,
        eval_seed=eval_seed,
        n_draws=null_draws,
    script:
        "../scripts/correlation_nulls.py"


rule correlation_models:
    """Mean |off-diagonal r| of z and of the latent after the module for the iVAE and its
    controls at the same seeds, and the paired tests (iVAE minus each control; the VAE's
    untrained module as the second null after the module)."""
    input:
        module_comparison_embeddings,
    output:
        table="results/{dataset}/latent_correlation_models.tsv",
        tests="results/{dataset}/latent_correlation_tests.tsv",
    log:
        "logs/correlation_models/{dataset}.log",
    benchmark:
        "logs/benchmarks/correlation_models/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("figures", 0),
        runtime=job_runtime("figures", 0),
    params:
        runs=module_comparison_runs,
    script:
        "../scripts/correlation_models.py"


rule software_versions:
    """Python, PyTorch (and CUDA), scanpy, anndata, Snakemake and the device used."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model=main_run_file("model.pt"),
    output:
        "results/{dataset}/software_versions.tsv",
    log:
        "logs/software_versions/{dataset}.log",
    benchmark:
        "logs/benchmarks/software_versions/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        snakemake_version=SNAKEMAKE_VERSION,
    script:
        "../scripts/software_versions.py"
