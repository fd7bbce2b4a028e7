rule plot_latent_correlation:
    """Correlation between latent components before and after the interpretative module."""
    input:
        "results/{dataset}/embedding.h5ad",
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
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/plot_latent_correlation.py"


rule plot_embeddings:
    """The interpretative embedding, and UMAPs of the latent before and after the module."""
    input:
        embedding="results/{dataset}/embedding.h5ad",
        labels="results/{dataset}/cell_labels.tsv",
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
        "benchmarks/plot_embeddings/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 2
    resources:
        mem_mb=job_mem_mb("figures", "embedding"),
        runtime=job_runtime("figures", "embedding"),
    params:
        seed=seed_param,
    script:
        "../scripts/plot_embeddings.py"


rule plot_training:
    """Each loss term per epoch, iVAE and plain VAE."""
    input:
        ivae="results/{dataset}/training_log.tsv",
        vae="results/{dataset}/vae/training_log.tsv",
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
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_training.py"


rule plot_metrics:
    """Bar charts of the metrics table."""
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
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_metrics.py"
