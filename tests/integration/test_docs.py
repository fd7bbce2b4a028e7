"""The docs' generated pages: `snakemake readme` on the shared integration run."""

import pandas as pd

from integration_helpers import snakemake


def test_readme_target_writes_the_runs_numbers(run):
    """`snakemake readme` writes the tables from metrics_summary.tsv into README's marked block."""
    from readme import RESULTS_BEGIN, RESULTS_END, fmt

    workdir, _ = run
    (workdir / "README.md").write_text(f"# Title\n\n{RESULTS_BEGIN}\nstale\n{RESULTS_END}\n\nAfter.\n")
    snakemake(workdir, "readme")
    text = (workdir / "README.md").read_text()
    assert "stale" not in text and text.endswith("After.\n") and "Does the interpretative module help?" in text
    summary = pd.read_csv(workdir / "results" / "pbmc68k" / "metrics_summary.tsv", sep="\t").set_index("method")
    ivae = summary.loc["iVAE"]
    assert f"| iVAE | 2 | {fmt(ivae['ARI'], ivae['ARI_sd'])} |" in text
    assert (workdir / "docs" / "readme" / "results_pbmc68k_latent_correlation.png").exists()
    assert "](docs/readme/results_pbmc68k_latent_correlation.png)" in text
    assert (workdir / "results" / "readme" / "results.md").read_text().count("| iVAE |") == 2  # both datasets
