"""metrics.py: every metric against a hand-computed case, the baselines, the reference
labels, the table and the Snakemake entry on small real data."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from metrics import (
    METRIC_COLUMNS,
    baseline_embeddings,
    clustering_metrics,
    correlation_score,
    main,
    metrics_table,
    read_reference,
    reference_labels,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """BLAS/OpenMP on one thread: KMeans and the decompositions spin-wait for minutes when other
    work shares the cores, and these matrices are far too small to gain from threads."""
    import sklearn.cluster  # noqa: F401 - load the OpenMP runtime first, or the limit misses it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def lognorm(pbmc68k_counts):
    """pbmc68k log-normalised (CSR, cells x 765 genes) and its obs."""
    X = sp.csr_matrix(pbmc68k_counts.X, dtype=np.float32)
    X = sp.diags(1e4 / np.asarray(X.sum(1)).ravel()) @ X
    X.data = np.log1p(X.data)
    return sp.csr_matrix(X, dtype=np.float32), pbmc68k_counts.obs.copy()


# --- correlation score -------------------------------------------------------------------

def test_correlation_score_hand_computed():
    # x centred: (-1.5, -0.5, 0.5, 1.5), |x|^2 = 5; y = -x; z centred: (-.5, -.5, .5, .5), |z|^2 = 1.
    # r(x, y) = -1; r(x, z) = (0.75 + 0.25 + 0.25 + 0.75) / sqrt(5 * 1) = 2/sqrt(5); r(y, z) = -2/sqrt(5).
    # Row sums of |r| off the diagonal: x: 1 + 2/sqrt5, y: 1 + 2/sqrt5, z: 4/sqrt5; mean over 3.
    x = np.array([1.0, 2, 3, 4])
    latent = np.column_stack([x, -x, [0.0, 0, 1, 1]])
    expected = (2 + 8 / math.sqrt(5)) / 3
    assert correlation_score(latent) == pytest.approx(expected, rel=1e-12)


def test_correlation_score_range_ends():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 1))
    collinear = np.hstack([z, -2 * z, 3 * z + 1, z])  # every |r| = 1: score d - 1 = 3
    assert correlation_score(collinear) == pytest.approx(3.0)
    w = rng.normal(size=(50, 4))  # general case: (sum of |r| off the diagonal) / d, via numpy
    corr = np.abs(np.corrcoef(w.T))
    assert correlation_score(w) == pytest.approx((corr.sum() - 4) / 4, rel=1e-12)
    assert correlation_score(z) == 0.0


def test_correlation_score_constant_column_counts_as_zero():
    # r(x, -x) = -1; the constant column's r is undefined (NaN) and counts as 0: (1 + 1 + 0) / 3.
    x = np.array([1.0, 2, 3, 4])
    latent = np.column_stack([x, -x, np.full(4, 7.0)])
    with np.errstate(all="raise"):
        assert correlation_score(latent) == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad", [np.ones(5), np.ones((0, 3)), np.array([[1.0, np.nan], [2, 3]])])
def test_correlation_score_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        correlation_score(bad)


# --- clustering metrics ------------------------------------------------------------------

def test_ari_nmi_hand_computed_two_by_two():
    # Points 0, 1, 2 | 10, 11, 12: KMeans (k = 2) splits them into {0,1,2} and {10,11,12}.
    # Reference: a a b | b b b. Contingency (KMeans rows, reference columns): [[2, 1], [0, 3]].
    emb = np.array([0.0, 1, 2, 10, 11, 12])[:, None]
    ref = np.array(["a", "a", "b", "b", "b", "b"])
    m = clustering_metrics(emb, ref)
    c2 = lambda k: k * (k - 1) / 2  # noqa: E731
    index = c2(2) + c2(1) + c2(0) + c2(3)  # 4
    rows = c2(3) + c2(3)  # 6
    cols = c2(2) + c2(4)  # 7
    expected_index = rows * cols / c2(6)  # 42 / 15 = 2.8
    ari = (index - expected_index) / ((rows + cols) / 2 - expected_index)  # 1.2 / 3.7
    assert ari == pytest.approx(12 / 37)
    assert m["ARI"] == pytest.approx(ari, rel=1e-12)
    # NMI: I(K; R) / mean(H(K), H(R)), natural logs.
    h_k = math.log(2)
    h_r = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    mi = 2 / 6 * math.log((2 / 6) / (3 / 6 * 2 / 6)) + 1 / 6 * math.log((1 / 6) / (3 / 6 * 4 / 6)) \
        + 3 / 6 * math.log((3 / 6) / (3 / 6 * 4 / 6))
    assert m["NMI"] == pytest.approx(mi / ((h_k + h_r) / 2), rel=1e-12)


def test_silhouette_four_points_on_a_line():
    # 0, 1 | 4, 5. Each a = 1. b: point 0 -> (4 + 5)/2 = 4.5, point 1 -> (3 + 4)/2 = 3.5, symmetric.
    # s = (b - a)/b: 7/9, 5/7, 5/7, 7/9; mean = 47/63.
    emb = np.array([[0.0], [1.0], [4.0], [5.0]])
    m = clustering_metrics(emb, ["a", "a", "b", "b"])
    assert m["ASW"] == pytest.approx(47 / 63, rel=1e-12)
    # Same grouping in KMeans and the reference: perfect agreement.
    assert m["ARI"] == pytest.approx(1.0) and m["NMI"] == pytest.approx(1.0)
    # CH: centroids 0.5, 4.5, mean 2.5: B = 2*2^2 + 2*2^2 = 16, W = 4 * 0.25 = 1;
    # CH = (16/1) / (1/2) = 32. DB: s = 0.5 each, centroid distance 4: (0.5 + 0.5)/4.
    assert m["CH"] == pytest.approx(32.0) and m["DB"] == pytest.approx(0.25)


def test_ch_db_two_small_clusters():
    # A = (0,0), (2,0): centroid (1,0), s_A = 1, within SS 2.
    # B = (0,4), (2,4), (1,7): centroid (1,5), distances sqrt2, sqrt2, 2: s_B = (2 sqrt2 + 2)/3,
    # within SS 2 + 2 + 4 = 8. Overall mean (1, 3): B_SS = 2 * 3^2 + 3 * 2^2 = 30; W = 10.
    # CH = (30 / (2 - 1)) / (10 / (5 - 2)) = 9. DB = (s_A + s_B) / |c_A - c_B| = (s_A + s_B) / 5.
    emb = np.array([[0.0, 0], [2, 0], [0, 4], [2, 4], [1, 7]])
    ref = np.array([0, 0, 1, 1, 1])
    m = clustering_metrics(emb, ref)
    assert m["CH"] == pytest.approx(9.0, rel=1e-12)
    assert m["DB"] == pytest.approx((1 + (2 * math.sqrt(2) + 2) / 3) / 5, rel=1e-12)
    # KMeans (k = 2) finds A | B (W = 10; the next best split, B minus (1,7), has W = 20).
    assert m["ARI"] == pytest.approx(1.0)
    # Silhouette from its definition, s = (b - a) / max(a, b); e.g. (0,0): a = 2, b = mean(4, sqrt20, sqrt50).
    d = lambda p, q: math.dist(p, q)  # noqa: E731
    s = []
    for i, p in enumerate(emb):
        own = [d(p, q) for j, q in enumerate(emb) if ref[j] == ref[i] and j != i]
        other = [d(p, q) for j, q in enumerate(emb) if ref[j] != ref[i]]
        a, b = np.mean(own), np.mean(other)
        s.append((b - a) / max(a, b))
    assert m["ASW"] == pytest.approx(np.mean(s), rel=1e-12)


def test_silhouette_subsample_is_seeded():
    rng = np.random.default_rng(0)
    emb = np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(1.5, 1, (300, 3))])
    ref = np.repeat(["a", "b"], 300)
    full = clustering_metrics(emb, ref)["ASW"]
    a = clustering_metrics(emb, ref, seed=1, max_cells_silhouette=60)
    b = clustering_metrics(emb, ref, seed=1, max_cells_silhouette=60)
    c = clustering_metrics(emb, ref, seed=2, max_cells_silhouette=60)
    assert a == b
    assert a["ASW"] != full and a["ASW"] != c["ASW"]
    assert a["ASW"] == pytest.approx(full, abs=0.1)
    # The other metrics use every cell.
    assert a["CH"] == pytest.approx(clustering_metrics(emb, ref)["CH"])
    assert clustering_metrics(emb, ref, max_cells_silhouette=600)["ASW"] == full


@pytest.mark.parametrize("emb, ref, match", [
    (np.zeros((4, 2)), ["a", "b", "a"], "one label per cell"),
    (np.arange(8.0).reshape(4, 2), ["a"] * 4, "at least 2"),
    (np.arange(8.0).reshape(4, 2), ["a", "b", "c", "d"], "fewer groups than cells"),
    (np.array([[0.0, 1], [np.inf, 2], [3, 4]]), ["a", "b", "b"], "NaN or infinite"),
    (np.array([[0.0, 1], [np.nan, 2], [3, 4]]), ["a", "b", "b"], "NaN or infinite"),
    (np.arange(4.0), ["a", "b", "a", "b"], "2-D"),
    (np.arange(8.0).reshape(4, 2), np.array(["a", None, "b", "b"], dtype=object), "missing"),
])
def test_clustering_metrics_rejects_bad_input(emb, ref, match):
    with pytest.raises(ValueError, match=match):
        clustering_metrics(emb, ref)


# --- reference labels --------------------------------------------------------------------

def test_reference_labels_from_obs(lognorm):
    X, obs = lognorm
    labels, kind = reference_labels(obs, X, label_key="bulk_labels")
    assert kind == "labels"
    assert labels.dtype.kind in "UO" and isinstance(labels[0], str)
    assert list(labels) == list(obs["bulk_labels"].astype(str))


def test_reference_labels_falls_back_to_leiden(lognorm):
    X, obs = lognorm
    labels, kind = reference_labels(obs, X, label_key=None, seed=0)
    assert kind == "clusters"
    assert len(labels) == X.shape[0] and isinstance(labels[0], str)
    assert 3 <= len(np.unique(labels)) <= 30
    # Clusters of these PBMCs agree with the cell types far beyond chance.
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(obs["bulk_labels"], labels) > 0.2
    again, _ = reference_labels(obs, X, label_key=None, seed=0)
    assert list(again) == list(labels)
    coarse, _ = reference_labels(obs, X, label_key=None, seed=0, resolution=0.2)
    assert len(np.unique(coarse)) < len(np.unique(labels))


def test_reference_labels_errors(lognorm):
    X, obs = lognorm
    with pytest.raises(ValueError, match="not an obs column"):
        reference_labels(obs, X, label_key="cell_type")
    holes = obs.assign(bulk_labels=obs["bulk_labels"].astype(object).where(np.arange(len(obs)) % 7 != 0))
    with pytest.raises(ValueError, match="missing labels"):
        reference_labels(holes, X, label_key="bulk_labels")


# --- baselines -----------------------------------------------------------------------------

def test_baseline_embeddings_shapes_finite_reproducible(lognorm):
    X, _ = lognorm
    X = X[:300, :200]
    first = baseline_embeddings(X, 5, seed=0)
    assert list(first) == ["PCA", "ICA", "NMF", "FA"]
    for name, emb in first.items():
        assert emb.shape == (300, 5), name
        assert np.isfinite(emb).all(), name
        assert emb.std(0).min() > 0, name  # no dead component
    assert (first["NMF"] >= 0).all()
    # PCA scores are uncorrelated; ICA components are unit-variance.
    assert correlation_score(first["PCA"]) < 1e-4
    np.testing.assert_allclose(first["ICA"].std(0), 1.0, rtol=1e-3)
    again = baseline_embeddings(X.toarray(), 5, seed=0)  # dense input, same seed: same result
    for name in first:
        np.testing.assert_allclose(again[name], first[name], rtol=1e-5, atol=1e-6, err_msg=name)
    other = baseline_embeddings(X, 5, seed=1)
    assert not np.allclose(other["ICA"], first["ICA"])  # the seed is used


def test_baseline_embeddings_errors(lognorm):
    X, _ = lognorm
    X = X[:50, :20].toarray()
    with pytest.raises(ValueError, match="n_components"):
        baseline_embeddings(X, 21)
    with pytest.raises(ValueError, match="n_components"):
        baseline_embeddings(X, 0)
    with pytest.raises(ValueError, match="non-negative"):
        baseline_embeddings(X - 1, 3)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        baseline_embeddings(X, 3)


# --- table and entry -------------------------------------------------------------------

def test_metrics_table_columns_and_order(lognorm):
    X, obs = lognorm
    ref = obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    embs = baseline_embeddings(X, 8, seed=0)
    embs = {"noise": rng.normal(size=(X.shape[0], 8)), **embs}
    table = metrics_table(embs, ref, "labels")
    assert list(table.columns) == METRIC_COLUMNS == [
        "method", "NMI", "ARI", "ASW", "CH", "DB", "corr_score", "reference"]
    assert list(table["method"]) == ["noise", "PCA", "ICA", "NMF", "FA"]
    assert (table["reference"] == "labels").all()
    row = table.set_index("method")
    assert row.loc["noise", "ARI"] < 0.05 < 0.3 < row.loc["PCA", "ARI"]  # PCA separates the cell types
    assert row.loc["PCA", "CH"] > row.loc["noise", "CH"] and row.loc["PCA", "DB"] < row.loc["noise", "DB"]
    assert row.loc["PCA", "ASW"] > row.loc["noise", "ASW"]
    assert row.loc["noise", "corr_score"] == pytest.approx(correlation_score(embs["noise"]))
    with pytest.raises(ValueError, match="reference_kind"):
        metrics_table(embs, ref, "cell types")


def _fake_snakemake(tmp_path, data, ivae, vae, label_key):
    """A stand-in for Snakemake's object; cell_labels.tsv is made by the real function."""
    import anndata as ad

    from cell_labels import cell_labels

    labels = tmp_path / f"cell_labels_{label_key}.tsv"
    cell_labels(ad.read_h5ad(data), label_key=label_key, markers=None).to_csv(labels, sep="\t")
    return SimpleNamespace(
        input=SimpleNamespace(data=str(data), ivae=str(ivae), vae=str(vae), labels=str(labels)),
        output=SimpleNamespace(tsv=str(tmp_path / f"metrics_{label_key}.tsv")),
        params=SimpleNamespace(seed=0),
        log=[str(tmp_path / f"metrics_{label_key}.log")],
        threads=1,
    )


