"""docs_pages.py: the docs' numbers come from the run's tables, differences only where a
paired t-test finds one; every generated page is its committed template plus its block."""

import re

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from docs_pages import (TEMPLATES, compare, evidence_markdown, fill, fmt, generated_note, markers,
                        metrics_markdown, replace_block, summary_markdown, template_of, verdict_markdown,
                        verdict_paragraph)


def runs(means: dict, sd: float = 0.01, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method, mean in means.items():
        for seed in range(seeds):
            rows.append({"method": method, "seed": seed, "ARI": mean + rng.normal(scale=sd), "NMI": mean,
                         "ASW": 0.2, "participation_ratio": 3.0, "test_iwae_nll": 600.0, "reference": "labels"})
    return pd.DataFrame(rows)


def test_paired_difference_over_seeds():
    from scipy.stats import ttest_rel

    table = runs({"iVAE": 0.60, "VAE": 0.50, "same": 0.505})
    diff, se, call = compare(table, "iVAE", "VAE", "ARI")
    assert call == "higher" and diff == pytest.approx(0.10, abs=0.03) and se < 0.02
    assert compare(table, "same", "VAE", "ARI")[2] == "no difference"
    assert compare(table, "VAE", "iVAE", "ARI")[2] == "lower"
    assert compare(table.iloc[:4], "iVAE", "VAE", "ARI")[2] == "not enough seeds"
    # the call is a two-sided paired t-test at 5 %
    a, b = (table[table["method"] == m].sort_values("seed")["ARI"] for m in ("same", "VAE"))
    assert (ttest_rel(a, b).pvalue < 0.05) == (compare(table, "same", "VAE", "ARI")[2] != "no difference")


def test_tables_and_block_replacement():
    summary = pd.DataFrame([{"method": "iVAE", "n_seeds": 3, **{c: 0.5 for c in ("ARI", "NMI", "ASW", "CH", "DB",
                             "ASW_kmeans", "corr_score", "participation_ratio", "test_iwae_nll")},
                             **{f"{c}_sd": 0.01 for c in ("ARI", "NMI", "ASW", "CH", "DB", "ASW_kmeans", "corr_score",
                                                           "participation_ratio", "test_iwae_nll")}}])
    text = metrics_markdown(summary)
    assert "| iVAE | 3 | 0.500 ± 0.010 |" in text
    begin, end = markers("results")
    page = f"a\n{begin}\nold\n{end}\nb"
    assert replace_block(page, "new") == f"a\n{begin}\nnew\n{end}\nb"
    assert replace_block(page, "") == f"a\n{begin}\n{end}\nb"  # as in a template
    with pytest.raises(ValueError, match="evidence markers"):
        replace_block(page, "x", "evidence")
    assert fmt(1234.5) == "1,234" and fmt(0.12345, 0.01) == "0.123 ± 0.010" and fmt(float("nan")) == "–"


def test_page_from_template_and_back():
    """A page is its template with the block filled in under a note; template_of undoes it."""
    begin, end = markers("summary")
    template = f"# Title\n\nBefore.\n\n{begin}\n{end}\n\nAfter.\n"
    page = fill(template, "README.md", "summary", "| a | b |\n\nline")
    note, _, rest = page.partition("\n")
    assert note == generated_note("README.md") and "docs/templates/README.md" in note and "edit the template" in note
    assert rest == f"# Title\n\nBefore.\n\n{begin}\n| a | b |\n\nline\n{end}\n\nAfter.\n"
    assert template_of(page, "summary") == template
    with pytest.raises(ValueError, match="note"):
        template_of(template, "summary")


#: Every generated page in the repository: (page, its template, its block).
PAGES = [("README.md", "README.md", "summary"), ("docs/results.md", "results.md", "results"),
         ("docs/evidence.md", "evidence.md", "evidence"), ("docs/covariates.md", "covariates.md", "covariates")]


@pytest.mark.parametrize(("page", "template", "block"), PAGES)
def test_committed_pages_equal_their_templates(page, template, block):
    """README.md and the docs' generated pages, outside their generated block, are their
    committed templates (docs/templates/), so the two cannot drift: edit the template and
    rerun `snakemake readme` (or copy the edit into both)."""
    text = (REPO / page).read_text()
    assert text.startswith(generated_note(template) + "\n")
    assert template_of(text, block) == (REPO / TEMPLATES / template).read_text()


@pytest.mark.parametrize(("page", "template", "block"), PAGES[1:])
def test_committed_pages_show_committed_figures(page, template, block):
    """Every figure a generated page shows is in docs/{block}/, named {dataset}_{figure}.png,
    and every figure there is shown."""
    text = (REPO / page).read_text()
    shown = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert shown and all(link.startswith(f"{block}/") for link in shown)
    assert sorted(shown) == sorted(f"{block}/{path.name}" for path in (REPO / "docs" / block).glob("*.png"))


def _anchors(path):
    """GitHub's anchors of a markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))])
def test_links_resolve(page):
    """Every relative link of README and the docs points at a file that exists, and every
    #anchor at one of its headings."""
    path = REPO / page
    for target, anchor in re.findall(r"\]\(([^)#:\s]*)(?:#([^)\s]+))?\)", path.read_text()):
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), (page, target)
        if anchor:
            assert anchor in _anchors(file), (page, target, anchor)


