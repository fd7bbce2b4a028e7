import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from rule_io import InputError
from components import (FDR, enrichment, gene_namespace, matched_abs_r, random_projection, read_gmt, stability,
                        summarise)


def test_matching_finds_permuted_and_flipped_components():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    b = -a[:, [3, 0, 5, 1, 4, 2]] + rng.normal(0, 1e-6, size=(500, 6))
    np.testing.assert_allclose(matched_abs_r(a, b), 1.0, atol=1e-9)
    noise = matched_abs_r(a, rng.normal(size=(500, 6)))
    assert noise.max() < 0.25
    table = stability({0: a, 1: b, 2: rng.normal(size=(500, 6))})
    assert list(zip(table["seed_a"], table["seed_b"])) == [(0, 1), (0, 2), (1, 2)]
    assert table.loc[0, "median_matched_r"] == pytest.approx(1.0) and table.loc[1, "median_matched_r"] < 0.25


def test_enrichment_against_the_hypergeometric_by_hand():
    genes = np.array([f"G{i}" for i in range(100)])
    corr = np.zeros((2, 100))
    corr[0, :10] = np.linspace(1, 0.5, 10)   # component 0's top genes: G0..G9
    corr[0, 90:] = -np.linspace(1, 0.5, 10)  # its negative tail: G90..G99
    corr[1] = np.random.default_rng(1).normal(size=100) * 0.1
    sets = {"A": {f"G{i}" for i in range(8)} | {"NOT_MEASURED"}, "B": {f"G{i}" for i in range(90, 96)},
            "tiny": {"G0", "G1"}}
    table = enrichment(corr, genes, sets, top=10)
    assert set(table["gene_set"]) <= {"A", "B"}  # "tiny" has fewer than 5 measured genes
    row = table[(table["component"] == 0) & (table["tail"] == "+")].iloc[0]
    assert row["gene_set"] == "A" and row["overlap"] == 8 and row["set_size"] == 8
    assert row["p"] == pytest.approx(hypergeom.sf(7, 100, 8, 10))
    neg = table[(table["component"] == 0) & (table["tail"] == "-")].iloc[0]
    assert neg["gene_set"] == "B" and neg["overlap"] == 6 and neg["q"] < FDR
    assert (table["q"] >= table["p"]).all()
    assert enrichment(corr, np.array([""] * 100), sets).empty


def test_gene_names_and_gmt(tmp_path):
    human, how = gene_namespace(["CD3E", "MS4A1", "RP11-465B22.3"])
    assert how == "as is" and list(human) == ["CD3E", "MS4A1", "RP11-465B22.3"]
    mouse, how = gene_namespace(["Cd3e", "Ms4a1", "mt-Co1"])
    assert how == "upper-cased mouse symbols" and list(mouse) == ["CD3E", "MS4A1", "MT-CO1"]
    assert gene_namespace([f"gene_{i}" for i in range(5)])[1] == "none"
    (tmp_path / "s.gmt").write_text("SET_A\thttp://x\tCD3E\tMS4A1\nSET_B\tdesc\tLYZ\n")
    assert read_gmt(tmp_path / "s.gmt") == {"SET_A": {"CD3E", "MS4A1"}, "SET_B": {"LYZ"}}


def test_summary_and_null():
    x = np.random.default_rng(2).normal(size=(50, 20))
    p1, p2 = random_projection(x, 4, 0), random_projection(x, 4, 0)
    assert p1.shape == (50, 4) and np.array_equal(p1, p2) and not np.array_equal(p1, random_projection(x, 4, 1))
    stab = pd.DataFrame({"model": ["m", "m"], "seed_a": [0, 0], "seed_b": [1, 2], "median_matched_r": [0.5, 0.7],
                         "mean_matched_r": [0.5, 0.7]})
    enr = pd.DataFrame({"model": "m", "seed": [0, 0, 0, 1, 1, 1], "component": [0, 0, 1, 0, 1, 1],
                        "tail": ["+", "-", "+", "+", "+", "-"], "q": [0.01, 0.5, 0.3, 0.2, 0.04, 0.9]})
    row = summarise(stab, enr, {"m": 2}).iloc[0]
    assert row["stability"] == pytest.approx(0.6) and row["seed_pairs"] == 2
    assert row["enriched_fraction"] == pytest.approx(0.5) and row["enriched_fraction_sd"] == 0  # 1/2 at both seeds


def test_loadings_matrix_in_the_datas_gene_order(tmp_path):
    from components import loadings_matrix

    long = pd.DataFrame({"component": [0, 0, 0, 1, 1, 1], "gene": ["B", "A", "0002", "B", "A", "0002"],
                         "loading": [0.5, -1.0, 2.0, 0.1, 0.2, 0.3], "rank": [3, 2, 1, 3, 2, 1]})
    long.to_csv(tmp_path / "loadings.tsv", sep="\t", index=False)
    np.testing.assert_array_equal(loadings_matrix(tmp_path / "loadings.tsv", ["0002", "A", "B"]),
                                  [[2.0, 0.3], [-1.0, 0.2], [0.5, 0.1]])
    with pytest.raises(InputError, match="no loading for 1 of the data's genes"):
        loadings_matrix(tmp_path / "loadings.tsv", ["A", "B", "C"])
