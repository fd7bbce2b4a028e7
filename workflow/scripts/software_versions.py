"""results/{dataset}/software_versions.tsv: what produced this dataset's results.

Each step records the versions of its own environment (with --use-conda every step has
its own), so the table has one row per step and package: preprocessing (Python, scanpy,
anndata, ...) from preprocessed.h5ad, training (Python, PyTorch, CUDA and the device
used) from model.pt, and the Snakemake that ran the workflow.
"""

import pandas as pd

from rule_io import atomic_path, log, setup_logging
from h5ad_parts import read_uns


def versions_table(preprocess: dict, train: dict, snakemake_version: str) -> pd.DataFrame:
    rows = [("workflow", "snakemake", snakemake_version)]
    rows += [("preprocess", k, str(v)) for k, v in preprocess.items()]
    rows += [("train", k, str(v)) for k, v in train.items()]
    return pd.DataFrame(rows, columns=["step", "software", "version"])


def main(snakemake) -> None:
    import torch

    setup_logging(snakemake.log[0])
    preprocess = read_uns(snakemake.input.data, "software", {})
    train = torch.load(snakemake.input.model, map_location="cpu", weights_only=True).get("software", {})
    table = versions_table(preprocess, train, snakemake.params.snakemake_version)
    log.info("\n%s", table.to_string(index=False))
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
