"""`paper_protocol` and `paper` rules: the paper's protocol, both ways, per dataset and on a page.

``paper_protocol`` (one dataset) gathers, for the iVAE and the VAE at each seed:

- the reference package's runs (paper_reference: family ``reference package``), scored by
  the paper's protocol, by the package's own trace (``paper_trace``) and by this workflow's;
- this workflow's runs (family ``workflow``), scored by the paper's protocol
  (paper_score_workflow) and by this workflow's (their rows of the metrics table);

into ``paper_protocol.tsv`` (one row per family x protocol x model x seed) and
``paper_protocol_directions.tsv`` (paper_protocol.compare_protocols: iVAE vs VAE per family
and protocol, whether each Figure 1C direction holds).

``paper`` writes the tables of every labelled dataset under docs/{output}/ (runs.tsv,
committed; directions.tsv; pooled.tsv, iVAE − VAE over datasets) and the page docs/{output}.md from them alone, which
``python workflow/scripts/paper_page.py docs/paper_protocol/runs.tsv docs`` rewrites
without rerunning anything.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from paper_protocol import FAMILIES, METRICS, PAPER_FIGURE_1C, PROTOCOLS, compare_protocols, pooled_protocols
from rule_io import atomic_path, log, setup_logging

COLUMNS = ["dataset", "family", "protocol", "method", "seed", *METRICS]
#: The compared models: the paper's iVAE (irecon 5) and its VAE (irecon 0).
MODELS = ("iVAE", "VAE")


def dataset_table(dataset: str, reference_scores, workflow_paper_scores, metrics_table) -> pd.DataFrame:
    """The per-seed table of one dataset: ``reference_scores`` (paths of the package's
    scores.tsv), ``workflow_paper_scores`` (paths of paper_scores.tsv), ``metrics_table``
    (the dataset's metrics.tsv; its iVAE and VAE rows at the same seeds)."""
    package = pd.concat([pd.read_csv(p, sep="\t") for p in reference_scores], ignore_index=True)
    package["family"] = "reference package"
    paper = pd.concat([pd.read_csv(p, sep="\t") for p in workflow_paper_scores], ignore_index=True)
    paper["family"] = "workflow"
    seeds = set(paper["seed"])
    metrics = pd.read_csv(metrics_table, sep="\t")
    own = metrics[metrics["method"].isin(MODELS) & metrics["seed"].isin(seeds)].assign(
        family="workflow", protocol="workflow")
    missing = {(m, s) for m in MODELS for s in seeds} - set(zip(own["method"], own["seed"]))
    if missing:
        raise ValueError(f"{metrics_table} has no row for {sorted(missing)}")
    table = pd.concat([package, paper, own], ignore_index=True).assign(dataset=dataset)[COLUMNS]
    order = {name: i for i, name in enumerate([*FAMILIES, *PROTOCOLS, "paper_trace", *MODELS])}
    key = lambda col: col.map(order) if col.name in ("family", "protocol", "method") else col  # noqa: E731
    return table.sort_values(["family", "protocol", "method", "seed"], key=key, ignore_index=True)


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.{digits}f}"


def summary_cell(values: pd.Series, digits: int = 3) -> str:
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else \
        f"{values.mean():.{digits}f}"


def in_words(directions: pd.DataFrame, pool: pd.DataFrame | None, seeds: pd.Series) -> list[str]:
    """The page's sentences, from the tests alone: per family and protocol, the metrics whose
    pooled difference lies the paper's way (or against it), and the per-dataset tally."""
    lines = ["## In words", ""]
    if pool is not None and len(pool) and pool["datasets"].max() > 1:
        for (family, protocol), part in pool.groupby(["family", "protocol"], sort=False):
            holds = part.loc[part["paper_holds"] == "yes", "metric"].tolist()
            against = part.loc[part["paper_holds"] == "opposite", "metric"].tolist()
            lines.append(f"- {family}, {protocol} protocol: pooled over {part['datasets'].max()} datasets, the paper's "
                         f"direction on {', '.join(holds) if holds else 'no metric'}"
                         + (f"; against it on {', '.join(against)}" if against else "") + ".")
        lines.append("")
    n, yes, opposite = len(directions), (directions["paper_holds"] == "yes").sum(), \
        (directions["paper_holds"] == "opposite").sum()
    per = directions.groupby("dataset").size()
    lines += [f"Per dataset, at {', '.join(str(v) for v in sorted(set(seeds)))} seeds with Holm's correction over each "
              f"dataset's {', '.join(str(v) for v in sorted(set(per)))} tests: {yes} of {n} tests show the paper's "
              f"direction, {opposite} the opposite, the rest neither. These sentences come from the tables above "
              "and nothing else.", ""]
    return lines


