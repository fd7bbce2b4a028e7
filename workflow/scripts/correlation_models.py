"""Does the interpretative module make z's components correlated? The iVAE's latent
correlation beside its controls' at the same seeds, with paired tests.

For every model of the module comparison (the iVAE and methods.MODULE_CONTROLS: VAE,
VAE-narrow, VAE-beta-matched, iVAE-stop-gradient) and seed: the mean |off-diagonal r| of
the posterior-mean latent z (``X_ivae``) and of the latent after the module, ld
(``X_ivae_ld``). A model trained with irecon = 0 (the VAE, VAE-narrow, VAE-beta-matched)
carries an interpretative module that never received a gradient: its ld is z through its
own untrained module, the second null of the "after" panel, at the same seed and on a z
trained like the iVAE's but without the module.

Paired tests (verdicts.compare_methods: the paired difference over seeds, its 95 % t
interval, Holm's correction over the family, equivalence by two one-sided tests at
MARGIN):
- ``z``: iVAE − each control: does training through the module correlate z more than
  a VAE does (VAE), than the KL weight alone does (VAE-beta-matched), than a latent as
  narrow as the bottleneck (VAE-narrow; its z has i_dim components), than the module
  without its gradient into z (iVAE-stop-gradient)?
- ``ld``: iVAE − VAE: the trained module's output against the VAE's untrained module's.

Verdicts read ``higher`` / ``lower`` / ``equivalent`` / ``inconclusive``. Writes
results/{dataset}/latent_correlation_models.tsv (method, seed, z, ld) and
latent_correlation_tests.tsv (one row per comparison).
"""

import numpy as np
import pandas as pd

import methods
from correlation import correlation_matrix, mean_abs_offdiagonal
from h5ad_parts import read_obsm
from rule_io import atomic_path, log, setup_logging
from verdicts import compare_methods, holm, verdict

#: Equivalence margin of the mean |off-diagonal r| (a 0-1 scale).
MARGIN = 0.05
#: (comparison, metric) pairs in the order of the figure's rows.
COMPARISONS = [*((methods.MAIN, control, "z") for control in methods.MODULE_CONTROLS), (methods.MAIN, "VAE", "ld")]
WORDS = {"better": "higher", "worse": "lower"}
#: latent_correlation_tests.tsv's columns.
TEST_COLUMNS = ["dataset", "method", "reference", "metric", "mean", "sd", "n", "low", "high", "p", "p_equivalent",
                "margin", "p_holm", "p_equivalent_holm", "verdict"]


def correlation_table(paths: dict[tuple[str, int], str]) -> pd.DataFrame:
    """``(method, seed) -> embedding.h5ad``: one row per run with its z and ld mean |r|."""
    rows = [{"method": method, "seed": seed,
             "z": mean_abs_offdiagonal(correlation_matrix(read_obsm(path, "X_ivae"))),
             "ld": mean_abs_offdiagonal(correlation_matrix(read_obsm(path, "X_ivae_ld")))}
            for (method, seed), path in paths.items()]
    return pd.DataFrame(rows, columns=["method", "seed", "z", "ld"])


def paired_tests(table: pd.DataFrame, dataset: str = "dataset") -> pd.DataFrame:
    """COMPARISONS of ``table`` (correlation_table) whose two methods it holds: one row each
    (method, reference, metric, mean, low, high, n, p, p_holm, p_equivalent,
    p_equivalent_holm, verdict), Holm over these comparisons together."""
    long = table.assign(dataset=dataset)
    present = set(table["method"])
    rows = []
    for metric in ("z", "ld"):
        pairs = [(a, b) for a, b, m in COMPARISONS if m == metric and {a, b} <= present]
        if pairs:
            rows.append(compare_methods(long, pairs, [metric], margins={metric: MARGIN}))
    tests = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if tests.empty:
        return pd.DataFrame(columns=TEST_COLUMNS)
    # one family: every comparison of the figure, corrected together
    tests["p_holm"] = holm(tests["p"])
    tests["p_equivalent_holm"] = holm(tests["p_equivalent"])
    calls = (verdict(r.mean, r.p_holm, r.p_equivalent_holm, 1) for r in tests.itertuples())
    tests["verdict"] = [WORDS.get(call, call) for call in calls]
    return tests[TEST_COLUMNS]


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    params = snakemake.params
    paths = dict(zip([(m, int(s)) for m, s in params.runs], snakemake.input, strict=True))
    table = correlation_table(paths)
    tests = paired_tests(table, snakemake.wildcards.dataset)
    log.info("mean |off-diagonal r| per model and seed:\n%s", table.round(3).to_string(index=False))
    if len(tests):
        log.info("paired tests (Holm over %d comparisons):\n%s", len(tests),
                 tests[["method", "reference", "metric", "mean", "low", "high", "n", "p_holm", "verdict"]]
                 .round(4).to_string(index=False))
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.tests) as tmp:
        tests.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
