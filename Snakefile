# ivae-workflow: train the iVAE on single-cell RNA-seq counts and draw its figures.
# This file is a table of contents; the rules live in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/mapping.smk"
include: "workflow/rules/docs.smk"
include: "workflow/rules/verdict.smk"
include: "workflow/rules/components.smk"
include: "workflow/rules/paper.smk"


remove_stale_locks()  # a killed run's, so that the same command resumes it


onstart:
    if workflow.execution_settings.lock:  # not with --nolock: it holds no locks
        run_lock.record_holder()  # the process that now holds the locks
    warn_if_gpu_jobs_serialised_on_cluster()


onsuccess:
    run_lock.forget_holder()


onerror:
    run_lock.forget_holder()


rule all:
    default_target: True
    input:
        final_outputs(),
