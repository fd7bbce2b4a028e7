import numpy as np
import pandas as pd
import pytest
from scipy import stats

from correlation import correlation_matrix, mean_abs_offdiagonal
from correlation_models import COMPARISONS, MARGIN, TEST_COLUMNS, correlation_table, paired_tests


def _table(rng, n_seeds=6, shift=0.2):
    rows = []
    for seed in range(n_seeds):
        base = rng.uniform(0.1, 0.2)
        for method, z in [("iVAE", base + shift), ("VAE", base + rng.normal(0, 0.01)),
                          ("VAE-narrow", base + 0.01 * seed % 3), ("VAE-beta-matched", base + shift / 2),
                          ("iVAE-stop-gradient", base + shift + rng.normal(0, 0.005))]:
            rows.append({"method": method, "seed": seed, "z": z, "ld": 0.5 + rng.normal(0, 0.02)})
    return pd.DataFrame(rows)


def test_paired_tests_match_scipy_and_holm():
    table = _table(np.random.default_rng(0))
    tests = paired_tests(table, "d")
    assert list(tests.columns) == TEST_COLUMNS
    assert [(r.reference, r.metric) for r in tests.itertuples()] == [(b, m) for _, b, m in COMPARISONS]
    wide = table.pivot(index="seed", columns="method")
    for row in tests.itertuples():
        a, b = wide[row.metric]["iVAE"], wide[row.metric][row.reference]
        assert row.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
        interval = stats.t.interval(0.95, len(a) - 1, loc=(a - b).mean(), scale=stats.sem(a - b))
        assert (row.low, row.high) == pytest.approx(interval)
        assert row.margin == MARGIN
    ordered = np.sort(tests["p"].to_numpy())
    expected = np.minimum(np.maximum.accumulate(ordered * (len(ordered) - np.arange(len(ordered)))), 1)
    assert np.sort(tests["p_holm"].to_numpy()) == pytest.approx(expected)
    verdicts = tests.set_index(["reference", "metric"])["verdict"]
    assert verdicts[("VAE", "z")] == "higher"  # +0.2 on every seed
    assert verdicts[("iVAE-stop-gradient", "z")] in {"equivalent", "inconclusive"}
    assert set(verdicts) <= {"higher", "lower", "equivalent", "inconclusive"}


def test_lower_one_seed_and_missing_controls():
    table = _table(np.random.default_rng(1), shift=-0.1)
    assert paired_tests(table).set_index(["reference", "metric"]).loc[("VAE", "z"), "verdict"] == "lower"
    one = paired_tests(table[table["seed"] == 0])
    assert (one["n"] == 1).all() and one["low"].isna().all() and (one["verdict"] == "inconclusive").all()
    only_vae = paired_tests(table[table["method"].isin(["iVAE", "VAE"])])
    assert list(zip(only_vae["reference"], only_vae["metric"])) == [("VAE", "z"), ("VAE", "ld")]
    assert list(paired_tests(table[table["method"] == "iVAE"]).columns) == TEST_COLUMNS


def test_correlation_table_reads_the_embeddings(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(2)
    z = rng.normal(size=(200, 6))
    z[:, 1] += z[:, 0]
    ld = z @ rng.normal(size=(6, 6))
    adata = ad.AnnData(X=np.zeros((200, 1), np.float32), obsm={"X_ivae": z, "X_ivae_ld": ld})
    adata.write_h5ad(tmp_path / "e.h5ad")
    table = correlation_table({("iVAE", 3): tmp_path / "e.h5ad"})
    assert table.loc[0, ["method", "seed"]].tolist() == ["iVAE", 3]
    assert table.loc[0, "z"] == pytest.approx(mean_abs_offdiagonal(correlation_matrix(z)))
    assert table.loc[0, "ld"] == pytest.approx(mean_abs_offdiagonal(correlation_matrix(ld)))
