"""`metrics`, `compare_metrics` and `sweep_metrics` rules: every row (trained models x
seeds, then the baselines) in one table, and its summary over seeds (metrics.summarise).
"""

import pandas as pd

from rule_io import atomic_path, log, setup_logging
from metrics import summarise


def main(snakemake) -> None:
    """All rows (models x seeds, then the baselines) and their summary over seeds."""
    setup_logging(snakemake.log[0])
    table = pd.concat([pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""])
                       for p in snakemake.input], ignore_index=True)
    table["note"] = table["note"].fillna("")
    summary = summarise(table)
    log.info("\n%s", summary.round(3).to_string(index=False))
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.summary) as tmp:
        summary.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
