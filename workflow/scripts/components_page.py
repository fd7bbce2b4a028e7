"""`components_page` rule: what the components mean, over every dataset, on a page.

Reads each dataset's ``components/stability.tsv``, ``enrichment.tsv`` and ``summary.tsv``
(components.py) and writes under the docs folder:

- ``components/stability.tsv``: per dataset, model and pair of seeds, the median matched |r|;
- ``components/enrichment.tsv``: per dataset, model and seed, the fraction of the model's
  components enriched in a Hallmark set at FDR 5 % (components.enriched_fractions);
- ``components/tests.tsv``: per dataset with gene names, every model's enriched fraction
  against the random-projection null's, paired by seed (verdicts.compare_methods: 95 %
  interval, Holm within the dataset; "better" = above the null);
- ``components/{dataset}_components.png``: each dataset's figure (plot_components.py);
- ``components.md``: the page, written from these tables alone (its sentences and the
  across-datasets section included), which
  ``python workflow/scripts/components_page.py docs/components docs`` rewrites.

Stability is described, not tested: a model's seed pairs share seeds, so they are not
independent draws.
"""

import shutil
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
        names = summary["gene_names"].iloc[0] if "gene_names" in summary and len(summary) else "as is"
        for row in summary.itertuples():
            fractions = enriched_fractions(enrichment[enrichment["model"] == row.model], int(row.components))
            enr.append(pd.DataFrame({"dataset": dataset, "model": row.model, "seed": fractions.index.astype(int),
                                     "components": int(row.components), "enriched_fraction": fractions.to_numpy(),
                                     "gene_names": names}))
    stab = pd.concat(stab, ignore_index=True)[["dataset", "model", "seed_a", "seed_b", "median_matched_r"]]
    columns = ["dataset", "model", "seed", "components", "enriched_fraction", "gene_names"]
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


#: The iVAE's components, compared with every other model's across datasets.
IVAE_READINGS = ("iVAE z", "iVAE interpretative")


def pooled_table(stab: pd.DataFrame, enrichment: pd.DataFrame) -> pd.DataFrame:
    """Across datasets, per model: the median over datasets of its stability (each dataset's
    median over seed pairs), and its enriched fraction minus the null's and minus the iVAE
    z's (verdicts.pooled: the mean of the datasets' mean paired differences with a t
    interval over datasets, and the signed-rank test over every dataset x seed pair)."""
    from verdicts import pooled

    stability = stab.groupby(["dataset", "model"], sort=False)["median_matched_r"].median()
    table = enrichment.rename(columns={"model": "method"})
    rows = []
    for model in dict.fromkeys(stab["model"]):
        row = {"model": model, "datasets": stability.xs(model, level="model").size,
               "stability": float(stability.xs(model, level="model").median())}
        for reference, key in ((RANDOM, "null"), (IVAE_READINGS[0], "ivae")):
            if model == reference or table.empty:
                continue
            result = pooled(table, model, reference, "enriched_fraction")
            row.update({f"minus_{key}": result["mean"], f"minus_{key}_low": result["low"],
                        f"minus_{key}_high": result["high"], f"minus_{key}_p": result["p_signed_rank"],
                        f"minus_{key}_datasets": result["datasets"]})
        rows.append(row)
    return pd.DataFrame(rows)


def interval(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]" if np.isfinite(low) else f"{mean:+.2f}"


def p_value(p: float) -> str:
    return "–" if not np.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def excludes_zero(low: float, high: float) -> int:
    """+1 / -1 where the interval lies above / below 0, else 0."""
    return 1 if np.isfinite(low) and low > 0 else -1 if np.isfinite(high) and high < 0 else 0


def pooled_section(pool: pd.DataFrame) -> list[str]:
    """The page's across-datasets table and its generated paragraph."""
    if pool.empty:
        return []
    lines = ["## Across datasets", "",
             "Per model: its stability, the median over datasets of each dataset's median; its enriched fraction "
             "minus the null's and minus the iVAE z's, the mean over datasets of the mean paired difference, with "
             "a 95 % t interval over datasets (each dataset one draw: wide where datasets disagree) and the "
             "signed-rank p over every dataset × seed pair (uncorrected: read it beside the per-dataset tests).", "",
             "| model | datasets | stability | enriched fraction − the null's | p | − the iVAE z's | p |",
             "|---|---|---|---|---|---|---|"]
    get = lambda r, k: r.get(k, np.nan) if isinstance(r, dict) else getattr(r, k, np.nan)  # noqa: E731
    for r in pool.to_dict("records"):
        enriched = get(r, "minus_null_datasets")
        if not np.isfinite(enriched):
            enriched = get(r, "minus_ivae_datasets")
        counted = (f"{r['datasets']} ({int(enriched)} with gene names)"
                   if np.isfinite(enriched) and int(enriched) != r["datasets"] else f"{r['datasets']}")
        lines.append(f"| {r['model']} | {counted} | {fmt(r['stability'])} | "
                     f"{interval(get(r, 'minus_null'), get(r, 'minus_null_low'), get(r, 'minus_null_high'))} | "
                     f"{p_value(get(r, 'minus_null_p'))} | "
                     f"{interval(get(r, 'minus_ivae'), get(r, 'minus_ivae_low'), get(r, 'minus_ivae_high'))} | "
                     f"{p_value(get(r, 'minus_ivae_p'))} |")
    lines += ["", *in_words(pool), ""]
    return lines