def test_main_writes_table(lognorm, tmp_path):
    import anndata as ad

    X, obs = lognorm
    obs = obs[["bulk_labels"]].copy()
    obs["bulk_labels"] = obs["bulk_labels"].astype(object)
    obs.iloc[:10, 0] = None  # unlabelled cells are left out
    data = tmp_path / "preprocessed.h5ad"
    ad.AnnData(X=X, obs=obs).write_h5ad(data)
    rng = np.random.default_rng(0)
    paths = {}
    for name, latent in (("ivae", baseline_embeddings(X, 6)["PCA"]), ("vae", rng.normal(size=(X.shape[0], 6)))):
        emb = ad.AnnData(obs=obs)
        emb.obsm["X_ivae"] = latent.astype(np.float32)
        paths[name] = tmp_path / f"{name}.h5ad"
        emb.write_h5ad(paths[name])

    snake = _fake_snakemake(tmp_path, data, paths["ivae"], paths["vae"], "bulk_labels")
    main(snake)
    table = pd.read_csv(snake.output.tsv, sep="\t")
    assert list(table.columns) == METRIC_COLUMNS
    assert list(table["method"]) == ["iVAE", "VAE", "PCA", "ICA", "NMF", "FA"]
    assert (table["reference"] == "labels").all()
    assert np.isfinite(table[["NMI", "ARI", "ASW", "CH", "DB", "corr_score"]].to_numpy()).all()
    row = table.set_index("method")
    assert row.loc["iVAE", "ARI"] > 0.3 > row.loc["VAE", "ARI"]  # the rows are the right inputs
    log_text = open(snake.log[0]).read()
    assert "10 of 700 cells have no label" in log_text and "cell-type labels, 10 groups over 690 cells" in log_text
    assert not list(tmp_path.glob(".*tmp*"))

    snake = _fake_snakemake(tmp_path, data, paths["ivae"], paths["vae"], None)
    main(snake)
    table = pd.read_csv(snake.output.tsv, sep="\t")
    assert (table["reference"] == "clusters").all() and len(table) == 6
    assert "Leiden clusters" in open(snake.log[0]).read()


