# `snakemake paper`: the iVAE paper's protocol, both ways (docs/paper_protocol.md): the
# authors' reference package trained as published, and it and this workflow's iVAE and VAE
# scored by the paper's protocol and by this workflow's (config `paper`).

#: The page and its tables under docs/.
PAPER_NAME = config["paper"]["output"]
PAPER_OUTPUTS = {
    "runs": os.path.normpath(os.path.join(DOCS_ROOT, "docs", PAPER_NAME, "runs.tsv")),
    "directions": os.path.normpath(
        os.path.join(DOCS_ROOT, "docs", PAPER_NAME, "directions.tsv")
    ),
    "pooled": os.path.normpath(
        os.path.join(DOCS_ROOT, "docs", PAPER_NAME, "pooled.tsv")
    ),
    "page": os.path.normpath(os.path.join(DOCS_ROOT, "docs", f"{PAPER_NAME}.md")),
}


rule paper:
    """Every labelled dataset's paper-protocol table in one per-seed table, and the page
    written from it."""
    input:
        tables=expand("results/{dataset}/paper_protocol.tsv", dataset=PAPER_DATASETS),
    output:
        **PAPER_OUTPUTS,
    log:
        "logs/paper.log",
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        name=PAPER_NAME,
    script:
        "../scripts/paper_page.py"


rule paper_protocol:
    """One dataset: the reference package's and this workflow's iVAE and VAE under both
    protocols, per seed, and iVAE vs VAE per family and protocol."""
    input:
        reference=paper_reference_scores,
        workflow=paper_workflow_scores,
        metrics="results/{dataset}/metrics.tsv",
    output:
        table="results/{dataset}/paper_protocol.tsv",
        directions="results/{dataset}/paper_protocol_directions.tsv",
    log:
        "logs/paper_protocol/{dataset}.log",
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/paper_page.py"


rule paper_reference:
    """The authors' package (iVAE 0.0.5) trained as the paper did, at one seed, scored by
    both protocols. On the CPU: its loop is bound by its per-step scoring."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        labels="results/{dataset}/cell_labels.tsv",
        checks="results/{dataset}/input_checks.tsv",
    output:
        scores="results/{dataset}/paper/{method}/seed{seed}/scores.tsv",
        trace="results/{dataset}/paper/{method}/seed{seed}/trace.tsv",
        model="results/{dataset}/paper/{method}/seed{seed}/model.pt",
    log:
        "logs/paper_reference/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/paper_reference/{dataset}/{method}/seed{seed}.tsv"
    wildcard_constraints:
        method="iVAE|VAE",
    conda:
        "../../envs/ivae_reference.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("train", "data"),
        runtime=job_runtime("train", "data"),
    params:
        method=lambda wildcards: wildcards.method,
        seed=lambda wildcards: int(wildcards.seed),
        irecon=PAPER_IRECON,
        steps=config["paper"]["steps"],
        scoring_batches=config["paper"]["scoring_batches"],
        max_cells=max_cells_param,
    script:
        "../scripts/paper_reference.py"


rule paper_score_workflow:
    """One of this workflow's trained models scored by the paper's protocol."""
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model="results/{dataset}/runs/{method}/seed{seed}/model.pt",
    output:
        "results/{dataset}/runs/{method}/seed{seed}/paper_scores.tsv",
    log:
        "logs/paper_score_workflow/{dataset}/{method}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/paper_score_workflow/{dataset}/{method}/seed{seed}.tsv"
    conda:
        "../../envs/ivae_reference.yaml"
    threads: 1
    resources:
        mem_mb=job_mem_mb("embed", "data"),
        runtime=job_runtime("embed", "data"),
    params:
        method=lambda wildcards: wildcards.method,
        seed=lambda wildcards: int(wildcards.seed),
        scoring_batches=config["paper"]["scoring_batches"],
    script:
        "../scripts/paper_score_workflow.py"