def _summary_table(rows):
    columns = {"method": [], "n_seeds": [], "ARI": [], "ARI_sd": [], "NMI": [], "NMI_sd": [], "reference": []}
    for method, n_seeds, ari, nmi, reference in rows:
        for key, value in zip(columns, (method, n_seeds, ari, 0.01, nmi, 0.02, reference)):
            columns[key].append(value)
    return pd.DataFrame(columns)


def test_summary_shows_the_trained_models_and_the_verdict():
    summaries = {
        "labelled": _summary_table([("iVAE", 3, 0.41, 0.59, "labels"), ("VAE", 3, 0.47, 0.62, "labels"),
                                    ("PCA", 3, 0.46, 0.64, "labels")]),
        "unlabelled": _summary_table([("iVAE", 1, 0.45, 0.63, "clusters"), ("VAE-narrow", 1, 0.47, 0.60, "clusters")]),
    }
    text = summary_markdown(summaries, "Over 1 labelled dataset(s): the verdict.", "docs/results.md")
    assert "| labelled | its cell-type labels | iVAE | 3 | 0.410 ± 0.010 | 0.590 ± 0.020 |" in text
    assert "| unlabelled | Leiden clusters | VAE-narrow | 1 | 0.470 | 0.600 |" in text  # one seed: no s.d.
    assert "PCA" not in text  # baselines only on the full page
    assert "**Does the interpretative module help?** Over 1 labelled dataset(s): the verdict." in text
    assert text.endswith("[docs/results.md](docs/results.md).")
    assert "help?" not in summary_markdown(summaries, "", "docs/results.md")


def test_verdict_paragraph_is_the_verdicts_first_paragraph():
    tables = {"a": runs({"iVAE": 0.60, "VAE": 0.50, "VAE-narrow": 0.50, "VAE-beta-matched": 0.5,
                         "iVAE-stop-gradient": 0.5})}
    paragraph = verdict_paragraph(tables)
    assert paragraph == verdict_markdown(tables).split("\n\n")[0]
    assert paragraph.startswith("Over 1 labelled dataset(s), 4 controls") and "|" not in paragraph
    assert "worse in 0," in paragraph and "Holm-corrected" in paragraph  # 0.1 above each control
    assert verdict_paragraph({}) == ""


def test_evidence_tally(tmp_path):
    datasets = {}
    for name, ivae in (("a", 0.60), ("b", 0.50)):
        table = runs({"iVAE": ivae, "VAE": 0.50, "VAE-narrow": 0.40})
        sweep = runs({"iVAE": ivae, "VAE": 0.50, "irecon=1": 0.55})
        table.to_csv(tmp_path / f"{name}_t.tsv", sep="\t", index=False)
        sweep.to_csv(tmp_path / f"{name}_s.tsv", sep="\t", index=False)
        datasets[name] = {"table": tmp_path / f"{name}_t.tsv", "sweep": tmp_path / f"{name}_s.tsv"}
    text = evidence_markdown(datasets, "img", ["sweep", "spectrum"], "irecon 5")
    tally = {row[0]: row[1:] for row in re.findall(r"^\| (\S+) \| (\d) \| (\d) \| (\d) \| (\S+) \|$", text, flags=re.M)}
    assert tally["iVAE"][:3] == ("1", "1", "0")  # better on a, no difference on b
    assert tally["VAE-narrow"][:3] == ("0", "0", "2") and tally["irecon=1"][:3] == ("2", "0", "0")
    # the mean paired difference over datasets: about (+0.10 + 0) / 2, -0.10, +0.05
    means = {m: float(v[3]) for m, v in tally.items()}
    assert means["iVAE"] == pytest.approx(0.05, abs=0.01) and means["VAE-narrow"] == pytest.approx(-0.10, abs=0.01)
    assert "![a: sweep](img/a_sweep.png) ![a: spectrum](img/a_spectrum.png)" in text


