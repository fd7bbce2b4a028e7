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
    assert "![a: components](components/a_components.png)" in text
    assert "Genes matched to the Hallmark sets by symbol." in text
    # across datasets: a interval over the two datasets, the iVAE z against the others
    assert "## Across datasets" in text and "| iVAE z | 2 |" in text
    assert "Against the iVAE's z, enriched more often: none" in text
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
    text = page(stab, enr, null_tests(enr))
    assert "No enrichment: the dataset has no gene names." in text
    assert "6 seeds. The genes have no names: no enrichment." in text


def test_pooled_over_datasets_against_verdicts_pooled(tmp_path):
    """The across-datasets numbers are verdicts.pooled's, and the words follow the intervals."""
    from components_page import collect, in_words, pooled_table
    from verdicts import pooled

    folders = [write_dataset(tmp_path / name, {"iVAE z": 0.9, "NMF": 0.5, RANDOM: 0.1}, seed=i)
               for i, name in enumerate("abc")]
    stab, enr = collect(list("abc"), [f / "stability.tsv" for f in folders], [f / "enrichment.tsv" for f in folders],
                        [f / "summary.tsv" for f in folders])
    pool = pooled_table(stab, enr).set_index("model")
    expected = pooled(enr.rename(columns={"model": "method"}), "NMF", "iVAE z", "enriched_fraction")
    assert pool.loc["NMF", "minus_ivae"] == expected["mean"] and pool.loc["NMF", "minus_ivae_low"] == expected["low"]
    assert pool.loc["iVAE z", "minus_null_low"] > 0 and pool.loc["NMF", "minus_ivae_high"] < 0
    assert pool.loc["iVAE z", "datasets"] == 3 and np.isnan(pool.loc["iVAE z"].get("minus_ivae", np.nan))
    words = in_words(pool.reset_index())[0]
    assert "interval above 0): iVAE z, NMF" in words and "the random projection, the floor" in words
    assert "Against the iVAE's z, enriched more often: none; less often: NMF" in words


def test_fewer_seeds_of_a_model_are_named(tmp_path):
    """scVI and LDVAE may run at fewer seeds (evaluation.standard_seeds): the page says so."""
    from components_page import collect, null_tests, page

    a = write_dataset(tmp_path / "a", {"iVAE z": 0.5, "LDVAE z": 0.5, RANDOM: 0.2})
    enr = pd.read_csv(a / "enrichment.tsv", sep="\t")
    enr[~((enr["model"] == "LDVAE z") & (enr["seed"] >= 3))].to_csv(a / "enrichment.tsv", sep="\t", index=False)
    pairs = pd.read_csv(a / "stability.tsv", sep="\t")
    pairs[~((pairs["model"] == "LDVAE z") & (pairs["seed_b"] >= 3))].to_csv(a / "stability.tsv", sep="\t", index=False)
    stab, enr = collect(["a"], [a / "stability.tsv"], [a / "enrichment.tsv"], [a / "summary.tsv"])
    assert "6 seeds (LDVAE z: 3). Genes matched" in page(stab, enr, null_tests(enr))
