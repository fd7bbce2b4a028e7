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
