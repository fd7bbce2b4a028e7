"""scib.py: the scib-metrics wrapper against the library's own functions, and Harmony."""

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # JAX compiles the metrics: minutes (the extended tier, conftest.EXTENDED)


@pytest.fixture(scope="module")
def data(lognorm):
    """pbmc68k's PCA with two batches: the cells' halves, one shifted along two components."""
    from sklearn.decomposition import PCA

    X, obs = lognorm
    pca = PCA(n_components=8, random_state=0).fit_transform(X.toarray())
    batch = np.where(np.arange(len(obs)) % 2 == 0, "a", "b")
    shifted = pca.copy()
    shifted[batch == "b", :2] += 3.0
    return pca, shifted, batch, obs["bulk_labels"].astype(str).to_numpy()


def test_scores_are_the_librarys(data):
    import scib_metrics

    from scib import scib_scores

    pca, shifted, batch, labels = data
    table = scib_scores({"clean": pca, "shifted": shifted}, batch, labels, pre_integrated="shifted").set_index(
        "embedding")
    assert {"BRAS", "iLISI", "KBET", "Graph connectivity", "PCR comparison", "Isolated labels", "KMeans NMI",
            "KMeans ARI", "Silhouette label", "cLISI", "Batch correction", "Bio conservation", "Total"} <= set(
        table.columns)
    for name, X in (("clean", pca), ("shifted", shifted)):
        assert table.loc[name, "Silhouette label"] == pytest.approx(scib_metrics.silhouette_label(X, labels), abs=1e-5)
    assert table.loc["clean", "iLISI"] > table.loc["shifted", "iLISI"]  # the batch shift is seen
    assert table.loc["clean", "BRAS"] > table.loc["shifted", "BRAS"]
    expected_total = 0.4 * table["Batch correction"] + 0.6 * table["Bio conservation"]
    np.testing.assert_allclose(table["Total"], expected_total, rtol=1e-6)


def test_harmony_corrects_the_shift(data):
    from scib import harmony, summarise

    _, shifted, batch, _ = data
    corrected = harmony(shifted, batch, seed=0)
    assert corrected.shape == shifted.shape
    gap = lambda e: np.linalg.norm(e[batch == "a"].mean(0) - e[batch == "b"].mean(0))  # noqa: E731
    assert gap(corrected) < 0.3 * gap(shifted)
    np.testing.assert_array_equal(corrected, harmony(shifted, batch, seed=0))  # seeded
    table = pd.DataFrame({"embedding": ["x", "x", "y"], "seed": [0, 1, 0], "Total": [0.4, 0.6, 0.5]})
    summary = summarise(table).set_index("embedding")
    assert summary.loc["x", "Total"] == pytest.approx(0.5) and summary.loc["x", "seeds"] == 2
    assert summary.loc["x", "Total_sd"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
