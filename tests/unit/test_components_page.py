"""components_page.py: the per-seed tables over datasets, the tests against the null and
the page written from them."""

import numpy as np
import pandas as pd

from components import RANDOM


def write_dataset(folder, enriched: dict, seeds=6, k=4, seed=0):
    """A dataset's components outputs: models with a given chance of an enriched component."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    stab, enr, summary = [], [], []
    for model, p in enriched.items():
        for s in range(seeds):
            for c in range(k):
                q = 0.001 if rng.random() < p else 0.5
                enr.append({"model": model, "seed": s, "component": c, "tail": "+", "gene_set": "H", "overlap": 3,
                            "set_size": 40, "p": q / 10, "q": q})
            for t in range(s + 1, seeds):
                stab.append({"model": model, "seed_a": s, "seed_b": t, "median_matched_r": 0.9 if model == "PCA"
                             else rng.uniform(0.3, 0.6), "mean_matched_r": 0.5})
        summary.append({"model": model, "components": k})
    for name, rows in (("stability", stab), ("enrichment", enr), ("summary", summary)):
        pd.DataFrame(rows).to_csv(folder / f"{name}.tsv", sep="\t", index=False)
    return folder


def test_tables_tests_and_page(tmp_path):
    from components_page import collect, null_tests, page, write_all

    a = write_dataset(tmp_path / "a", {"iVAE z": 0.95, "PCA": 0.5, RANDOM: 0.2})
    b = write_dataset(tmp_path / "b", {"iVAE z": 0.2, "PCA": 0.2, RANDOM: 0.2}, seed=1)
    stab, enr = collect(["a", "b"], [a / "stability.tsv", b / "stability.tsv"],
                        [a / "enrichment.tsv", b / "enrichment.tsv"], [a / "summary.tsv", b / "summary.tsv"])
    assert len(enr) == 2 * 3 * 6 and enr["enriched_fraction"].between(0, 1).all()
    assert len(stab) == 2 * 3 * 15
    tests = null_tests(enr)
    verdicts = tests.set_index(["dataset", "model"])["verdict"]
    assert verdicts[("a", "iVAE z")] == "better" and verdicts[("b", "iVAE z")] == "inconclusive"
    assert RANDOM not in set(tests["model"])
    text = page(stab, enr, tests)
    assert "## a" in text and "## b" in text
    assert "Components enriched more often than the random-projection null (Holm, 5 %): iVAE z" in text
    assert "least stable" in text and "besides PCA" in text
    write_all(stab, enr, tmp_path / "docs")
    assert (tmp_path / "docs" / "components.md").read_text() == text
    assert len(pd.read_csv(tmp_path / "docs" / "components" / "tests.tsv", sep="\t")) == len(tests)


def test_a_dataset_without_gene_names_says_so(tmp_path):
    from components_page import collect, null_tests, page

    a = write_dataset(tmp_path / "a", {"iVAE z": 0.5, RANDOM: 0.2})
    pd.DataFrame(columns=["model", "seed", "component", "tail", "gene_set", "overlap", "set_size", "p", "q"]).to_csv(
        a / "enrichment.tsv", sep="\t", index=False)
    stab, enr = collect(["a"], [a / "stability.tsv"], [a / "enrichment.tsv"], [a / "summary.tsv"])
    assert enr.empty
    assert "No enrichment: the dataset has no gene names." in page(stab, enr, null_tests(enr))
