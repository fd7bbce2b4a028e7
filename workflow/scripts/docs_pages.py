"""The docs' generated pages, written from a run's outputs: `snakemake readme`.

For every dataset: the metrics summary (mean ± s.d. over training seeds) as a markdown
table, the latent correlation against its nulls, and the main figures; then, for the
datasets with cell-type labels, the answer to "does the interpretative module help?":
the iVAE against each control, metric by metric, called a difference only where it
is significant in a paired t-test over the seeds (5 %).

Three blocks (config ``readme.block``), one page each: ``results``, from the default run
(the quick-start command); ``evidence``, from the defaults' evidence run (``sweep`` and the
default target over every labelled dataset; workflow/configs/defaults_evidence.yaml): per
dataset, every swept setting and control against the VAE, and how often each beat it;
``covariates``, from the multi-sample run (workflow/configs/covariates_evidence.yaml): the
iVAE with and without its sample covariates, on cell-type and batch-mixing scores, and
scIB's metrics (``snakemake scib``) with Harmony and uncorrected PCA as positive and
negative controls and scVI beside them, the comparisons as verdicts (verdicts.py).

Every page is a committed template (docs/templates/{page}.md) with the block written
between its markers and a first line that says so: docs/{block}.md, and the figures it
shows copied to docs/{block}/{dataset}_{figure}.png; for ``results`` also README.md, whose
block is a short summary (the trained models' ARI and NMI per dataset, the verdict's
paragraph, a link to docs/results.md). The rule declares all of them as its outputs, and
Snakemake deletes a job's outputs before it runs it: so the pages are only ever written
here, from the templates and the run's tables, never read back.
"""

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from methods import BASELINES, BUILT_IN, MAIN, MODULE_CONTROLS
from rule_io import atomic_path, log, setup_logging


def markers(block: str) -> tuple[str, str]:
    """The comments around a generated block of a page (and, empty, in its template)."""
    return f"<!-- {block}: written by `snakemake readme`; do not edit by hand -->", f"<!-- {block}: end -->"


#: README's block: the short summary of the results.
SUMMARY = "summary"
#: Folder of the pages' templates, relative to the repository.
TEMPLATES = "docs/templates"
#: Columns of the results tables: (metric, header).
COLUMNS = [("ARI", "ARI"), ("NMI", "NMI"), ("ASW", "ASW"), ("CH", "CH"), ("DB", "DB"), ("ASW_kmeans", "ASW (own KMeans)"),
           ("corr_score", "corr. score"), ("participation_ratio", "PR"), ("test_iwae_nll", "test NLL")]
#: Metrics of the verdict: higher is better for all but DB and the NLL.
VERDICT = {"ARI": 1, "NMI": 1, "ASW": 1, "test_iwae_nll": -1}
#: Metrics of the covariates table: cell types kept apart, samples mixed.
COVARIATE_COLUMNS = [("ARI", "ARI"), ("NMI", "NMI"), ("ASW", "ASW (cell types)"), ("batch_ASW", "batch ASW"),
                     ("graph_connectivity", "graph connectivity"), ("batch_entropy", "batch entropy")]
#: README's summary: the trained models' clustering scores.
SUMMARY_COLUMNS = [("ARI", "ARI"), ("NMI", "NMI")]
#: Metrics of the evidence tables.
EVIDENCE_COLUMNS = [("ARI", "ARI"), ("NMI", "NMI"), ("ASW", "ASW"), ("participation_ratio", "PR"),
                    ("test_iwae_nll", "test NLL")]


def fmt(value: float, sd: float | None = None) -> str:
    if not np.isfinite(value):
        return "–"
    digits = 0 if abs(value) >= 100 else 2 if abs(value) >= 1 else 3
    text = f"{value:,.{digits}f}"
    return text + (f" ± {sd:,.{digits}f}" if sd is not None and np.isfinite(sd) else "")