def test_convergence_sentence_counts_early_stops(tmp_path):
    from metrics import training_end
    from docs_pages import convergence_sentence

    history = pd.DataFrame({"epoch": range(1, 61), "selected": [e == 40 for e in range(1, 61)]})
    assert training_end(history, 400) == {"epochs_run": 60, "epoch_kept": 40, "stopped_early": True}
    assert training_end(history, 60)["stopped_early"] is False
    table = pd.DataFrame({"epochs_run": [60, 400, np.nan], "epoch_kept": [40, 400, np.nan],
                          "stopped_early": [True, False, np.nan]})
    text = convergence_sentence(table)
    assert text.startswith("1 of 2 trained models stopped early") and "ran to their maximum" in text
    # as read back from metrics.tsv, where the baselines' empty cells make the column float
    path = tmp_path / "metrics.tsv"
    table.assign(method=["iVAE", "VAE", "PCA"]).to_csv(path, sep="\t", index=False)
    assert convergence_sentence(pd.read_csv(path, sep="\t")).startswith("1 of 2 trained models stopped early")


def _run_tables(root, name, labelled):
    """A dataset's tables and figures as the default run writes them, small and synthetic."""
    from docs_pages import COLUMNS

    folder = root / "results" / name
    (folder / "figures").mkdir(parents=True)
    table = runs({"iVAE": 0.60, "VAE": 0.50, "VAE-narrow": 0.45, "PCA": 0.55})
    table = table.assign(reference="labels" if labelled else "clusters", epochs_run=60.0, epoch_kept=40.0,
                         stopped_early=pd.Series([True] * len(table), dtype=object))
    table.loc[table["method"] == "PCA", ["epochs_run", "epoch_kept", "stopped_early"]] = np.nan
    table.to_csv(folder / "metrics.tsv", sep="\t", index=False)
    summary = table.groupby("method", sort=False).agg(n_seeds=("seed", "nunique")).reset_index()
    for metric, _ in COLUMNS:
        values = table.groupby("method", sort=False)[metric] if metric in table else None
        summary[metric] = values.mean().to_numpy() if values is not None else 1.0
        summary[f"{metric}_sd"] = values.std(ddof=1).to_numpy() if values is not None else 0.1
    summary["reference"] = table["reference"].iloc[0]
    summary.to_csv(folder / "metrics_summary.tsv", sep="\t", index=False)
    nulls = pd.DataFrame([{"seed": seed, "panel": panel, "observed": 0.3, "null_mean": 0.1, "null_low": 0.05,
                           "null_high": 0.15, "percentile": 100.0, "rank_i_dim": 0.2}
                          for seed in range(3) for panel in ("before", "after")])
    nulls.to_csv(folder / "latent_correlation.tsv", sep="\t", index=False)
    for figure in ("metrics", "umap"):
        (folder / "figures" / f"{figure}.png").write_bytes(f"{name} {figure}".encode())
    return table


