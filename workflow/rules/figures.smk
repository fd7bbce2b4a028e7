rule plot_latent_correlation:
    """Correlation between latent components before and after the interpretative module,
    each against its null."""
    input:
        embedding=main_run_file("embedding.h5ad"),
        nulls="results/{dataset}/latent_correlation.tsv",
        draws="results/{dataset}/latent_correlation_null.tsv",
        models="results/{dataset}/latent_correlation_models.tsv",
        tests="results/{dataset}/latent_correlation_tests.tsv",
    output:
        pdf=report(
            "results/{dataset}/figures/latent_correlation.pdf",
            caption="../report/latent_correlation.rst",
            category="Latent correlation",
            labels={"dataset": "{dataset}", "format": "PDF"},
        ),
        png=report(
            "results/{dataset}/figures/latent_correlation.png",
            caption="../report/latent_correlation.rst",
            category="Latent correlation",
            labels={"dataset": "{dataset}", "format": "PNG"},
        ),
    log:
        "logs/plot_latent_correlation/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_latent_correlation/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        seed=primary_seed,
    script:
        "../scripts/plot_latent_correlation.py"


rule plot_embeddings:
    """The interpretative embedding, and UMAPs of the iVAE's and the VAE's latents."""
    input:
        adata="results/{dataset}/adata.h5ad",
        vae=main_seed_file("VAE", "embedding.h5ad"),
        no_covariates=no_covariate_embedding,
    output:
        interp_pdf="results/{dataset}/figures/interpretative_embedding.pdf",
        interp_png=report(
            "results/{dataset}/figures/interpretative_embedding.png",
            caption="../report/interpretative_embedding.rst",
            category="Embeddings",
            labels={"dataset": "{dataset}", "figure": "interpretative embedding"},
        ),
        umap_pdf="results/{dataset}/figures/umap.pdf",
        umap_png=report(
            "results/{dataset}/figures/umap.png",
            caption="../report/umap.rst",
            category="Embeddings",
            labels={"dataset": "{dataset}", "figure": "UMAP"},
        ),
    log:
        "logs/plot_embeddings/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_embeddings/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: job_threads(2, "adata")
    resources:
        mem_mb=job_mem_mb("figures", "vae"),
        runtime=job_runtime("figures", "vae"),
    params:
        seed=eval_seed,
        batch_key=dataset_entry("batch_key"),
        max_cells=max_cells_param,
    script:
        "../scripts/plot_embeddings.py"


rule plot_training:
    """Training and validation loss per epoch of the iVAE and its controls (the models of
    the default run, at train.seed)."""
    input:
        main_training_logs,
    output:
        pdf="results/{dataset}/figures/training_curves.pdf",
        png=report(
            "results/{dataset}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"dataset": "{dataset}", "figure": "training curves"},
        ),
    log:
        "logs/plot_training/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_training/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        methods=default_methods_param,
        irecon=default_irecon,
        colours=colours_of(default_methods),
    script:
        "../scripts/plot_training.py"


rule plot_metrics:
    """Every metric per method: mean ± s.d. over seeds and each seed's value."""
    input:
        tsv="results/{dataset}/metrics.tsv",
    output:
        pdf="results/{dataset}/figures/metrics.pdf",
        png=report(
            "results/{dataset}/figures/metrics.png",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"dataset": "{dataset}", "figure": "metrics"},
        ),
    log:
        "logs/plot_metrics/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_metrics/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        colours=colours_of(table_methods),
    script:
        "../scripts/plot_metrics.py"


use rule plot_metrics as plot_compare_metrics with:
    input:
        tsv="results/{dataset}/compare/metrics.tsv",
    output:
        pdf="results/{dataset}/figures/compare_metrics.pdf",
        png=report(
            "results/{dataset}/figures/compare_metrics.png",
            caption="../report/metrics.rst",
            category="Comparison",
            labels={"dataset": "{dataset}", "figure": "metrics, all models"},
        ),
    log:
        "logs/plot_compare_metrics/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_compare_metrics/{dataset}.tsv"
    params:
        colours=colours_of(compare_methods),


rule plot_spectrum:
    """Eigenvalue spectrum of each model's latent: how many dimensions it uses."""
    input:
        default_embeddings,
    output:
        pdf="results/{dataset}/figures/spectrum.pdf",
        png=report(
            "results/{dataset}/figures/spectrum.png",
            caption="../report/spectrum.rst",
            category="Latent correlation",
            labels={"dataset": "{dataset}", "figure": "spectrum"},
        ),
    log:
        "logs/plot_spectrum/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_spectrum/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("figures", 0),
    params:
        runs=runs_of(default_methods),
        colours=colours_of(default_methods),
    script:
        "../scripts/plot_spectrum.py"


use rule plot_spectrum as plot_compare_spectrum with:
    input:
        compare_embeddings,
    output:
        pdf="results/{dataset}/figures/compare_spectrum.pdf",
        png=report(
            "results/{dataset}/figures/compare_spectrum.png",
            caption="../report/spectrum.rst",
            category="Comparison",
            labels={"dataset": "{dataset}", "figure": "spectrum, all models"},
        ),
    log:
        "logs/plot_compare_spectrum/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_compare_spectrum/{dataset}.tsv"
    params:
        runs=runs_of(compare_methods),
        colours=colours_of(compare_methods),


rule anndata:
    """One AnnData for scverse users: data, embeddings, kNN graph, UMAP, labels, parameters."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        embedding=main_run_file("embedding.h5ad"),
        labels="results/{dataset}/cell_labels.tsv",
    output:
        "results/{dataset}/adata.h5ad",
    log:
        "logs/anndata/{dataset}.log",
    benchmark:
        "logs/benchmarks/anndata/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: job_threads(2, "data")
    resources:
        mem_mb=job_mem_mb("figures", "data"),
        runtime=job_runtime("figures", "data"),
    params:
        seed=eval_seed,
        max_cells=max_cells_param,
    script:
        "../scripts/make_anndata.py"


rule component_genes:
    """The genes that follow each component, and those the decoder moves with it."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        embedding=main_run_file("embedding.h5ad"),
        model=main_run_file("model.pt"),
    output:
        report(
            "results/{dataset}/component_genes.tsv",
            caption="../report/component_genes.rst",
            category="Interpretation",
            labels={"dataset": "{dataset}", "table": "component genes"},
        ),
    log:
        "logs/component_genes/{dataset}.log",
    benchmark:
        "logs/benchmarks/component_genes/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("embed", "data"),
    params:
        max_cells=max_cells_param,
    script:
        "../scripts/component_genes.py"


rule plot_component_genes:
    """Heatmaps of each component's top genes."""
    input:
        "results/{dataset}/component_genes.tsv",
    output:
        pdf="results/{dataset}/figures/component_genes.pdf",
        png=report(
            "results/{dataset}/figures/component_genes.png",
            caption="../report/component_genes.rst",
            category="Interpretation",
            labels={"dataset": "{dataset}", "figure": "component genes"},
        ),
    log:
        "logs/plot_component_genes/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_component_genes/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_component_genes.py"