def page(runs: pd.DataFrame, directions: pd.DataFrame, pool: pd.DataFrame | None = None) -> str:
    """docs/paper_protocol.md, from the per-seed table and its comparisons."""
    datasets = list(dict.fromkeys(runs["dataset"]))
    seeds = runs.groupby("dataset")["seed"].nunique()
    lines = [
        "# The paper's protocol, both ways",
        "",
        "<!-- Written by `snakemake paper` (workflow/scripts/paper_page.py) from docs/paper_protocol/runs.tsv; "
        "do not edit by hand. -->",
        "",
        "Does the iVAE beat the VAE as the paper reports (Fu et al. 2025, Figure 1C)? Two model families, each "
        "scored two ways:",
        "",
        "- **reference package**: the authors' `iVAE` 0.0.5 trained as published (its loop, its defaults, "
        "irecon 5 for the iVAE and 0 for its VAE, 5,000 steps), every random stream seeded, at least "
        "3 × latent_dim cells per minibatch;",
        "- **workflow**: this workflow's iVAE and VAE (negative-binomial likelihood on raw counts, "
        "its defaults and early stopping).",
        "",
        "- **paper protocol** (the package's scores): reference = KMeans (k = 10) of log1p counts; a "
        "sampled latent of a minibatch of 1 % of the cells, clustered by KMeans (k = 10); \"ARI\" = the "
        "adjusted *mutual information* between the two (the package's name), NMI between them; ASW "
        "(−1 to 1), CH and DB of the sample against its own clusters; the correlation score of the sample. "
        "Averaged over 100 minibatches after training;",
        "- **workflow protocol** (docs/metrics.md): the posterior mean of every cell against the dataset's "
        "annotations: ARI, NMI, ASW ((s + 1) / 2), CH and DB of the annotated groups, the correlation score.",
        "",
        "The same column means different things under the two protocols. iVAE − VAE is paired by seed, "
        "with a 95 % interval and Holm's correction within each dataset (verdicts.py); the paper's "
        "direction *holds* where the difference is significant its way, is *opposite* where it is "
        "significant the other way, and is *not shown* otherwise. The paper's values are read off its "
        "figure (approximate).",
        "",
        "## Which of Figure 1C's directions hold",
        "",
    ]
    holds = directions.pivot_table(index=["family", "protocol"], columns="metric", values="paper_holds",
                                   aggfunc=lambda v: f"{(v == 'yes').sum()} / {len(v)}")
    holds = holds.reindex(columns=[m for m in METRICS if m in holds.columns])
    lines += [f"Datasets on which the direction holds (of {len(datasets)}: {', '.join(datasets)}; "
              f"seeds per dataset: {', '.join(str(seeds[d]) for d in datasets)}):", ""]
    lines += ["| family | protocol | " + " | ".join(holds.columns) + " |",
              "|---|---|" + "---|" * len(holds.columns)]
    for (family, protocol), row in holds.iterrows():
        lines.append(f"| {family} | {protocol} | " + " | ".join(row.fillna("–")) + " |")
    opposite = directions[directions["paper_holds"] == "opposite"]
    lines += ["", f"Paper's direction: higher for the iVAE on every score but DB (lower). "
              f"Significant differences against it: {len(opposite)} of {len(directions)} tests.", ""]
    if pool is not None and len(pool) and pool["datasets"].max() > 1:
        lines += ["## Pooled over datasets", "",
                  "iVAE − VAE: the mean of the datasets' mean differences, with a t interval over datasets "
                  f"(uncorrected for the {len(pool)} estimates: read it beside the per-dataset tests).", "",
                  "| family | protocol | metric | datasets | pooled difference [95 % CI] | paper's direction |",
                  "|---|---|---|---|---|---|"]
        for r in pool.itertuples():
            lines.append(f"| {r.family} | {r.protocol} | {r.metric} | {r.datasets} | {fmt(r.mean)} "
                         f"[{fmt(r.low)}, {fmt(r.high)}] | {r.paper_holds} |")
        lines.append("")
    lines += in_words(directions, pool, seeds)
    lines += ["## Per dataset", ""]
    for dataset in datasets:
        part = runs[runs["dataset"] == dataset]
        lines += [f"### {dataset}", "", "Mean ± s.d. over seeds; iVAE − VAE with its 95 % interval and what it says "
                  "about the paper's direction.", "",
                  "| family | protocol | metric | VAE | iVAE | iVAE − VAE [95 % CI] | paper's direction |",
                  "|---|---|---|---|---|---|---|"]
        comp = directions[directions["dataset"] == dataset].set_index(["family", "protocol", "metric"])
        for (family, protocol), group in part.groupby(["family", "protocol"], sort=False):
            for metric in METRICS:
                ivae, vae = (group.loc[group["method"] == m, metric].dropna() for m in MODELS)
                if (family, protocol, metric) in comp.index:
                    c = comp.loc[(family, protocol, metric)]
                    diff, verdict = f"{fmt(c['mean'])} [{fmt(c['low'])}, {fmt(c['high'])}]", c["paper_holds"]
                else:
                    diff, verdict = f"{fmt(ivae.mean() - vae.mean())}", "(not tested)"
                lines.append(f"| {family} | {protocol} | {metric} | {summary_cell(vae)} | {summary_cell(ivae)} | "
                             f"{diff} | {verdict} |")
        lines.append("")
    lines += ["## The paper's Figure 1C, for reference", "",
              "| metric | VAE | iVAE |", "|---|---|---|"]
    lines += [f"| {m} | {vae:g} | {ivae:g} |" for m, (vae, ivae) in PAPER_FIGURE_1C.items()]
    lines += ["", "`paper_trace` rows (the package's own per-step scores, averaged over its last 100 steps, as it "
              "prints them) are in runs.tsv beside the post-training paper-protocol scores; they are not tested.",
              ""]
    return "\n".join(lines)


