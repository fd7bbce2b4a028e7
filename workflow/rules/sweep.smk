wildcard_constraints:
    beta="[0-9.e+-]+",
    irecon="[0-9.e+-]+",
    seed="[0-9]+",


rule sweep:
    """Run every sweep of every dataset (not part of the default target)."""
    input:
        expand("results/{dataset}/sweep/summary.tsv", dataset=DATASETS),
        expand("results/{dataset}/figures/sweep.png", dataset=DATASETS),


use rule train as train_sweep with:
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        model=f"results/{{dataset}}/sweep/{RUN}/model.pt",
        log_tsv=f"results/{{dataset}}/sweep/{RUN}/training_log.tsv",
    log:
        f"logs/train_sweep/{{dataset}}/{RUN}.log",
    benchmark:
        f"benchmarks/train_sweep/{{dataset}}/{RUN}.tsv"
    params:
        model=model_params,
        train=sweep_train_params,


use rule embed as embed_sweep with:
    input:
        data="results/{dataset}/preprocessed.h5ad",
        model=f"results/{{dataset}}/sweep/{RUN}/model.pt",
    output:
        h5ad=f"results/{{dataset}}/sweep/{RUN}/embedding.h5ad",
        latent=f"results/{{dataset}}/sweep/{RUN}/latent.npy",
        iembed=f"results/{{dataset}}/sweep/{RUN}/iembed.npy",
    log:
        f"logs/embed_sweep/{{dataset}}/{RUN}.log",
    benchmark:
        f"benchmarks/embed_sweep/{{dataset}}/{RUN}.tsv"


rule sweep_run_metrics:
    """Clustering metrics and correlation score of one sweep run's latent."""
    input:
        embedding=f"results/{{dataset}}/sweep/{RUN}/embedding.h5ad",
        labels="results/{dataset}/cell_labels.tsv",
    output:
        f"results/{{dataset}}/sweep/{RUN}/metrics.tsv",
    log:
        f"logs/sweep_run_metrics/{{dataset}}/{RUN}.log",
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/sweep.py"


rule sweep_summary:
    """All runs of a dataset's sweep in one table and one figure."""
    input:
        sweep_run_metrics,
    output:
        tsv="results/{dataset}/sweep/summary.tsv",
        pdf="results/{dataset}/figures/sweep.pdf",
        png=report(
            "results/{dataset}/figures/sweep.png",
            caption="../report/sweep.rst",
            category="Sweeps",
            labels={"dataset": "{dataset}", "figure": "metrics vs beta and irecon"},
        ),
    log:
        "logs/sweep_summary/{dataset}.log",
    conda:
        "../../envs/scanpy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        defaults=sweep_defaults,
    script:
        "../scripts/sweep.py"
