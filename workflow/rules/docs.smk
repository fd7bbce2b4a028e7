# The docs' generated pages, written from a run's outputs (`snakemake readme`).


def readme_inputs(wildcards):
    """What `snakemake readme` reads for its block: the default run's tables and figures, or
    (evidence) also the sweep's."""
    names = ["metrics.tsv", "metrics_summary.tsv", "latent_correlation.tsv"]
    block = config["readme"]["block"]
    if block == "results":
        names += [f"figures/{figure}.png" for figure in README_FIGURES]
    elif block == "evidence":
        names += ["sweep/metrics.tsv", "figures/sweep.png", "figures/spectrum.png"]
    else:
        names += ["figures/umap.png", "figures/metrics.png"]
    return expand("results/{dataset}/{name}", dataset=DATASETS, name=names)


def evidence_settings(wildcards):
    """The evidence run's own settings, as README's evidence block names them."""
    model, train = config["model"], config["train"]
    return (
        f"irecon {train['irecon']:g}, β {train['beta']:g}, i_dim {model['i_dim']}, "
        f"lr {train['lr']:g}, batch {train['batch_size']}, epochs {train['epochs']}"
    )


#: Figures README shows for every dataset (readme.py's FIGURES).
README_FIGURES = [
    "latent_correlation",
    "spectrum",
    "metrics",
    "umap",
    "training_curves",
]



rule readme:
    """README's results from this run's outputs (results/readme/{block}.md; README.md and
    its images too, where README has the block's markers)."""
    input:
        readme_inputs,
    output:
        f"results/readme/{config['readme']['block']}.md",
    log:
        "logs/readme.log",
    benchmark:
        "benchmarks/readme.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        datasets=DATASETS,
        settings=evidence_settings,
    script:
        "../scripts/readme.py"
