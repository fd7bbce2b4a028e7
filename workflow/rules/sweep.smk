rule compare:
    """The iVAE, its controls, the regularised VAEs of `compare` and the baselines, over
    every seed (not part of the default target)."""
    input:
        expand("results/{dataset}/compare/metrics_summary.tsv", dataset=DATASETS),
        expand("results/{dataset}/figures/compare_metrics.png", dataset=DATASETS),
        expand("results/{dataset}/figures/compare_spectrum.png", dataset=DATASETS),


rule sweep:
    """One setting at a time around each dataset's, every value over every seed (not part
    of the default target)."""
    input:
        expand("results/{dataset}/sweep/metrics_summary.tsv", dataset=DATASETS),
        expand("results/{dataset}/figures/sweep.png", dataset=DATASETS),


rule plot_sweep:
    """Each metric against each swept setting, mean ± s.d. over seeds, the VAE beside."""
    input:
        tsv="results/{dataset}/sweep/metrics.tsv",
    output:
        pdf="results/{dataset}/figures/sweep.pdf",
        png=report(
            "results/{dataset}/figures/sweep.png",
            caption="../report/sweep.rst",
            category="Sweeps",
            labels={"dataset": "{dataset}", "figure": "metrics vs settings"},
        ),
    log:
        "logs/plot_sweep/{dataset}.log",
    benchmark:
        "logs/benchmarks/plot_sweep/{dataset}.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        defaults=sweep_defaults,
    script:
        "../scripts/plot_sweep.py"
