rule preprocess:
    """QC, normalisation and highly variable genes with scanpy; raw counts kept."""
    input:
        counts_input,
    output:
        "results/{dataset}/preprocessed.h5ad",
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "benchmarks/preprocess/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        dataset="{dataset}",
        counts_layer=dataset_entry("counts_layer"),
        label_key=dataset_entry("label_key"),
        preprocess=preprocess_params,
    script:
        "../scripts/preprocess.py"
