"""`check_input` rule: before any model is trained, the preprocessed dataset fits every
step the target runs at the dataset's settings.

What the input alone decides (counts, keys, labels, covariates, HVG selection) is checked
earlier, by `preprocess`; this rule checks what also depends on the dataset's model and
training settings. Every training waits for it. Its settings are the dataset's own (batch
size, held-out fractions, latent_dim), which retrain every model when they change, so the
check never reruns alone; a model that overrides them (a swept batch size) is checked by
its own training job, which refuses before its first epoch.

Checks (each a row of results/{dataset}/input_checks.tsv):
- training: at least one batch of training cells (``train.batch_size``) once the
  validation and test cells are held out (train.held_out_split);
- the PCA/ICA/NMF/FA baselines: at least ``latent_dim`` labelled cells and highly
  variable genes (their components);
- with labels: KMeans with k = the number of label groups and the silhouettes need
  2 <= k <= cells - 1.

A failed check is an InputError naming the dataset, the file, every failed requirement with
its fix, and the fewest cells after QC this configuration needs.
"""

from dataclasses import dataclass

import pandas as pd

from h5ad_parts import matrix_shape, read_obs, read_var_names
from rule_io import InputError, atomic_path, log, setup_logging
from sizing import held_out_sizes

COLUMNS = ["step", "requirement", "needed", "available", "passed", "fix"]


@dataclass(frozen=True)
class RunSettings:
    """What a trained model's checks need of its settings."""

    batch_size: int
    validation_fraction: float
    test_fraction: float


def held_out_cells(n_cells: int, settings: RunSettings) -> int:
    """Cells held out for validation and testing (sizing.held_out_sizes, as train.held_out_split)."""
    return sum(held_out_sizes(n_cells, settings.validation_fraction, settings.test_fraction))


def cells_for_one_batch(settings: RunSettings) -> int:
    """The fewest cells that leave ``batch_size`` training cells after the held-out ones."""
    if settings.validation_fraction + settings.test_fraction >= 1:
        raise InputError("train.validation_fraction + train.test_fraction hold out every cell; lower them.")
    n = settings.batch_size
    while n - held_out_cells(n, settings) < settings.batch_size:
        n += 1
    return n


def requirements(n_cells: int, n_genes: int, *, runs: dict[str, RunSettings], n_components: int,
                 n_labelled: int | None = None, n_groups: int | None = None) -> pd.DataFrame:
    """The checks' table (COLUMNS) for a dataset of ``n_cells`` cells x ``n_genes`` highly
    variable genes; ``runs``: step name -> training settings (the rule passes one,
    "training": the dataset's); ``n_components``: the baselines' (latent_dim); with labels,
    ``n_labelled`` cells carry one of ``n_groups``."""
    rows = []
    for step, settings in runs.items():
        held = held_out_cells(n_cells, settings)
        rows.append({
            "step": step, "requirement": f"training cells >= train.batch_size ({settings.batch_size}), "
            f"after {held} held-out cells", "needed": cells_for_one_batch(settings), "available": n_cells,
            "passed": n_cells - held >= settings.batch_size,
            "fix": f"lower train.batch_size to at most {max(n_cells - held, 1)} for this dataset "
                   f"(datasets: {{name: {{train: {{batch_size: ...}}}}}})"})
    labelled = n_cells if n_labelled is None else n_labelled
    rows.append({"step": "baselines", "requirement": f"labelled cells >= latent_dim ({n_components} components)",
                 "needed": n_components, "available": labelled, "passed": labelled >= n_components,
                 "fix": "lower model.latent_dim, or give the dataset more (labelled) cells"})
    rows.append({"step": "baselines", "requirement": f"highly variable genes >= latent_dim ({n_components} components)",
                 "needed": n_components, "available": n_genes, "passed": n_genes >= n_components,
                 "fix": "raise preprocess.n_top_genes or lower model.latent_dim"})
    if n_groups is not None:
        rows.append({"step": "clustering metrics", "requirement": f"labelled cells > label groups ({n_groups}): "
                     "KMeans with k groups and the silhouettes", "needed": n_groups + 1, "available": labelled,
                     "passed": labelled > n_groups, "fix": "use a coarser label_key, or remove it (Leiden clusters)"})
    return pd.DataFrame(rows, columns=COLUMNS)


def refusal(table: pd.DataFrame, *, what: str) -> str | None:
    """The error message for the failed rows of ``table`` (None when every check passed)."""
    failed = table[~table["passed"].astype(bool)]
    if failed.empty:
        return None
    cells = table[table["requirement"].str.contains("cells")]
    lines = [f"{what}: the dataset does not fit the configured run (nothing was trained):"]
    # one line per failed requirement, naming every step (model) that fails it
    for (requirement, needed, available, fix), group in failed.groupby(
            ["requirement", "needed", "available", "fix"], sort=False):
        lines.append(f"  - {', '.join(group['step'])}: {requirement}: needs {needed}, has {available}; fix: {fix}.")
    lines.append(f"  This configuration needs at least {int(cells['needed'].max())} cells after QC.")
    return "\n".join(lines)


def check_dataset(path, *, label_key: str | None, runs: dict[str, dict], n_components: int,
                  what: str) -> pd.DataFrame:
    """``requirements`` of the preprocessed .h5ad at ``path`` (read: its shape and obs), for
    ``runs`` (step name -> batch_size, validation_fraction, test_fraction); InputError
    (``refusal``) when one fails."""
    n_cells, _ = matrix_shape(path)
    n_genes = len(read_var_names(path))
    n_labelled = n_groups = None
    if label_key is not None:
        labels = read_obs(path)[label_key]
        n_labelled, n_groups = int(labels.notna().sum()), int(labels.dropna().nunique())
    settings = {m: RunSettings(int(s["batch_size"]), float(s["validation_fraction"]), float(s["test_fraction"]))
                for m, s in runs.items()}
    table = requirements(n_cells, n_genes, runs=settings, n_components=n_components, n_labelled=n_labelled,
                         n_groups=n_groups)
    log.info("%s: %d cells x %d highly variable genes; checks:\n%s", what, n_cells, n_genes,
             table.drop(columns="fix").to_string(index=False))
    message = refusal(table, what=what)
    if message:
        raise InputError(message)
    return table


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    params = snakemake.params
    table = check_dataset(snakemake.input[0], label_key=params.label_key, runs={"training": params.training},
                          n_components=int(params.n_components),
                          what=f"dataset '{params.dataset}' ({snakemake.input[0]})")
    with atomic_path(snakemake.output[0]) as tmp:
        table.assign(passed=table["passed"].astype(bool)).to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