def write_all(runs: pd.DataFrame, docs: Path, name: str = "paper_protocol") -> None:
    tested = runs[runs["protocol"].isin(PROTOCOLS)]
    directions, pool = compare_protocols(tested), pooled_protocols(tested)
    (docs / name).mkdir(parents=True, exist_ok=True)
    for table_name, table in (("directions.tsv", directions), ("pooled.tsv", pool)):
        with atomic_path(docs / name / table_name) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(docs / f"{name}.md") as tmp:
        Path(tmp).write_text(page(runs, directions, pool))


def main_dataset(snakemake) -> None:
    setup_logging(snakemake.log[0])
    table = dataset_table(snakemake.wildcards.dataset, snakemake.input.reference, snakemake.input.workflow,
                          snakemake.input.metrics)
    directions = compare_protocols(table[table["protocol"].isin(PROTOCOLS)])
    log.info("\n%s", directions[["family", "protocol", "metric", "mean", "low", "high", "paper_holds"]]
             .to_string(index=False))
    with atomic_path(snakemake.output.table) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(snakemake.output.directions) as tmp:
        directions.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def main_page(snakemake) -> None:
    setup_logging(snakemake.log[0])
    runs = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.tables], ignore_index=True)
    with atomic_path(snakemake.output.runs) as tmp:
        runs.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    runs = pd.read_csv(snakemake.output.runs, sep="\t")  # the page from the committed table's exact values
    docs = Path(snakemake.output.runs).parents[len(Path(snakemake.params.name).parts)]
    write_all(runs, docs, snakemake.params.name)
    log.info("paper protocol of %d datasets written", runs["dataset"].nunique())


if "snakemake" in globals():
    (main_page if snakemake.rule == "paper" else main_dataset)(snakemake)  # noqa: F821
elif __name__ == "__main__":
    write_all(pd.read_csv(sys.argv[1], sep="\t"), Path(sys.argv[2]))