def test_main_writes_every_declared_output_from_the_templates(tmp_path, monkeypatch):
    """The results block: docs/results.md, its figures and README.md, written under readme.root
    from the templates and the run's tables alone (Snakemake has deleted the old pages)."""
    from types import SimpleNamespace

    from docs_pages import main

    work, site = tmp_path / "work", tmp_path / "site"
    work.mkdir()
    for name, labelled in (("a", True), ("b", False)):
        _run_tables(work, name, labelled)
    templates = tmp_path / "templates"
    templates.mkdir()
    for name, block in (("results", "results"), ("README", "summary")):
        begin, end = markers(block)
        (templates / f"{name}.md").write_text(f"# {name}\n\n{begin}\n{end}\n\nKept.\n")
    figures = [f"../site/docs/results/{d}_{f}.png" for d in ("a", "b") for f in ("metrics", "umap")]
    snakemake = SimpleNamespace(
        log=[str(tmp_path / "readme.log")],
        input=SimpleNamespace(template=str(templates / "results.md"), readme_template=str(templates / "README.md")),
        output=SimpleNamespace(page="../site/docs/results.md", figures=figures, readme="../site/README.md"),
        params=SimpleNamespace(figures=["metrics", "umap"], datasets=["a", "b"], settings=""),
        config={"readme": {"block": "results", "root": "../site"}},
    )
    monkeypatch.chdir(work)
    main(snakemake)

    page = (site / "docs" / "results.md").read_text()
    assert template_of(page, "results") == (templates / "results.md").read_text()
    assert "## a\n" in page and "## b\n" in page and "## Does the interpretative module help?" in page
    assert "![a: umap](results/a_umap.png)" in page
    assert (site / "docs" / "results" / "b_metrics.png").read_bytes() == b"b metrics"
    readme = (site / "README.md").read_text()
    assert template_of(readme, "summary") == (templates / "README.md").read_text()
    summary = pd.read_csv(work / "results" / "a" / "metrics_summary.tsv", sep="\t").set_index("method")
    assert f"| a | its cell-type labels | iVAE | 3 | {fmt(summary.loc['iVAE', 'ARI'], summary.loc['iVAE', 'ARI_sd'])} |" in readme
    assert "| b | Leiden clusters | VAE |" in readme and "| PCA |" not in readme
    assert "**Does the interpretative module help?** Over 1 labelled dataset(s)" in readme
    assert "[docs/results.md](docs/results.md)" in readme

    # a rule that declares other figures than the script writes is an error, not a silent gap
    snakemake.output.figures = figures[:-1]
    with pytest.raises(ValueError, match="declares the figures"):
        main(snakemake)


def test_covariates_page_calls_the_controls_and_scib_from_the_tables(tmp_path):
    """The covariates block: the workflow's metrics and scIB's per dataset, the positive
    control (Harmony) against the negative (PCA) and the iVAE's comparisons as verdicts
    computed from the tables, Holm within each family."""
    from docs_pages import SCIB_PAIRS, covariates_markdown

    rng = np.random.default_rng(1)
    rows, scib = [], []
    for seed in range(5):
        for method, ari in (("iVAE", 0.5), ("iVAE-no-covariates", 0.5), ("VAE", 0.4), ("PCA", 0.3)):
            rows.append({"method": method, "seed": seed, "ARI": ari + rng.normal(scale=0.002), "NMI": 0.6, "ASW": 0.1,
                         "batch_ASW": 0.7, "graph_connectivity": 0.9, "batch_entropy": 0.3})
        for emb, batch in (("iVAE z", 0.55), ("iVAE-no-covariates z", 0.45), ("VAE z", 0.4), ("scVI z", 0.55),
                           ("PCA (uncorrected)", 0.30), ("Harmony on PCA", 0.60)):
            b = batch + rng.normal(scale=0.005)
            scib.append({"embedding": emb, "seed": seed, "Batch correction": b, "Bio conservation": 0.6,
                         "Total": 0.4 * b + 0.36, "iLISI": 0.1, "KBET": 0.2, "BRAS": 0.8, "Graph connectivity": 0.9,
                         "cLISI": 1.0, "KMeans ARI": 0.5})
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.tsv", sep="\t", index=False)
    pd.DataFrame(scib).to_csv(tmp_path / "scib.tsv", sep="\t", index=False)
    text = covariates_markdown({"lung": {"table": str(tmp_path / "metrics.tsv"), "scib": str(tmp_path / "scib.tsv")}},
                               "covariates", ["umap"])
    assert "Harmony against the uncorrected PCA, on scIB's batch correction: higher, +0.30" in text
    assert re.search(r"without them: batch correction higher, \+0\.(09|10)", text)  # iVAE conditioned vs not
    assert "Against scVI with the same batch covariate: batch correction equivalent" in text
    assert "bio conservation equivalent" in text  # equal within the margin
    assert "| Harmony on PCA | 5 | 0.6" in text and "| scVI z | 5 |" in text
    assert f"(6 comparisons on the workflow's metrics, {len(SCIB_PAIRS) * 3} on scIB's)" in text
    assert "![lung: umap](covariates/lung_umap.png)" in text
