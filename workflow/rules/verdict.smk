# `snakemake verdict`: the iVAE against each control and PCA over the evaluation seeds of
# every dataset, with intervals, equivalence tests and Holm's correction (config `verdict`;
# the evidence run: workflow/configs/verdict_evidence.yaml).

#: What the verdict writes beside the docs: the per-seed table and the page built from it.
VERDICT_OUTPUTS = {
    name: os.path.normpath(os.path.join(DOCS_ROOT, "docs", path))
    for name, path in {
        "runs": "verdict/runs.tsv",
        "comparisons": "verdict/comparisons.tsv",
        "pooled": "verdict/pooled.tsv",
        "page": "verdict.md",
    }.items()
}
#: Each dataset's role: tuning (the defaults were chosen on it) or reporting.
VERDICT_ROLES = {
    dataset: "tuning" if dataset in config["verdict"]["tuning"] else "reporting"
    for dataset in DATASETS
}


rule verdict:
    """Every dataset's metrics table in one per-seed table, the verdicts per dataset and
    pooled over datasets, and docs/verdict.md written from them."""
    input:
        tables=expand("results/{dataset}/metrics.tsv", dataset=DATASETS),
    output:
        **VERDICT_OUTPUTS,
    log:
        "logs/verdict.log",
    benchmark:
        "logs/benchmarks/verdict.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        datasets=DATASETS,
        roles=VERDICT_ROLES,
    script:
        "../scripts/verdict_page.py"
