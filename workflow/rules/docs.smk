# The docs' generated pages, written from a run's outputs (`snakemake readme`).
#
# Config readme.block picks the page: docs/results.md (and README.md, whose short summary
# comes from the same run), docs/evidence.md or docs/covariates.md, each with the figures it
# shows in docs/{block}/. Every file the rule writes is one of its outputs; readme.root puts
# them in the repository when the run's working directory is a subfolder (`-d evidence`).
# Each page is filled into its committed template, docs/templates/{page}.md, read from the
# workflow's source. Inputs and outputs depend on the config alone, so they are plain values.

import os

README_BLOCK = config["readme"]["block"]
#: The figures each page shows, per dataset (docs_pages.py copies exactly these).
DOCS_FIGURES = {
    "results": ["latent_correlation", "spectrum", "metrics", "umap", "training_curves"],
    "evidence": ["sweep", "spectrum"],
    "covariates": ["umap", "metrics"],
}
#: The committed templates (docs/templates/), in the workflow's source.
DOCS_TEMPLATES = os.path.join(workflow.basedir, "docs", "templates")
#: Where the pages go: the repository, seen from the working directory.
DOCS_ROOT = config["readme"]["root"]

#: What the page reads: its template (and README's), the run's tables and figures, for
#: the evidence the sweep's table, and for the covariates the scIB table (`snakemake scib`).
README_INPUTS = {
    "template": os.path.join(DOCS_TEMPLATES, f"{README_BLOCK}.md"),
    "tables": expand(
        "results/{dataset}/{name}",
        dataset=DATASETS,
        name=["metrics.tsv", "metrics_summary.tsv", "latent_correlation.tsv"]
        + [f"figures/{figure}.png" for figure in DOCS_FIGURES[README_BLOCK]]
        + (["sweep/metrics.tsv"] if README_BLOCK == "evidence" else [])
        + (["scib.tsv"] if README_BLOCK == "covariates" else []),
    ),
}
#: What it writes: the page, its figures and, for the results, README.md.
README_OUTPUTS = {
    "page": os.path.normpath(os.path.join(DOCS_ROOT, "docs", f"{README_BLOCK}.md")),
    "figures": expand(
        os.path.normpath(
            os.path.join(DOCS_ROOT, "docs", README_BLOCK, "{dataset}_{figure}.png")
        ),
        dataset=DATASETS,
        figure=DOCS_FIGURES[README_BLOCK],
    ),
}
if README_BLOCK == "results":
    README_INPUTS["readme_template"] = os.path.join(DOCS_TEMPLATES, "README.md")
    README_OUTPUTS["readme"] = os.path.normpath(os.path.join(DOCS_ROOT, "README.md"))
#: The evidence run's own settings, as its page names them.
EVIDENCE_SETTINGS = (
    f"irecon {config['train']['irecon']:g}, β {config['train']['beta']:g}, "
    f"i_dim {config['model']['i_dim']}, lr {config['train']['lr']:g}, "
    f"batch {config['train']['batch_size']}, epochs {config['train']['epochs']}"
)


rule readme:
    """The docs' page of config readme.block from this run's outputs: docs/{block}.md and
    its figures, and for the results README.md's summary; each from its template in
    docs/templates/."""
    input:
        **README_INPUTS,
    output:
        **README_OUTPUTS,
    log:
        "logs/readme.log",
    benchmark:
        "logs/benchmarks/readme.tsv"
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        figures=DOCS_FIGURES[README_BLOCK],
        datasets=DATASETS,
        settings=EVIDENCE_SETTINGS,
    script:
        "../scripts/docs_pages.py"
