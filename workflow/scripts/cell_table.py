"""results/{dataset}/cell_labels.tsv: one row per cell, its name kept exactly (numbers,
spaces, "NA" included)."""

import pandas as pd

from rule_io import atomic_path


def write_cell_table(table, path) -> None:
    """Write a per-cell table (index: cell names) as TSV, atomically; ``read_cell_table`` reads it back."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index_label=table.index.name or "cell")


def read_cell_table(path, *, numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """A per-cell TSV as written by ``write_cell_table``, every name kept exactly.

    Cell names and text columns stay strings ("0001", "3348", "NA" and " x " are names,
    not numbers or missing values); only an empty field is missing. Columns in
    ``numeric`` are parsed as numbers.
    """
    # index_col would parse the names as numbers despite dtype=str: set the index afterwards
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    table = table.set_index(table.columns[0])
    for column in numeric:
        table[column] = pd.to_numeric(table[column])
    return table
