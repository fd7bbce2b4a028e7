"""`components_page` rule: what the components mean, over every dataset, on a page.

Reads each dataset's ``components/stability.tsv``, ``enrichment.tsv`` and ``summary.tsv``
(components.py) and writes under the docs folder:

- ``components/stability.tsv``: per dataset, model and pair of seeds, the median matched |r|;
- ``components/enrichment.tsv``: per dataset, model and seed, the fraction of the model's
  components enriched in a Hallmark set at FDR 5 % (components.enriched_fractions);
- ``components/tests.tsv``: per dataset with gene names, every model's enriched fraction
  against the random-projection null's, paired by seed (verdicts.compare_methods: 95 %
  interval, Holm within the dataset; "better" = above the null);
- ``components.md``: the page, written from these tables alone (its sentences included),
  which ``python workflow/scripts/components_page.py docs/components docs`` rewrites.

Stability is described, not tested: a model's seed pairs share seeds, so they are not
independent draws.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from components import FDR, RANDOM, enriched_fractions
from rule_io import atomic_path, log, setup_logging
from verdicts import compare_methods


def collect(datasets: list[str], stability_paths, enrichment_paths, summary_paths) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stability per seed pair, enriched fraction per seed) of every dataset and model."""
    stab, enr = [], []
    for dataset, stab_path, enr_path, summary_path in zip(datasets, stability_paths, enrichment_paths, summary_paths,
                                                          strict=True):
        summary = pd.read_csv(summary_path, sep="\t")
        stab.append(pd.read_csv(stab_path, sep="\t").assign(dataset=dataset))
        enrichment = pd.read_csv(enr_path, sep="\t")
        for row in summary.itertuples():
            fractions = enriched_fractions(enrichment[enrichment["model"] == row.model], int(row.components))
            enr.append(pd.DataFrame({"dataset": dataset, "model": row.model, "seed": fractions.index.astype(int),
                                     "components": int(row.components), "enriched_fraction": fractions.to_numpy()}))
    stab = pd.concat(stab, ignore_index=True)[["dataset", "model", "seed_a", "seed_b", "median_matched_r"]]
    columns = ["dataset", "model", "seed", "components", "enriched_fraction"]
    enr = pd.concat(enr, ignore_index=True)[columns] if enr else pd.DataFrame(columns=columns)
    return stab, enr


def null_tests(enrichment: pd.DataFrame) -> pd.DataFrame:
    """Every model's enriched fraction against the null's, paired by seed, per dataset."""
    if enrichment.empty:
        return pd.DataFrame()
    table = enrichment.rename(columns={"model": "method"})
    frames = []
    for _, part in table.groupby("dataset", sort=False):
        models = [m for m in dict.fromkeys(part["method"]) if m != RANDOM]
        frames.append(compare_methods(part, [(m, RANDOM) for m in models], ["enriched_fraction"]))
    out = pd.concat(frames, ignore_index=True)
    return out.rename(columns={"method": "model", "reference": "null"})


def fmt(x: float, digits: int = 2) -> str:
    return "–" if not np.isfinite(x) else f"{x:.{digits}f}"


