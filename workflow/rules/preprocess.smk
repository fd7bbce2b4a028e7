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
        mem_mb=job_mem_mb("preprocess"),
        runtime=job_runtime("preprocess"),
    params:
        dataset="{dataset}",
        counts_layer=dataset_entry("counts_layer"),
        label_key=dataset_entry("label_key"),
        preprocess=preprocess_params,
    script:
        "../scripts/preprocess.py"
