"""`verdict` rule: does the interpretative module help? Per-seed runs, verdicts, and the page.

Reads every dataset's ``metrics.tsv`` (the default run's table: the iVAE, its controls and
the baselines, one row per model and seed) and writes, under the docs folder:

- ``verdict/runs.tsv``: every model x seed x dataset row with the metrics the verdicts use
  and the dataset's role (``tuning``: the defaults were chosen on it; ``reporting``: not);
  small, committed beside the docs, so every number of the page traces to its rows;
- ``verdict/comparisons.tsv``: per dataset, the iVAE against each control (and PCA) on each
  metric: the paired difference over seeds, its 95 % interval, the paired t-test and the
  equivalence test (TOST at the metric's margin), both Holm-adjusted within the dataset's
  family, and the verdict (verdicts.py);
- ``verdict/pooled.tsv``: per comparison and metric, across the reporting datasets (and,
  separately, the tuning ones): the mean of the datasets' mean differences with a t
  interval over datasets, and the signed-rank test over dataset x seed;
- ``verdict.md``: the page, written from these tables only.

With replicates (config ``verdict.replicates``: the same evidence run again with one
thing changed, e.g. the training threads, its per-seed table committed under
``docs/{name}/runs.tsv``), the page also says, per dataset the replicate covers, whether
each verdict is the same, and how far the metrics and the mean differences moved.

The page can be rewritten from the committed tables without rerunning anything:
``python workflow/scripts/verdict_page.py docs/verdict/runs.tsv docs [NAME=DESCRIPTION ...]``
(NAME: a replicate's folder under docs/, e.g. verdict/replicates/threads2).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from methods import MAIN, MODULE_CONTROLS, STANDARD
from rule_io import atomic_path, log, setup_logging
from verdicts import ALPHA, MARGINS, compare_methods, pooled

#: The metrics of the verdict (higher is better but for the NLL: verdicts.DIRECTION).
METRICS = ["ARI", "NMI", "ASW", "test_iwae_nll"]
#: Described, not tested: the epoch whose weights were kept (the lowest validation loss).
DESCRIBED = ["epoch_kept"]
#: What the iVAE is compared with: every control conditioned like it, and PCA (the
#: simplest embedding that could explain a clustering score).
REFERENCES = [*MODULE_CONTROLS, "PCA"]
#: The field's standard models, where a dataset's run has them (evaluation.standard_models):
#: "why the iVAE and not scVI or LDVAE?", a family of tests of its own.
STANDARD_REFERENCES = list(STANDARD)


def collect_runs(tables: dict[str, str], roles: dict[str, str]) -> pd.DataFrame:
    """One long table of every dataset's metrics.tsv rows (dataset, role, method, seed, metrics)."""
    frames = []
    for dataset, path in tables.items():
        table = pd.read_csv(path, sep="\t")
        table.insert(0, "role", roles.get(dataset, "reporting"))
        table.insert(0, "dataset", dataset)
        frames.append(table[["dataset", "role", "method", "seed", *[m for m in METRICS if m in table],
                             *[c for c in DESCRIBED if c in table]]])
    return pd.concat(frames, ignore_index=True)


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """The iVAE against each reference, per dataset (one Holm family per dataset)."""
    frames = []
    for _, part in runs.groupby("dataset", sort=False):
        for family, references in (("module", REFERENCES), ("standard", STANDARD_REFERENCES)):
            comp = compare_methods(part, [(MAIN, reference) for reference in references], METRICS)
            if not comp.empty:
                frames.append(comp.assign(role=part["role"].iloc[0], family=family))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pooled_table(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for role, part in runs.groupby("role", sort=False):
        for reference in [*REFERENCES, *STANDARD_REFERENCES]:
            for metric in METRICS:
                estimate = pooled(part, MAIN, reference, metric) if metric in part else {"datasets": 0}
                if estimate["datasets"]:  # e.g. no likelihood for PCA
                    rows.append({"role": role, "method": MAIN, "reference": reference, "metric": metric, **estimate})
    return pd.DataFrame(rows)


def fmt(x: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(x) else f"{x:+.{digits}f}"


def page(runs: pd.DataFrame, comp: pd.DataFrame, pool: pd.DataFrame, extra: list[str] | None = None) -> str:
    """The markdown page, from the three tables alone (and ``extra`` lines: the replicates)."""
    seeds = runs.groupby("dataset")["seed"].nunique()
    roles = runs.drop_duplicates("dataset").set_index("dataset")["role"]
    lines = [
        "<!-- Written by `snakemake verdict` from docs/verdict/*.tsv: do not edit by hand. -->",
        "# Does the interpretative module help? The verdicts",
        "",
        f"The iVAE against each control and PCA, per dataset: the mean paired difference over seeds "
        f"(iVAE − reference) with its 95 % confidence interval, and the verdict: **better** or **worse** where "
        f"the paired t-test rejects no difference, **equivalent** where two one-sided tests place the difference "
        f"inside ±margin, **inconclusive** otherwise; both tests Holm-corrected over each dataset's "
        f"{len(REFERENCES)} comparisons × {len(METRICS)} metrics, at {ALPHA:.0%}. Margins: "
        + ", ".join(f"{m} ±{MARGINS[m]:g}" for m in METRICS) + " (NLL in nats per cell).",
        "",
        "Datasets: " + "; ".join(f"{d} ({roles[d]}, {seeds[d]} seeds)" for d in seeds.index) + ". The defaults "
        "were chosen on the tuning datasets; the reporting ones were not used to choose anything.",
        "",
        *([f"Where a dataset's run has the field's standard models ({', '.join(STANDARD_REFERENCES)}), the iVAE "
           f"against them is a family of its own for Holm's correction (the question is another: why the iVAE "
           f"and not them).", ""] if "family" in comp and (comp["family"] == "standard").any() else []),
        "Every number here is computed from `docs/verdict/runs.tsv` (one row per dataset, model and seed), "
        "which the evidence run writes; `comparisons.tsv` and `pooled.tsv` beside it hold the tests' details.",
        "",
    ]
    for dataset, part in comp.groupby("dataset", sort=False):
        lines += [f"## {dataset} ({part['role'].iloc[0]})", "",
                  "| iVAE vs | " + " | ".join(METRICS) + " |", "|" + " --- |" * (len(METRICS) + 1)]
        for reference, rows in part.groupby("reference", sort=False):
            cells = []
            for metric in METRICS:
                row = rows[rows["metric"] == metric]
                if row.empty:
                    cells.append("–")
                    continue
                r = row.iloc[0]
                digits = 2 if metric == "test_iwae_nll" else 3
                cells.append(f"{fmt(r['mean'], digits)} [{fmt(r['low'], digits)}, {fmt(r['high'], digits)}] "
                             f"**{r['verdict']}**")
            lines.append(f"| {reference} | " + " | ".join(cells) + " |")
        lines.append("")
    if not pool.empty:
        lines += ["## Across datasets", "",
                  "The mean of the datasets' mean differences, with a t interval over datasets (dataset as a "
                  "random effect; none with a single dataset), and the Wilcoxon signed-rank test over every "
                  "dataset × seed difference (uncorrected: read it beside the per-dataset verdicts).", "",
                  "| datasets | iVAE vs | metric | pooled difference [95 % CI] | signed-rank p | dataset x seed pairs |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in pool.itertuples():
            digits = 2 if r.metric == "test_iwae_nll" else 3
            p = "–" if not np.isfinite(r.p_signed_rank) else f"{r.p_signed_rank:.2g}"
            lines.append(f"| {r.role} ({r.datasets}) | {r.reference} | {r.metric} | {fmt(r.mean, digits)} "
                         f"[{fmt(r.low, digits)}, {fmt(r.high, digits)}] | {p} | {r.pairs} |")
        lines.append("")
    lines += ["## In words", "", *in_words(comp, runs), ""]
    return "\n".join(lines + (extra or []))


def in_words(comp: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """The page's summary: the verdicts counted per family, and where the standard models
    ran, the iVAE's calls against them dataset by dataset."""
    if comp.empty:
        return ["No comparisons."]
    lines = []
    families = comp["family"] if "family" in comp else pd.Series("module", index=comp.index)
    for family, part in comp.groupby(families, sort=False):
        counts = part["verdict"].value_counts()
        what = ("the module's controls and PCA" if family == "module"
                else "the field's standard models (" + ", ".join(dict.fromkeys(part["reference"])) + ")")
        lines.append(f"- Against {what}, over {part['dataset'].nunique()} datasets and {len(part)} comparisons: "
                     + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("better", "worse", "equivalent", "inconclusive"))
                     + ".")
    scored = runs[runs[[m for m in METRICS if m in runs]].notna().any(axis=1)]
    for dataset, part in comp[families == "standard"].groupby("dataset", sort=False):
        n = scored[(scored["dataset"] == dataset) & scored["method"].isin(STANDARD_REFERENCES)]["seed"].nunique()
        called = [(f"{r.verdict} than {r.reference}" if r.verdict in ("better", "worse") else
                   f"equivalent to {r.reference}") + f" on {r.metric}"
                  for r in part.itertuples() if r.verdict != "inconclusive"]
        lines.append(f"  - {dataset} ({n} seeds of the standard models): the iVAE is "
                     + ("; ".join(called) if called else "inconclusive against both on every metric") + ".")
    if "epoch_kept" in runs:
        kept = scored[scored["method"].isin(STANDARD_REFERENCES)].dropna(subset=["epoch_kept"])
        described = [f"{d} {m} {g.median():.0f} ({g.min():.0f}–{g.max():.0f})"
                     for (d, m), g in kept.groupby(["dataset", "method"], sort=False)["epoch_kept"]]
        if described:
            lines.append("- The standard models' kept epoch (their lowest validation ELBO; median and range over "
                         "seeds), where an early one means a barely trained model: " + "; ".join(described) + ".")
    failed = runs.drop(scored.index)
    if len(failed):
        lines.append("- Runs without scores (their training diverged; every comparison with them uses the other "
                     "seeds): " + "; ".join(f"{r.dataset} {r.method} seed {r.seed}" for r in failed.itertuples()) + ".")
    return [*lines, "", "These words come from the verdicts above and nothing else."]


def replicate_agreement(comp: pd.DataFrame, replicate_runs: pd.DataFrame) -> pd.DataFrame:
    """The verdicts of ``comp`` beside those the replicate's runs give, for the datasets the
    replicate covers: one row per dataset x reference x metric (mean, verdict, both runs)."""
    rep = comparisons(replicate_runs)
    keys = ["dataset", "reference", "metric"]
    both = comp[comp["dataset"].isin(rep["dataset"])][[*keys, "mean", "low", "high", "verdict"]].merge(
        rep[[*keys, "mean", "low", "high", "verdict"]], on=keys, suffixes=("", "_replicate"), how="outer")
    both["same"] = both["verdict"] == both["verdict_replicate"]
    return both


def replicate_section(runs: pd.DataFrame, comp: pd.DataFrame, replicates: dict) -> list[str]:
    """The page's lines on each replicate (name -> (what differs, its runs table))."""
    if not replicates:
        return []
    lines = ["## Do the verdicts reproduce?", "",
             "Exact: the same machine, thread count and software give bit-identical models, metrics and "
             "verdicts (the tests pin trainings and preprocessing by digest). Not exact: another CPU, "
             "another thread count or a GPU sums in another order, so every model and metric differs in "
             "its last digits and the trainings drift apart from there. What should reproduce is the "
             "verdicts. Each replicate below reruns the evidence of one or more datasets with one thing "
             "changed; its per-seed table is committed beside this page.", ""]
    metrics = [m for m in METRICS if m in runs]
    for name, (what, replicate_runs) in replicates.items():
        agree = replicate_agreement(comp, replicate_runs)
        keys = ["dataset", "method", "seed"]
        paired = runs.merge(replicate_runs, on=keys, suffixes=("", "_r"))
        moved = {m: float((paired[m] - paired[f"{m}_r"]).abs().max()) for m in metrics}
        identical = all(v == 0 for v in moved.values() if np.isfinite(v))
        datasets = ", ".join(sorted(agree["dataset"].unique()))
        lines += [f"### {what} (`docs/{name}/runs.tsv`)", "",
                  f"{datasets}: {len(paired)} runs (dataset × model × seed) in both. "
                  + ("Every metric is identical to the last digit. " if identical else
                     "Largest change of a run's metric: " + ", ".join(
                         f"{m} {fmt(moved[m], 2 if m == 'test_iwae_nll' else 3).lstrip('+')}" for m in metrics)
                     + ". ")
                  + f"**{int(agree['same'].sum())} of {len(agree)} verdicts are the same.**", "",
                  "| dataset | iVAE vs | metric | this page | replicate | same |", "| --- | --- | --- | --- | --- | --- |"]
        for r in agree.itertuples():
            digits = 2 if r.metric == "test_iwae_nll" else 3
            lines.append(f"| {r.dataset} | {r.reference} | {r.metric} | {fmt(r.mean, digits)} **{r.verdict}** | "
                         f"{fmt(r.mean_replicate, digits)} **{r.verdict_replicate}** | {'yes' if r.same else '**no**'} |")
        lines.append("")
    return lines


def write_all(runs: pd.DataFrame, docs: Path, replicates: dict | None = None, name: str = "verdict") -> None:
    """The comparisons and the pooled estimates (docs/{name}/) and the page (docs/{name}.md;
    ``replicates``: name -> (what differs, its runs table))."""
    comp, pool = comparisons(runs), pooled_table(runs)
    (docs / name).mkdir(parents=True, exist_ok=True)
    for table_name, table in (("comparisons.tsv", comp), ("pooled.tsv", pool)):
        with atomic_path(docs / name / table_name) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(docs / f"{name}.md") as tmp:
        Path(tmp).write_text(page(runs, comp, pool, replicate_section(runs, comp, replicates or {})))


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    runs = collect_runs(dict(zip(snakemake.params.datasets, snakemake.input.tables, strict=True)),
                        dict(snakemake.params.roles))
    with atomic_path(snakemake.output.runs) as tmp:
        runs.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    runs = pd.read_csv(snakemake.output.runs, sep="\t")  # the page from the committed table's exact values
    replicates = {name: (what, pd.read_csv(path, sep="\t"))
                  for (name, what), path in zip(snakemake.params.replicates.items(), snakemake.input.replicates,
                                                strict=True)}
    docs = Path(snakemake.output.comparisons).parents[len(Path(snakemake.params.name).parts)]
    write_all(runs, docs, replicates, name=snakemake.params.name)
    log.info("verdicts of %d datasets written", runs["dataset"].nunique())


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
elif __name__ == "__main__":
    docs = Path(sys.argv[2])
    named = dict(arg.split("=", 1) for arg in sys.argv[3:])
    write_all(pd.read_csv(sys.argv[1], sep="\t"), docs,
              {name: (what, pd.read_csv(docs / name / "runs.tsv", sep="\t")) for name, what in named.items()})