def in_words(pool: pd.DataFrame) -> list[str]:
    """The across-datasets paragraph, every statement read off ``pool``'s intervals."""
    rows = pool.set_index("model")
    linear = [m for m in ("PCA", "ICA", "NMF", "FA") if m in rows.index]
    trained = rows.drop([*linear, RANDOM], errors="ignore")
    words = []
    if len(trained):
        listed = lambda frame: ", ".join(f"{m} {v:.2f}" for m, v in frame["stability"].items())  # noqa: E731
        words.append("Stability (median matched |r|, the median over datasets), trained models from the most "
                     "stable: " + listed(trained.sort_values("stability", ascending=False))
                     + (f"; the linear baselines refitted per seed: {listed(rows.loc[linear])}" if linear else "")
                     + (f"; the random projection, the floor: {rows.loc[RANDOM, 'stability']:.2f}"
                        if RANDOM in rows.index else "") + ".")
    if "minus_null" in rows:
        above = [m for m, r in rows.iterrows() if excludes_zero(r.get("minus_null_low"), r.get("minus_null_high")) > 0]
        below = [m for m, r in rows.iterrows() if excludes_zero(r.get("minus_null_low"), r.get("minus_null_high")) < 0]
        words.append("Enriched more often than the random projection on average over datasets (interval above 0): "
                     + (", ".join(above) if above else "none") + "; less often: " + (", ".join(below) if below
                                                                                      else "none") + ".")
    if "minus_ivae" in rows:
        models = rows.drop(RANDOM, errors="ignore")
        worse = [m for m, r in models.iterrows()
                 if excludes_zero(r.get("minus_ivae_low"), r.get("minus_ivae_high")) > 0]
        better = [m for m, r in models.iterrows()
                  if excludes_zero(r.get("minus_ivae_low"), r.get("minus_ivae_high")) < 0]
        words.append("Against the iVAE's z, enriched more often: " + (", ".join(worse) if worse else "none")
                     + "; less often: " + (", ".join(better) if better else "none")
                     + "; every other model's interval spans 0.")
    return [" ".join(words)]


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
    datasets = list(dict.fromkeys([*stab["dataset"], *enr["dataset"]]))  # one seed: no pairs, yet enrichment
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
        pairs = stab[stab["dataset"] == dataset]
        counts = pd.concat([pairs[["model", "seed_a"]].rename(columns={"seed_a": "seed"}),
                            pairs[["model", "seed_b"]].rename(columns={"seed_b": "seed"})]).groupby(
            "model", sort=False)["seed"].nunique()
        seeds = int(counts.max()) if len(counts) else enr.loc[enr["dataset"] == dataset, "seed"].nunique()
        names = enr.loc[enr["dataset"] == dataset, "gene_names"]
        genes = {"as is": "Genes matched to the Hallmark sets by symbol.",
                 "upper-cased mouse symbols": "Mouse symbols upper-cased to match the human Hallmark sets "
                 "(most orthologues share the symbol; those that do not are left out)."}.get(
                     names.iloc[0] if len(names) else "none", "The genes have no names: no enrichment.")
        fewer = ", ".join(f"{m}: {n}" for m, n in counts[counts < seeds].items())
        header = f"{seeds} seeds" + (f" ({fewer})" if fewer else "") + "." if seeds else ""
        lines += [f"## {dataset}", "", " ".join(x for x in (header, genes) if x), "",
                  f"![{dataset}: components](components/{dataset}_components.png)", "",
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
    lines += pooled_section(pooled_table(stab, enr))
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
    for dataset, figure, target in zip(snakemake.params.datasets, snakemake.input.figures, snakemake.output.figures,
                                       strict=True):
        if Path(target).name != f"{dataset}_components.png":
            raise ValueError(f"components.smk declares {target} for dataset {dataset}")
        with atomic_path(target) as tmp:
            shutil.copyfile(figure, tmp)
    write_all(stab, enr, Path(snakemake.output.page).parent)
    log.info("components of %d datasets written", stab["dataset"].nunique())


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
elif __name__ == "__main__":
    folder = Path(sys.argv[1])
    write_all(pd.read_csv(folder / "stability.tsv", sep="\t"), pd.read_csv(folder / "enrichment.tsv", sep="\t"),
              Path(sys.argv[2]))
