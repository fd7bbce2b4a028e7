"""verdict_page.py: the per-seed table, the verdicts per dataset and pooled, and the page
written from them alone."""

import numpy as np
import pandas as pd

from verdict_page import METRICS, REFERENCES, collect_runs, comparisons, page, pooled_table, write_all


def metrics_table(path, effect: dict, seeds=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        shared = rng.normal(0, 0.03)  # what a seed's models share (its KMeans draws, its split)
        for method in ["iVAE", *REFERENCES, "ICA"]:
            rows.append({"method": method, "seed": s, "ARI": 0.5 + shared + effect.get(method, 0.0)
                         + rng.normal(0, 0.005), "NMI": 0.6 + shared, "ASW": 0.55 + rng.normal(0, 0.05),
                         "test_iwae_nll": np.nan if method in ("PCA", "ICA") else 700 + rng.normal(0, 1)})
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return str(path)


def test_runs_comparisons_and_page(tmp_path):
    # the iVAE (effect 0) against references 0.05 better and one equal
    effect = {r: 0.05 for r in REFERENCES}
    effect["VAE"] = 0.0
    tables = {"a": metrics_table(tmp_path / "a.tsv", effect), "b": metrics_table(tmp_path / "b.tsv", effect, seed=1)}
    runs = collect_runs(tables, {"a": "tuning"})
    assert set(runs["role"]) == {"tuning", "reporting"} and runs.groupby("dataset")["seed"].nunique().eq(10).all()
    comp = comparisons(runs)
    assert len(comp) == 2 * len(REFERENCES) * len(METRICS) - 2  # no NLL for PCA, in each dataset
    ari = comp[comp["metric"] == "ARI"].set_index(["dataset", "reference"])["verdict"]
    assert ari[("a", "VAE")] == "equivalent" and ari[("a", "VAE-narrow")] == "worse"
    # Holm within each dataset's family
    from verdicts import holm
    for _, part in comp.groupby("dataset"):
        np.testing.assert_allclose(part["p_holm"], holm(part["p"]))
    pool = pooled_table(runs)
    assert set(pool["role"]) == {"tuning", "reporting"}
    text = page(runs, comp, pool)
    assert "## a (tuning)" in text and "## b (reporting)" in text and "**worse**" in text
    assert "These words come from the verdicts above" in text


def test_page_rewritten_from_the_committed_table(tmp_path):
    tables = {"a": metrics_table(tmp_path / "a.tsv", {"VAE": -0.05})}
    runs = collect_runs(tables, {})
    runs.to_csv(tmp_path / "runs.tsv", sep="\t", index=False)
    write_all(pd.read_csv(tmp_path / "runs.tsv", sep="\t"), tmp_path / "docs")
    first = (tmp_path / "docs" / "verdict.md").read_text()
    write_all(pd.read_csv(tmp_path / "runs.tsv", sep="\t"), tmp_path / "docs")
    assert (tmp_path / "docs" / "verdict.md").read_text() == first  # the same table, the same page
    comp = pd.read_csv(tmp_path / "docs" / "verdict" / "comparisons.tsv", sep="\t")
    vae = comp[(comp["reference"] == "VAE") & (comp["metric"] == "ARI")].iloc[0]
    assert vae["verdict"] == "better" and vae["low"] > 0  # the iVAE 0.05 above a worse VAE


def test_replicates_are_compared_verdict_by_verdict(tmp_path):
    """A replicate whose metrics moved by a little keeps the clear verdicts; the page says
    how many are the same and how far the numbers moved; an identical one says so."""
    import subprocess
    import sys

    from conftest import SCRIPTS
    from verdict_page import replicate_agreement, replicate_section

    effect = {r: 0.05 for r in REFERENCES}
    runs = collect_runs({"a": metrics_table(tmp_path / "a.tsv", effect)}, {"a": "tuning"})
    moved = runs.copy()
    moved["ARI"] += np.random.default_rng(5).normal(0, 1e-4, len(moved))
    comp = comparisons(runs)
    agree = replicate_agreement(comp, moved)
    assert len(agree) == len(comp) and agree.loc[agree["metric"] == "ARI", "same"].all()
    text = "\n".join(replicate_section(runs, comp, {"rep/x": ("two threads", moved)}))
    assert "### two threads (`docs/rep/x/runs.tsv`)" in text and "Largest change of a run's metric: ARI 0.000" in text
    assert f"**{int(agree['same'].sum())} of {len(agree)} verdicts are the same.**" in text
    same = "\n".join(replicate_section(runs, comp, {"rep/x": ("again", runs)}))
    assert "Every metric is identical to the last digit." in same and f"**{len(comp)} of {len(comp)}" in same
    flipped = runs.copy()
    flipped.loc[flipped["method"] == "VAE-narrow", "ARI"] -= 0.1  # now the iVAE is better than it
    assert "| a | VAE-narrow | ARI |" in "\n".join(replicate_section(runs, comp, {"r": ("x", flipped)}))
    assert not replicate_agreement(comp, flipped).set_index(["reference", "metric"]).loc[("VAE-narrow", "ARI"), "same"]
    # the command line: the page and a replicate's folder, from the committed tables
    docs = tmp_path / "docs"
    (docs / "rep" / "x").mkdir(parents=True)
    runs.to_csv(docs / "runs.tsv", sep="\t", index=False)
    moved.to_csv(docs / "rep" / "x" / "runs.tsv", sep="\t", index=False)
    subprocess.run([sys.executable, str(SCRIPTS / "verdict_page.py"), str(docs / "runs.tsv"), str(docs),
                    "rep/x=two threads per training"], check=True, cwd=SCRIPTS)
    assert "### two threads per training" in (docs / "verdict.md").read_text()
    write_all(moved, docs, name="rep/x")
    assert (docs / "rep" / "x.md").exists() and (docs / "rep" / "x" / "comparisons.tsv").exists()


def test_standard_models_are_a_family_of_their_own(tmp_path):
    """scVI and LDVAE, where a dataset's run has them, are compared with the iVAE in a Holm
    family of their own: the module's verdicts are those of the run without them."""
    from verdict_page import STANDARD_REFERENCES
    from verdicts import holm

    effect = {r: 0.05 for r in REFERENCES}
    without = comparisons(collect_runs({"a": metrics_table(tmp_path / "a.tsv", effect)}, {}))
    table = pd.read_csv(tmp_path / "a.tsv", sep="\t")
    standard = pd.concat([table[table["method"] == "VAE"].assign(method=name, ARI=lambda t, d=d: t["ARI"] + d)
                          for name, d in zip(STANDARD_REFERENCES, (0.1, 0.0))])
    pd.concat([table, standard]).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    runs = collect_runs({"a": str(tmp_path / "b.tsv")}, {})
    comp = comparisons(runs)
    module = comp[comp["family"] == "module"].drop(columns="family").reset_index(drop=True)
    pd.testing.assert_frame_equal(module, without.drop(columns="family").reset_index(drop=True))
    extra = comp[comp["family"] == "standard"]
    assert set(extra["reference"]) == set(STANDARD_REFERENCES)
    np.testing.assert_allclose(extra["p_holm"], holm(extra["p"]))
    assert extra.set_index(["reference", "metric"]).loc[("scVI", "ARI"), "verdict"] == "worse"
    text = page(runs, comp, pooled_table(runs))
    assert "| scVI |" in text and "a family of its own for Holm's correction" in text
    assert "a family of its own" not in page(runs, without, pooled_table(runs))
    # in words: each family counted apart, and the calls against the standard models named
    module_counts = comp[comp["family"] == "module"]["verdict"].value_counts()
    assert (f"- Against the module's controls and PCA, over 1 datasets and {(comp['family'] == 'module').sum()} "
            f"comparisons: {module_counts.get('better', 0)} better") in text
    assert "- Against the field's standard models (scVI, LDVAE), over 1 datasets and" in text
    seeds = runs[runs["method"] == "scVI"]["seed"].nunique()
    assert f"  - a ({seeds} seeds of the standard models): the iVAE is worse than scVI on ARI" in text


def test_a_diverged_run_is_named_and_left_out(tmp_path):
    """A standard model's run without scores (training diverged) is named in the words and
    the comparisons with it pair the other seeds."""
    from verdict_page import STANDARD_REFERENCES

    table = pd.read_csv(metrics_table(tmp_path / "a.tsv", {r: 0.05 for r in REFERENCES}), sep="\t")
    standard = pd.concat([table[table["method"] == "VAE"].assign(method=name) for name in STANDARD_REFERENCES])
    seeds = sorted(standard["seed"].unique())
    standard.loc[(standard["method"] == "LDVAE") & (standard["seed"] == seeds[0]), ["ARI", "NMI", "ASW",
                                                                                    "test_iwae_nll"]] = np.nan
    pd.concat([table, standard]).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    runs = collect_runs({"a": str(tmp_path / "b.tsv")}, {})
    comp = comparisons(runs)
    assert (comp[comp["reference"] == "LDVAE"]["n"] == len(seeds) - 1).all()
    text = page(runs, comp, pooled_table(runs))
    assert f"Runs without scores (their training diverged; every comparison with them uses the other seeds): " \
           f"a LDVAE seed {seeds[0]}." in text


def test_the_standard_models_kept_epochs_are_described(tmp_path):
    from verdict_page import STANDARD_REFERENCES

    table = pd.read_csv(metrics_table(tmp_path / "a.tsv", {r: 0.05 for r in REFERENCES}), sep="\t")
    standard = pd.concat([table[table["method"] == "VAE"].assign(method=name, epoch_kept=kept)
                          for name, kept in zip(STANDARD_REFERENCES, (150, 3))])
    pd.concat([table.assign(epoch_kept=100), standard]).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    runs = collect_runs({"a": str(tmp_path / "b.tsv")}, {})
    assert "epoch_kept" in runs
    text = page(runs, comparisons(runs), pooled_table(runs))
    assert "where an early one means a barely trained model: a scVI 150 (150–150); a LDVAE 3 (3–3)." in text
