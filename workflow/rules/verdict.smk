# `snakemake verdict`: the iVAE against each control and PCA over the evaluation seeds of
# every dataset, with intervals, equivalence tests and Holm's correction (config `verdict`;
# the evidence run: workflow/configs/verdict_evidence.yaml).

#: What the verdict writes beside the docs: the per-seed table and the page built from it.
VERDICT_NAME = config["verdict"]["output"]
VERDICT_OUTPUTS = {
    name: os.path.normpath(os.path.join(DOCS_ROOT, "docs", path))
    for name, path in {
        "runs": f"{VERDICT_NAME}/runs.tsv",
        "comparisons": f"{VERDICT_NAME}/comparisons.tsv",
        "pooled": f"{VERDICT_NAME}/pooled.tsv",
        "page": f"{VERDICT_NAME}.md",
    }.items()
}
#: Committed tables of replicate verdict runs (config verdict.replicates) to compare with.
VERDICT_REPLICATES = {
    name: os.path.normpath(os.path.join(DOCS_ROOT, "docs", name, "runs.tsv"))
    for name in config["verdict"]["replicates"]
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
        replicates=list(VERDICT_REPLICATES.values()),
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
        replicates=config["verdict"]["replicates"],
        name=VERDICT_NAME,
    script:
        "../scripts/verdict_page.py"
