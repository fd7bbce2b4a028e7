"""verdicts.py: paired intervals, Holm, TOST and the four verdicts, against scipy and
statsmodels on known inputs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from verdicts import compare_methods, holm, paired_difference, pooled, tost_p, verdict


def test_paired_difference_is_scipys_paired_t():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.05, 10)
    b = a - 0.03 + rng.normal(0, 0.02, 10)
    diff = paired_difference(a, b, margin=0.02)
    ref = stats.ttest_rel(a, b)
    assert diff.p == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert (diff.low, diff.high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert diff.mean == pytest.approx(np.mean(a - b)) and diff.n == 10


def test_tost_is_two_one_sided_tests():
    """TOST p = the larger of scipy's one-sided paired tests against -margin and +margin."""
    rng = np.random.default_rng(1)
    d = rng.normal(0.004, 0.01, 10)
    margin = 0.02
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert tost_p(d.mean(), se, len(d) - 1, margin) == pytest.approx(max(lower, upper), rel=1e-10)
    assert paired_difference(d, np.zeros(10), margin).p_equivalent == pytest.approx(max(lower, upper), rel=1e-10)


def test_holm_by_hand_and_against_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(2)
    many = rng.uniform(0, 0.2, 25)
    np.testing.assert_allclose(holm(many), multipletests(many, method="holm")[1], rtol=1e-12)
    with_nan = holm([0.01, np.nan, 0.02])
    assert np.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02) and with_nan[2] == pytest.approx(0.02)


def test_verdicts():
    assert verdict(0.05, 0.001, 1.0, direction=1) == "better"
    assert verdict(0.05, 0.001, 1.0, direction=-1) == "worse"  # e.g. a higher NLL
    assert verdict(-0.05, 0.001, 1.0, direction=1) == "worse"
    assert verdict(0.001, 0.8, 0.01, direction=1) == "equivalent"
    assert verdict(0.001, 0.8, 0.2, direction=1) == "inconclusive"
    assert verdict(float("nan"), float("nan"), float("nan"), direction=1) == "inconclusive"


def table_of(effects: dict, sd=0.01, seeds=10, datasets=("a", "b")):
    rng = np.random.default_rng(3)
    rows = []
    for dataset in datasets:
        for seed in range(seeds):
            base = rng.normal(0.5, 0.05)  # the seed's shared part: pairing removes it
            for method, effect in effects.items():
                rows.append({"dataset": dataset, "method": method, "seed": seed,
                             "ARI": base + effect + rng.normal(0, sd)})
    return pd.DataFrame(rows)


def test_compare_methods_family():
    table = table_of({"ref": 0.0, "up": 0.1, "same": 0.0, "noisy": 0.0}, sd=0.004)
    noisy = table["method"] == "noisy"
    table.loc[noisy, "ARI"] += np.random.default_rng(4).normal(0, 0.2, noisy.sum())
    out = compare_methods(table, [("up", "ref"), ("same", "ref"), ("noisy", "ref")], ["ARI"])
    calls = out.set_index(["dataset", "method"])["verdict"]
    assert set(calls.xs("up", level="method")) == {"better"}
    assert set(calls.xs("same", level="method")) == {"equivalent"}
    assert set(calls.xs("noisy", level="method")) == {"inconclusive"}
    np.testing.assert_allclose(out["p_holm"], holm(out["p"]))  # one family: every row
    assert (out["p_holm"] >= out["p"]).all()


def test_pooled_over_datasets():
    table = table_of({"ref": 0.0, "up": 0.05}, datasets=("a", "b", "c"))
    result = pooled(table, "up", "ref", "ARI")
    assert result["datasets"] == 3 and result["pairs"] == 30
    assert result["low"] < 0.05 < result["high"] and result["p_signed_rank"] < 1e-3
    every = []
    for _, part in table.groupby("dataset"):
        every += list(part[part.method == "up"]["ARI"].to_numpy() - part[part.method == "ref"]["ARI"].to_numpy())
    assert result["p_signed_rank"] == pytest.approx(stats.wilcoxon(every).pvalue)
