"""The docs' generated pages: `snakemake readme` on the shared integration run."""

import pandas as pd

from integration_helpers import snakemake


def test_readme_target_writes_the_runs_numbers(run):
    """`snakemake readme` writes docs/results.md (the tables of metrics_summary.tsv), its
    figures and README.md (the short summary) into the working directory, each from its
    committed template, and nothing it did not declare."""
    from conftest import REPO
    from docs_pages import SUMMARY, TEMPLATES, fmt, template_of

    workdir, _ = run
    (workdir / "README.md").write_text("stale: Snakemake removes a job's outputs before it runs\n")
    snakemake(workdir, "readme")

    page = (workdir / "docs" / "results.md").read_text()
    assert template_of(page, "results") == (REPO / TEMPLATES / "results.md").read_text()
    assert "Does the interpretative module help?" in page and page.count("| iVAE |") == 2  # both datasets
    summary = pd.read_csv(workdir / "results" / "pbmc68k" / "metrics_summary.tsv", sep="\t").set_index("method")
    ivae = summary.loc["iVAE"]
    assert f"| iVAE | 2 | {fmt(ivae['ARI'], ivae['ARI_sd'])} |" in page
    figure = workdir / "docs" / "results" / "pbmc68k_latent_correlation.png"
    assert figure.read_bytes() == (workdir / "results" / "pbmc68k" / "figures" / "latent_correlation.png").read_bytes()
    assert "](results/pbmc68k_latent_correlation.png)" in page
    assert sorted(p.name for p in (workdir / "docs").iterdir()) == ["results", "results.md"]

    readme = (workdir / "README.md").read_text()
    assert "stale" not in readme
    assert template_of(readme, SUMMARY) == (REPO / TEMPLATES / "README.md").read_text()
    assert f"| pbmc68k | its cell-type labels | iVAE | 2 | {fmt(ivae['ARI'], ivae['ARI_sd'])} | " in readme
    assert "| small10x | Leiden clusters | iVAE | 1 |" in readme and "| PCA |" not in readme
    assert "**Does the interpretative module help?** Over 1 labelled dataset(s)" in readme
    assert "[docs/results.md](docs/results.md)" in readme


def test_verdict_target_writes_the_per_seed_table_and_page(run):
    """`snakemake verdict` on the shared run: every model x seed x dataset row of the metrics
    tables in docs/verdict/runs.tsv, the comparisons and the page written from them (run
    after the readme test, which checks that docs/ holds nothing else)."""
    workdir, _ = run
    snakemake(workdir, "verdict")
    runs = pd.read_csv(workdir / "docs" / "verdict" / "runs.tsv", sep="\t")
    metrics = pd.read_csv(workdir / "results" / "pbmc68k" / "metrics.tsv", sep="\t")
    mine = runs[runs["dataset"] == "pbmc68k"].reset_index(drop=True)
    assert list(zip(mine["method"], mine["seed"])) == list(zip(metrics["method"], metrics["seed"]))
    assert set(runs["role"]) == {"reporting"} and set(runs["dataset"]) == {"pbmc68k", "small10x"}
    comparisons = pd.read_csv(workdir / "docs" / "verdict" / "comparisons.tsv", sep="\t")
    assert set(comparisons["verdict"]) <= {"better", "worse", "equivalent", "inconclusive"}
    assert set(comparisons["reference"]) == {"VAE", "VAE-narrow", "VAE-beta-matched", "iVAE-stop-gradient", "PCA"}
    page = (workdir / "docs" / "verdict.md").read_text()
    assert "## pbmc68k (reporting)" in page and "These words come from the verdicts above" in page
