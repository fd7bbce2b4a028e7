rule map_genes:
    """A query's QC-passed cells, its counts at the reference model's genes."""
    input:
        counts=query_counts_input,
        reference="results/{reference}/preprocessed.h5ad",
    output:
        counts="results/{query}/mapped_to/{reference}/query_counts.h5ad",
        overlap="results/{query}/mapped_to/{reference}/overlap.tsv",
    log:
        "logs/map_genes/{query}/{reference}.log",
    benchmark:
        "logs/benchmarks/map_genes/{query}/{reference}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("preprocess", "counts"),
        runtime=job_runtime("preprocess", "counts"),
    params:
        query="{query}",
        reference="{reference}",
        counts_layer=query_entry("counts_layer"),
        preprocess=query_preprocess_params,
        min_gene_overlap=config["mapping"]["min_gene_overlap"],
    script:
        "../scripts/map_genes.py"


rule map_embed:
    """The query embedded by the reference's model (new covariate categories by surgery)."""
    input:
        counts="results/{query}/mapped_to/{reference}/query_counts.h5ad",
        model=reference_model,
    output:
        "results/{query}/mapped_to/{reference}/query_embedding.h5ad",
    log:
        "logs/map_embed/{query}/{reference}.log",
    benchmark:
        "logs/benchmarks/map_embed/{query}/{reference}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: training_claim("threads")
    resources:
        gpu=training_claim("gpu"),
        mem_mb=job_mem_mb("train", "counts"),
        runtime=job_runtime("embed", "counts"),
    params:
        query="{query}",
        surgery_epochs=config["mapping"]["surgery_epochs"],
    script:
        "../scripts/map_embed.py"


rule map_transfer:
    """Labels transferred from the reference by nearest neighbours; the query on its UMAP."""
    input:
        embedding="results/{query}/mapped_to/{reference}/query_embedding.h5ad",
        reference="results/{reference}/adata.h5ad",
    output:
        h5ad="results/{query}/mapped_to/{reference}/embedding.h5ad",
        summary="results/{query}/mapped_to/{reference}/summary.tsv",
    log:
        "logs/map_transfer/{query}/{reference}.log",
    benchmark:
        "logs/benchmarks/map_transfer/{query}/{reference}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("figures", "embedding"),
    params:
        n_neighbors=config["mapping"]["n_neighbors"],
        label_key=query_entry("label_key"),
    script:
        "../scripts/map_transfer.py"


rule plot_mapping:
    """The query on the reference's UMAP and interpretative embedding."""
    input:
        query="results/{query}/mapped_to/{reference}/embedding.h5ad",
        reference="results/{reference}/adata.h5ad",
    output:
        pdf="results/{query}/figures/mapped_to_{reference}.pdf",
        png=report(
            "results/{query}/figures/mapped_to_{reference}.png",
            caption="../report/mapping.rst",
            category="Mapping",
            labels={"query": "{query}", "reference": "{reference}"},
        ),
    log:
        "logs/plot_mapping/{query}/{reference}.log",
    benchmark:
        "logs/benchmarks/plot_mapping/{query}/{reference}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/plot_mapping.py"


rule map:
    """Every mapping of config `mappings` (not part of the default target)."""
    input:
        [
            f"results/{query}/figures/mapped_to_{reference}.png"
            for query, reference in config["mappings"].items()
        ],