def dataset_sentences(dataset: str, stab: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """The generated sentences of one dataset: the most and least stable models, and which
    models' components are enriched more, or less, often than the null's."""
    out = []
    medians = stab[stab["dataset"] == dataset].groupby("model", sort=False)["median_matched_r"].median()
    trained = medians.drop([RANDOM, "PCA"], errors="ignore").dropna()
    if len(trained):
        out.append(f"Most stable across seeds, besides PCA (the same fit at every seed): {trained.idxmax()} "
                   f"(median matched |r| {trained.max():.2f}); least stable: {trained.idxmin()} ({trained.min():.2f}).")
    part = tests[tests["dataset"] == dataset] if len(tests) else tests
    if not len(part):
        out.append("No enrichment: the dataset has no gene names.")
        return out
    for verdict, words in (("better", "more often than the random-projection null"),
                           ("worse", "less often than the null")):
        models = part.loc[part["verdict"] == verdict, "model"].tolist()
        out.append(f"Components enriched {words} (Holm, 5 %): {', '.join(models) if models else 'none'}.")
    return out


def page(stab: pd.DataFrame, enr: pd.DataFrame, tests: pd.DataFrame) -> str:
    datasets = list(dict.fromkeys(stab["dataset"]))
    lines = [
        "# What the components mean",
        "",
        "<!-- Written by `snakemake components_page` (workflow/scripts/components_page.py) from "
        "docs/components/*.tsv; do not edit by hand. -->",
        "",
        "For every model with components: how stable they are across training seeds, and how often they "
        "match a known gene program (docs/metrics.md, \"What the components mean\"). Stability: the "
        "median over seed pairs of the median matched |r| (Hungarian matching), with its quartiles; it is "
        "described, not tested (a model's seed pairs share seeds). Enrichment: the fraction of a model's "
        f"components whose top genes are enriched in an MSigDB Hallmark set (BH FDR < {FDR:.0%}), "
        "mean ± s.d. over seeds, tested against the random-projection null paired by seed (95 % interval, "
        "Holm within the dataset). The sentences below each table are written from the tests.",
        "",
    ]
    for dataset in datasets:
        s = stab[stab["dataset"] == dataset].groupby("model", sort=False)["median_matched_r"]
        e = enr[enr["dataset"] == dataset].groupby("model", sort=False)["enriched_fraction"]
        t = tests[tests["dataset"] == dataset].set_index("model") if len(tests) else pd.DataFrame()
        seeds = enr.loc[enr["dataset"] == dataset, "seed"].nunique()
        lines += [f"## {dataset}", "", f"{seeds} seeds." if seeds else "", "",
                  "| model | stability, median [q1, q3] | enriched fraction | minus the null's [95 % CI] |",
                  "|---|---|---|---|"]
        models = list(dict.fromkeys([*s.groups, *e.groups]))
        for model in models:
            q = s.get_group(model).quantile([0.25, 0.5, 0.75]) if model in s.groups else pd.Series(
                [np.nan] * 3, index=[0.25, 0.5, 0.75])
            stability = f"{fmt(q[0.5])} [{fmt(q[0.25])}, {fmt(q[0.75])}]"
            fractions = e.get_group(model) if model in e.groups else pd.Series(dtype=float)
            enriched = (f"{fractions.mean():.2f} ± {fractions.std(ddof=1):.2f}" if len(fractions) > 1
                        else fmt(fractions.mean()) if len(fractions) else "–")
            if len(t) and model in t.index:
                r = t.loc[model]
                diff = f"{r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}] {r['verdict']}"
            else:
                diff = "–"
            lines.append(f"| {model} | {stability} | {enriched} | {diff} |")
        lines += ["", *dataset_sentences(dataset, stab, tests), ""]
    return "\n".join(lines)


def write_all(stab: pd.DataFrame, enr: pd.DataFrame, docs: Path, name: str = "components") -> None:
    tests = null_tests(enr)
    (docs / name).mkdir(parents=True, exist_ok=True)
    with atomic_path(docs / name / "tests.tsv") as tmp:
        tests.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(docs / f"{name}.md") as tmp:
        Path(tmp).write_text(page(stab, enr, tests))


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    stab, enr = collect(snakemake.params.datasets, snakemake.input.stability, snakemake.input.enrichment,
                        snakemake.input.summary)
    for table, path in ((stab, snakemake.output.stability), (enr, snakemake.output.enrichment)):
        with atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    stab = pd.read_csv(snakemake.output.stability, sep="\t")  # the page from the committed tables' exact values
    enr = pd.read_csv(snakemake.output.enrichment, sep="\t")
    write_all(stab, enr, Path(snakemake.output.page).parent)
    log.info("components of %d datasets written", stab["dataset"].nunique())


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
elif __name__ == "__main__":
    folder = Path(sys.argv[1])
    write_all(pd.read_csv(folder / "stability.tsv", sep="\t"), pd.read_csv(folder / "enrichment.tsv", sep="\t"),
              Path(sys.argv[2]))
