"""readme.py: README's numbers come from the run's tables, differences only where a paired t-test finds one."""

import re

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from readme import FIGURES, compare, evidence_markdown, fmt, markers, metrics_markdown, replace_block


def runs(means: dict, sd: float = 0.01, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method, mean in means.items():
        for seed in range(seeds):
            rows.append({"method": method, "seed": seed, "ARI": mean + rng.normal(scale=sd), "NMI": mean,
                         "ASW": 0.2, "participation_ratio": 3.0, "val_nll": 600.0, "reference": "labels"})
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
                             "ASW_kmeans", "corr_score", "participation_ratio", "val_nll")},
                             **{f"{c}_sd": 0.01 for c in ("ARI", "NMI", "ASW", "CH", "DB", "ASW_kmeans", "corr_score",
                                                           "participation_ratio", "val_nll")}}])
    text = metrics_markdown(summary)
    assert "| iVAE | 3 | 0.500 ± 0.010 |" in text
    begin, end = markers("results")
    readme = f"a\n{begin}\nold\n{end}\nb"
    assert replace_block(readme, "new") == f"a\n{begin}\nnew\n{end}\nb"
    with pytest.raises(ValueError, match="evidence markers"):
        replace_block(readme, "x", "evidence")
    assert fmt(1234.5) == "1,234" and fmt(0.12345, 0.01) == "0.123 ± 0.010" and fmt(float("nan")) == "–"


def test_evidence_tally(tmp_path):
    datasets = {}
    for name, ivae in (("a", 0.60), ("b", 0.50)):
        table = runs({"iVAE": ivae, "VAE": 0.50, "VAE-narrow": 0.40})
        sweep = runs({"iVAE": ivae, "VAE": 0.50, "irecon=1": 0.55})
        table.to_csv(tmp_path / f"{name}_t.tsv", sep="\t", index=False)
        sweep.to_csv(tmp_path / f"{name}_s.tsv", sep="\t", index=False)
        datasets[name] = {"table": tmp_path / f"{name}_t.tsv", "sweep": tmp_path / f"{name}_s.tsv"}
    text = evidence_markdown(datasets, "img", "irecon 5")
    tally = {row[0]: row[1:] for row in re.findall(r"^\| (\S+) \| (\d) \| (\d) \| (\d) \| (\S+) \|$", text, flags=re.M)}
    assert tally["iVAE"][:3] == ("1", "1", "0")  # better on a, no difference on b
    assert tally["VAE-narrow"][:3] == ("0", "0", "2") and tally["irecon=1"][:3] == ("2", "0", "0")
    # the mean paired difference over datasets: about (+0.10 + 0) / 2, -0.10, +0.05
    means = {m: float(v[3]) for m, v in tally.items()}
    assert means["iVAE"] == pytest.approx(0.05, abs=0.01) and means["VAE-narrow"] == pytest.approx(-0.10, abs=0.01)
    assert "![a: sweep](img/evidence_a_sweep.png)" in text


def test_readme_figures_are_the_rules():
    """common.smk's README_FIGURES (the rule's inputs) lists the figures readme.py copies."""
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    listed = re.search(r"README_FIGURES = \[(.*?)\]", text, flags=re.S).group(1)
    assert re.findall(r'"(\w+)"', listed) == FIGURES


def test_convergence_sentence_counts_early_stops(tmp_path):
    from metrics import training_end
    from readme import convergence_sentence

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