def test_main_rejects_mismatched_cells(lognorm, tmp_path):
    import anndata as ad

    from common_io import InputError

    X, obs = lognorm
    data = tmp_path / "preprocessed.h5ad"
    ad.AnnData(X=X, obs=obs[["bulk_labels"]]).write_h5ad(data)
    emb = ad.AnnData(obs=obs[["bulk_labels"]].iloc[::-1])
    emb.obsm["X_ivae"] = np.zeros((X.shape[0], 4), np.float32)
    emb.write_h5ad(tmp_path / "emb.h5ad")
    with pytest.raises(InputError, match="other cells"):
        main(_fake_snakemake(tmp_path, data, tmp_path / "emb.h5ad", tmp_path / "emb.h5ad", "bulk_labels"))


def test_read_reference_keeps_numeric_cell_names(tmp_path):
    """Cell names that all look like numbers ("0001", "3348") are names, not integers."""
    from common_io import write_cell_table

    names = pd.Index(["0001", "3348", "12", "007"], name="cell")
    table = pd.DataFrame({"cluster": ["0", "1", "0", "1"], "label": ["1", "2", "1", "2"],
                          "label_source": "labels"}, index=names)
    write_cell_table(table, tmp_path / "labels.tsv")
    labels, kind = read_reference(tmp_path / "labels.tsv", pd.Index(["0001", "3348", "12", "007"]))
    assert kind == "labels" and list(labels) == ["1", "2", "1", "2"]
