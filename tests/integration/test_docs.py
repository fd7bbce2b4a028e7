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