def metrics_markdown(summary: pd.DataFrame) -> str:
    """The summary as a markdown table: one row per method, mean ± s.d. per metric."""
    header = "| method | seeds | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [header, "|" + " --- |" * (len(COLUMNS) + 2)]
    for row in summary.itertuples(index=False):
        cells = [fmt(getattr(row, m), getattr(row, f"{m}_sd") if row.n_seeds > 1 else None) for m, _ in COLUMNS]
        lines.append(f"| {row.method} | {row.n_seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def correlation_sentence(nulls: pd.DataFrame) -> str:
    """The latent correlation before and after the module against their nulls, over seeds."""
    parts = []
    for panel, what, null in (("before", "z, before the module", "components permuted independently"),
                              ("after", "ld, after the module", "an untrained module of the same shape")):
        rows = nulls[nulls["panel"] == panel]
        obs, null_mean = rows["observed"], rows["null_mean"]
        text = (f"{what}: mean |off-diagonal r| {fmt(obs.mean(), obs.std(ddof=1) if len(obs) > 1 else None)} "
                f"(null, {null}: {fmt(null_mean.mean())}, 95 % range {fmt(rows['null_low'].mean())}–"
                f"{fmt(rows['null_high'].mean())}; observed at percentile {fmt(rows['percentile'].mean())} of it")
        if panel == "after":
            text += f"; best rank-i_dim projection of z: {fmt(rows['rank_i_dim'].mean())}"
        parts.append(text + ")")
    return "; ".join(parts) + "."


def convergence_sentence(table: pd.DataFrame) -> str:
    """How the trained models' training ended: early stopping on the held-out loss or not."""
    trained = table.dropna(subset=["epochs_run"]) if "epochs_run" in table else table.iloc[:0]
    if trained.empty:
        return "no training record."
    # True/False as written; 1.0/0.0 once read back beside the baselines' empty cells
    early = trained["stopped_early"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return (f"{int(early.sum())} of {len(trained)} trained models stopped early, their held-out loss no longer "
            f"falling (epochs run: median {trained['epochs_run'].median():.0f}, range "
            f"{trained['epochs_run'].min():.0f}–{trained['epochs_run'].max():.0f}; the kept epoch: median "
            f"{trained['epoch_kept'].median():.0f})" + ("." if early.all() else
            "; the others ran to their maximum, without converging by this criterion."))


def compare(table: pd.DataFrame, a: str, b: str, metric: str) -> tuple[float, float, str]:
    """(mean difference a - b over the seeds both have, its standard error, "higher"/"lower"/
    "no difference").

    Models trained at the same seed share their validation split and batch order, so the
    comparison is paired: a difference is called only where a two-sided paired t-test over
    the seeds rejects "no difference" at 5 % (|mean| > t(0.975, n - 1) x s.e.; with 3 seeds,
    4.3 s.e.); otherwise, at this number of seeds, there is none to report.
    """
    from scipy.stats import t

    x = table[table["method"] == a].set_index("seed")[metric].dropna()
    y = table[table["method"] == b].set_index("seed")[metric].dropna()
    diffs = (x - y).dropna().to_numpy(dtype=float)
    if len(diffs) < 2:
        return float("nan"), float("nan"), "not enough seeds"
    mean, se = float(diffs.mean()), float(diffs.std(ddof=1) / np.sqrt(len(diffs)))
    if abs(mean) <= t.ppf(0.975, len(diffs) - 1) * se:
        return mean, se, "no difference"
    return mean, se, "higher" if mean > 0 else "lower"


def verdict_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """'Does the interpretative module help?': the iVAE against each control on each labelled
    dataset, each call one of verdicts.py's four (paired intervals over seeds; Holm within
    each dataset's family; equivalence at the stated margins)."""
    from verdicts import ALPHA, MARGINS, compare_methods

    metrics = list(VERDICT)
    lines = ["| dataset | iVAE vs | " + " | ".join(metrics) + " |", "|" + " --- |" * (len(metrics) + 2)]
    calls = []
    for dataset, table in tables.items():
        comp = compare_methods(table.assign(dataset=dataset), [(MAIN, c) for c in MODULE_CONTROLS], metrics)
        if comp.empty:
            continue
        calls += list(comp["verdict"])
        for control, rows in comp.groupby("reference", sort=False):
            cells = []
            for metric in metrics:
                r = rows[rows["metric"] == metric]
                if r.empty or not np.isfinite(r["mean"].iloc[0]):
                    cells.append("–")
                    continue
                r = r.iloc[0]
                cells.append(f"{fmt(r['mean'])} [{fmt(r['low'])}, {fmt(r['high'])}] ({r['verdict']})")
            lines.append(f"| {dataset} | {control} | " + " | ".join(cells) + " |")
    counts = pd.Series(calls, dtype=object).value_counts()
    margins = ", ".join(f"{m} ±{MARGINS[m]:g}" for m in metrics if m in MARGINS)
    summary = (f"Over {len(tables)} labelled dataset(s), {len(MODULE_CONTROLS)} controls and {len(metrics)} measures "
               f"({len(calls)} comparisons): the iVAE is better in {counts.get('better', 0)}, worse in "
               f"{counts.get('worse', 0)}, equivalent in {counts.get('equivalent', 0)} and inconclusive in "
               f"{counts.get('inconclusive', 0)} (mean paired difference over seeds [95 % CI]; paired t-test and "
               f"two one-sided tests at margins {margins}, Holm-corrected within each dataset at {ALPHA:.0%}).")
    return summary + "\n\n" + "\n".join(lines)


def results_markdown(datasets: dict, image_dir: str, figures: list[str]) -> str:
    """The whole results block for ``datasets``: name -> dict of the run's files; ``figures``
    of each dataset shown from ``image_dir``."""
    blocks, labelled = [], {}
    for name, files in datasets.items():
        table = pd.read_csv(files["table"], sep="\t")
        summary = pd.read_csv(files["summary"], sep="\t")
        nulls = pd.read_csv(files["nulls"], sep="\t")
        reference = summary["reference"].iloc[0]
        against = ("the dataset's own cell-type labels" if reference == "labels" else
                   "Leiden clusters of the log-normalised genes (no labels: this reference favours the linear "
                   "baselines, which see the same genes)")
        if reference == "labels":
            labelled[name] = table
        n_seeds = int(summary.loc[summary["method"] == "iVAE", "n_seeds"].iloc[0])
        blocks.append(f"## {name}\n\nClustering against {against}; trained models: mean ± s.d. over {n_seeds} "
                      f"seeds (baselines: one fit per seed).\n\n{metrics_markdown(summary)}\n\nLatent correlation: "
                      f"{correlation_sentence(nulls)}\n\nTraining: {convergence_sentence(table)}\n")
        blocks.append("\n".join(f"![{name}: {figure.replace('_', ' ')}]({image_dir}/{name}_{figure}.png)"
                                for figure in figures) + "\n")
    if labelled:
        blocks.insert(0, "## Does the interpretative module help?\n\nThe iVAE minus each control: the mean paired "
                         "difference over seeds [its 95 % confidence interval] and the verdict (NLL: lower is "
                         "better):\n\n" + verdict_markdown(labelled) + "\n")
    return "\n".join(blocks)


def evidence_markdown(datasets: dict, image_dir: str, figures: list[str], settings: str) -> str:
    """Per labelled dataset, every model of the sweep and of the default run (mean ± s.d.
    over seeds) and its difference to the VAE; then, per model, on how many datasets it was
    better, worse or not different (ARI, paired t-test over seeds) and its mean difference."""
    blocks, calls = [], {}
    for name, files in datasets.items():
        table = pd.concat([pd.read_csv(files["table"], sep="\t"), pd.read_csv(files["sweep"], sep="\t")],
                          ignore_index=True).drop_duplicates(["method", "seed"])
        table = table[~table["method"].isin(BASELINES)]
        lines = ["| model | seeds | " + " | ".join(h for _, h in EVIDENCE_COLUMNS) + " | ARI − VAE |",
                 "|" + " --- |" * (len(EVIDENCE_COLUMNS) + 3)]
        for method, part in table.groupby("method", sort=False):
            cells = [fmt(part[m].mean(), part[m].std(ddof=1) if len(part) > 1 else None) for m, _ in EVIDENCE_COLUMNS]
            diff, se, call = compare(table, method, "VAE", "ARI") if method != "VAE" else (np.nan, np.nan, "")
            if method != "VAE":
                calls.setdefault(method, []).append(({"higher": "better", "lower": "worse"}.get(call, call), diff))
            versus = f"{fmt(diff)} ± {fmt(se)} ({call})" if np.isfinite(diff) else "–"
            lines.append(f"| {method} | {part['seed'].nunique()} | " + " | ".join(cells) + f" | {versus} |")
        blocks.append(f"## {name}\n\n" + "\n".join(lines) + "\n\n"
                      + " ".join(f"![{name}: {f}]({image_dir}/{name}_{f}.png)" for f in figures) + "\n")
    tally = ["| model | ARI better than the VAE | no difference | worse | mean ARI − VAE |",
             "| --- | --- | --- | --- | --- |"]
    for method, outcomes in calls.items():
        counts = pd.Series([call for call, _ in outcomes]).value_counts()
        tally.append(f"| {method} | {counts.get('better', 0)} | {counts.get('no difference', 0)} | "
                     f"{counts.get('worse', 0)} | {fmt(np.nanmean([diff for _, diff in outcomes]))} |")
    header = (f"Models named `key=value` differ from the evidence run's own settings ({settings}) in that "
              f"one setting; ARI − VAE is the mean paired difference over seeds ± its standard error, called a "
              f"difference only where a paired t-test over the seeds finds one at 5 %. Over the {len(datasets)} labelled "
              f"datasets:\n\n")
    return header + "\n".join(tally) + "\n\n" + "\n".join(blocks)


#: The scIB table of the covariates page: (scib-metrics column, header).
SCIB_COLUMNS = [("Batch correction", "batch correction"), ("Bio conservation", "bio conservation"), ("Total", "total"),
                ("iLISI", "iLISI"), ("KBET", "kBET"), ("BRAS", "BRAS"), ("Graph connectivity", "graph conn."),
                ("cLISI", "cLISI"), ("KMeans ARI", "KMeans ARI")]
#: The scIB comparisons: (embedding, reference), each on the library's three aggregates. The
#: first is the positive control against the negative one: without it, nothing needed correcting.
SCIB_PAIRS = [("Harmony on PCA", "PCA (uncorrected)"), ("iVAE z", "iVAE-no-covariates z"), ("iVAE z", "scVI z"),
              ("iVAE z", "Harmony on PCA")]
SCIB_METRICS = ["Batch correction", "Bio conservation", "Total"]
#: Equivalence margin of every covariates-page comparison, in the scores' own units (0 to 1).
COVARIATE_MARGIN = 0.02


def verdict_cell(row) -> str:
    return f"{fmt(row['mean'])} [{fmt(row['low'])}, {fmt(row['high'])}] ({row['verdict']})"


def covariate_verdicts(tables: dict[str, pd.DataFrame], pairs, metrics) -> pd.DataFrame:
    """verdicts.compare_methods over every dataset of ``tables`` (name -> long table with
    method, seed and the metrics): one Holm family, every margin COVARIATE_MARGIN."""
    from verdicts import compare_methods

    long = pd.concat([t.assign(dataset=name) for name, t in tables.items()], ignore_index=True)
    return compare_methods(long, pairs, metrics, margins={m: COVARIATE_MARGIN for m in metrics})


def scib_long(table: pd.DataFrame) -> pd.DataFrame:
    """scib.tsv with its embedding column as the verdicts' method column."""
    return table.rename(columns={"embedding": "method"})


def called(comp: pd.DataFrame, dataset: str, method: str, reference: str, metric: str) -> str:
    """One comparison of ``comp`` in words: 'higher/lower/equivalent/inconclusive, +d [l, h]'."""
    row = comp[(comp["dataset"] == dataset) & (comp["method"] == method) & (comp["reference"] == reference)
               & (comp["metric"] == metric)]
    if row.empty:
        return "not measured"
    row = row.iloc[0]
    word = {"better": "higher", "worse": "lower"}.get(row["verdict"], row["verdict"])
    return f"{word}, {row['mean']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def covariates_markdown(datasets: dict, image_dir: str, figures: list[str]) -> str:
    """Per dataset with a batch_key: the iVAE conditioned on its covariates against the same
    model without them on the workflow's metrics; scIB's metrics (scib-metrics) of every model
    beside uncorrected PCA (negative control) and Harmony (positive control); every column
    mean ± s.d. over seeds, and the comparisons as verdicts (paired intervals over seeds, Holm
    within each table's family, equivalence within ±COVARIATE_MARGIN)."""
    from verdicts import ALPHA

    tables = {name: pd.read_csv(files["table"], sep="\t") for name, files in datasets.items()}
    scib = {name: scib_long(pd.read_csv(files["scib"], sep="\t")) for name, files in datasets.items()}
    metrics = [m for m, _ in COVARIATE_COLUMNS]
    own = covariate_verdicts(tables, [("iVAE", "iVAE-no-covariates")], metrics)
    scores = covariate_verdicts(scib, SCIB_PAIRS, SCIB_METRICS)
    blocks, findings = [], []
    for name in datasets:
        table = tables[name]
        lines = ["| model | seeds | " + " | ".join(h for _, h in COVARIATE_COLUMNS) + " |",
                 "|" + " --- |" * (len(COVARIATE_COLUMNS) + 2)]
        for method in ("iVAE", "iVAE-no-covariates", "VAE", "PCA"):
            part = table[table["method"] == method]
            if len(part):
                cells = [fmt(part[m].mean(), part[m].std(ddof=1) if len(part) > 1 else None) for m, _ in COVARIATE_COLUMNS]
                lines.append(f"| {method} | {part['seed'].nunique()} | " + " | ".join(cells) + " |")
        rows = own[own["dataset"] == name].set_index("metric")
        lines.append("| conditioned − not | | " + " | ".join(
            verdict_cell(rows.loc[m]) if m in rows.index else "–" for m in metrics) + " |")
        s = scib[name]
        scib_lines = ["| embedding | seeds | " + " | ".join(h for _, h in SCIB_COLUMNS) + " |",
                      "|" + " --- |" * (len(SCIB_COLUMNS) + 2)]
        for method, part in s.groupby("method", sort=False):
            cells = [fmt(part[c].mean(), part[c].std(ddof=1) if len(part) > 1 else None) if c in part else "–"
                     for c, _ in SCIB_COLUMNS]
            scib_lines.append(f"| {method} | {part['seed'].nunique()} | " + " | ".join(cells) + " |")
        comp_lines = ["| comparison | " + " | ".join(m.lower() for m in SCIB_METRICS) + " |",
                      "|" + " --- |" * (len(SCIB_METRICS) + 1)]
        here = scores[scores["dataset"] == name]
        for (method, reference), rows in here.groupby(["method", "reference"], sort=False):
            rows = rows.set_index("metric")
            comp_lines.append(f"| {method} − {reference} | " + " | ".join(
                verdict_cell(rows.loc[m]) if m in rows.index else "–" for m in SCIB_METRICS) + " |")
        blocks.append(f"## {name}\n\nThe workflow's metrics:\n\n" + "\n".join(lines)
                      + "\n\nscIB's metrics (`snakemake scib`):\n\n" + "\n".join(scib_lines)
                      + "\n\n" + "\n".join(comp_lines) + "\n\n"
                      + " ".join(f"![{name}: {f}]({image_dir}/{name}_{f}.png)" for f in figures) + "\n")
        batch = "Batch correction"
        findings.append(
            f"- **{name}** ({table['seed'].nunique()} seeds). The positive control, Harmony against the uncorrected "
            f"PCA, on scIB's batch correction: {called(scores, name, 'Harmony on PCA', 'PCA (uncorrected)', batch)}. "
            f"The iVAE conditioned on the samples against the same model without them: batch correction "
            f"{called(scores, name, 'iVAE z', 'iVAE-no-covariates z', batch)}; bio conservation "
            f"{called(scores, name, 'iVAE z', 'iVAE-no-covariates z', 'Bio conservation')}; ARI "
            f"{called(own, name, 'iVAE', 'iVAE-no-covariates', 'ARI')}. Against scVI with the same batch covariate: "
            f"batch correction {called(scores, name, 'iVAE z', 'scVI z', batch)}, total "
            f"{called(scores, name, 'iVAE z', 'scVI z', 'Total')}.")
    return ("Each comparison is the mean paired difference over seeds with its 95 % interval and a verdict: "
            "higher or lower where the paired t-test rejects no difference, equivalent where two one-sided "
            f"tests put it within ±{COVARIATE_MARGIN:g}, else inconclusive; Holm-corrected at {ALPHA:.0%} within "
            f"each table's family ({len(own)} comparisons on the workflow's metrics, {len(scores)} on scIB's). "
            "Cell-type scores are against the datasets' own labels. On the workflow's metrics batch ASW and "
            "graph connectivity are within cell types and batch entropy is global; scIB's are scib-metrics' "
            "(unscaled, so they compare across seeds and datasets). Higher is better for all.\n\n"
            "What the runs show, from the verdicts:\n\n" + "\n".join(findings) + "\n\n" + "\n".join(blocks))


def summary_markdown(summaries: dict[str, pd.DataFrame], verdict: str, page: str) -> str:
    """README's short summary: per dataset, the iVAE's and its controls' ARI and NMI (mean ±
    s.d. over seeds, from ``summaries``: name -> metrics_summary.tsv), then ``verdict`` (the
    first paragraph of the verdict; empty without labelled datasets) and a link to ``page``."""
    lines = ["| dataset | clustered against | model | seeds | " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " |",
             "|" + " --- |" * (len(SUMMARY_COLUMNS) + 4)]
    for name, summary in summaries.items():
        against = "its cell-type labels" if summary["reference"].iloc[0] == "labels" else "Leiden clusters"
        trained = summary[summary["method"].map(lambda m: m in BUILT_IN and BUILT_IN[m].role in ("model", "control"))]
        for row in trained.itertuples(index=False):
            cells = [fmt(getattr(row, m), getattr(row, f"{m}_sd") if row.n_seeds > 1 else None)
                     for m, _ in SUMMARY_COLUMNS]
            lines.append(f"| {name} | {against} | {row.method} | {row.n_seeds} | " + " | ".join(cells) + " |")
    link = (f"The linear baselines, every score, the latent correlation against its nulls, how training ended "
            f"and the figures: [{page}]({page}).")
    verdict = f"**Does the interpretative module help?** {verdict}" if verdict else ""
    return "\n\n".join(part for part in ("\n".join(lines), verdict, link) if part)


def verdict_paragraph(tables: dict[str, pd.DataFrame]) -> str:
    """The verdict's first paragraph (how many comparisons came out better, worse or not
    different), for the labelled datasets' metrics tables ``tables``; empty without any."""
    return verdict_markdown(tables).split("\n\n")[0] if tables else ""


def replace_block(text: str, block: str, name: str = "results") -> str:
    """``text`` with the part between the markers of block ``name`` replaced by ``block``
    (empty: the markers on two lines, as in a template)."""
    begin, end = markers(name)
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise ValueError(f"no {name} markers ({begin} ... {end}) in the text")
    return pattern.sub(lambda _: f"{begin}\n{block}\n{end}" if block else f"{begin}\n{end}", text)


def generated_note(template: str) -> str:
    """A page's first line: where it came from, and where to edit it."""
    return (f"<!-- Written by `snakemake readme` from {TEMPLATES}/{template} and a run's tables: "
            f"edit the template, not this file. -->")


def fill(template_text: str, template: str, name: str, block: str) -> str:
    """A page: the template's text (file name ``template``) with ``block`` between the
    markers of ``name``, under a first line saying so."""
    return generated_note(template) + "\n" + replace_block(template_text, block, name)


def template_of(page: str, name: str) -> str:
    """The template a page was written from: its first line dropped, its block ``name``
    emptied (so tests can hold a committed page to its template)."""
    first, _, rest = page.partition("\n")
    if not (first.startswith("<!-- Written by `snakemake readme`") and first.endswith("-->")):
        raise ValueError("the page does not start with the note of `snakemake readme`")
    return replace_block(rest, "", name)


def run_files(names: list[str]) -> dict[str, dict[str, str]]:
    """The run's tables that the pages read, per dataset (the rule's inputs)."""
    files = {"table": "metrics.tsv", "summary": "metrics_summary.tsv", "nulls": "latent_correlation.tsv",
             "sweep": "sweep/metrics.tsv", "scib": "scib.tsv"}
    return {name: {key: f"results/{name}/{file}" for key, file in files.items()} for name in names}


def copy_figures(names: list[str], figures: list[str], folder: Path) -> list[str]:
    """Every dataset's ``figures`` (results/{dataset}/figures/{figure}.png) copied to
    ``folder``/{dataset}_{figure}.png; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        for figure in figures:
            target = folder / f"{name}_{figure}.png"
            with atomic_path(target) as tmp:
                shutil.copyfile(f"results/{name}/figures/{figure}.png", tmp)
            written.append(os.path.normpath(target))
    return written


def render(block: str, datasets: dict, image_dir: str, figures: list[str], settings: str) -> str:
    """The generated part of page ``block``, its figures shown from ``image_dir``."""
    if block == "results":
        return results_markdown(datasets, image_dir, figures)
    if block == "covariates":
        return covariates_markdown(datasets, image_dir, figures)
    return evidence_markdown(datasets, image_dir, figures, settings)


def readme_summary(datasets: dict, page: str) -> str:
    """README's summary of the run's ``datasets`` (name -> dict of the run's files), linking
    to ``page``: the trained models' scores, and the verdict over the labelled datasets."""
    summaries = {name: pd.read_csv(files["summary"], sep="\t") for name, files in datasets.items()}
    labelled = {name: pd.read_csv(datasets[name]["table"], sep="\t")
                for name, summary in summaries.items() if summary["reference"].iloc[0] == "labels"}
    return summary_markdown(summaries, verdict_paragraph(labelled), page)


def write_page(path: str | Path, template: str | Path, name: str, block: str) -> None:
    """Write ``path``: the template at ``template`` with ``block`` between the markers of ``name``."""
    template = Path(template)
    with atomic_path(path) as tmp:
        tmp.write_text(fill(template.read_text(), template.name, name, block))
    log.info("wrote %s from %s", path, template)


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    block, figures = snakemake.config["readme"]["block"], list(snakemake.params.figures)
    datasets = run_files(list(snakemake.params.datasets))
    page = Path(snakemake.output.page)
    folder = page.parent / block
    written = copy_figures(list(datasets), figures, folder)
    declared = sorted(os.path.normpath(path) for path in snakemake.output.figures)
    if sorted(written) != declared:
        raise ValueError(f"docs.smk declares the figures {declared}, docs_pages.py wrote {sorted(written)}")
    body = render(block, datasets, os.path.relpath(folder, page.parent), figures, snakemake.params.settings)
    write_page(page, snakemake.input.template, block, body)
    if block == "results":
        readme = Path(snakemake.output.readme)
        summary = readme_summary(datasets, os.path.relpath(page, readme.parent))
        write_page(readme, snakemake.input.readme_template, SUMMARY, summary)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
