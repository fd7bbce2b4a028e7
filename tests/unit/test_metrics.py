"""metrics.py: every metric against a hand-computed case, the baselines, the reference
labels, the table and the Snakemake entry on small real data."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from correlation import correlation_score
from baselines import baseline_embeddings
from baselines import main as main_baselines
from leiden_reference import reference_labels
from metrics import (
    METRIC_COLUMNS,
    SCORES,
    clustering_metrics,
    embedding_metrics,
    read_reference,
    summarise,
    held_out_likelihood,
)
from metrics_table import main as main_table
from run_metrics import main as main_run


pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert m["ASW"] == pytest.approx((47 / 63 + 1) / 2, rel=1e-12)  # scIB's rescaled silhouette
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
    assert m["ASW"] == pytest.approx((np.mean(s) + 1) / 2, rel=1e-12)


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


def test_minibatch_draws_are_uniform_without_the_per_step_cumulative_sum():
    """Above max_cells, MiniBatchKMeans's minibatches are drawn by randint (O(batch)) when
    scikit-learn asks numpy's choice for a uniform weighted draw (O(cells) each step);
    everything else, and every non-uniform or no-replacement draw, is numpy's own."""
    from metrics import UniformDrawsRandomState

    n = 1000
    uniform = np.full(n, 1.0 / n)
    ours, plain = UniformDrawsRandomState(7), np.random.RandomState(7)
    np.testing.assert_array_equal(ours.choice(n, 50, p=uniform), plain.randint(0, n, 50))
    one = ours.choice(n, p=uniform)  # kmeans++'s first centre: one draw, a scalar
    assert isinstance(one, (int, np.integer)) and one == plain.randint(0, n)
    skewed = np.arange(n, dtype=float) / np.arange(n).sum()
    np.testing.assert_array_equal(ours.choice(n, 50, p=skewed), plain.choice(n, 50, p=skewed))
    np.testing.assert_array_equal(ours.choice(n, 5, replace=False), plain.choice(n, 5, replace=False))
    np.testing.assert_array_equal(ours.choice(n, 5, replace=False, p=uniform), plain.choice(n, 5, replace=False, p=uniform))
    assert ours.random() == plain.random()

    class Spy(UniformDrawsRandomState):
        uniform_draws = 0

        def randint(self, *args, **kwargs):
            Spy.uniform_draws += 1
            return super().randint(*args, **kwargs)

    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [8, 0], [0, 8], [8, 8]])
    ref = np.repeat(np.arange(4), 3000)
    emb = centres[ref] + rng.normal(0, 1, (len(ref), 2))
    from sklearn.cluster import MiniBatchKMeans

    labels = MiniBatchKMeans(n_clusters=4, n_init=3, batch_size=512, random_state=Spy(0)).fit_predict(emb)
    assert Spy.uniform_draws > 10  # scikit-learn's per-step draws went through randint
    assert pd.crosstab(labels, ref).max(axis=0).sum() > 0.99 * len(ref)  # the four blobs are found
    scores = clustering_metrics(emb, ref, max_cells=5000)
    assert scores["ARI"] > 0.95 and scores == clustering_metrics(emb, ref, max_cells=5000)


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
    first, notes = baseline_embeddings(X, 5, seed=0)
    assert list(first) == ["PCA", "ICA", "NMF", "FA"] and notes == dict.fromkeys(first, "")  # all converged
    for name, emb in first.items():
        assert emb.shape == (300, 5), name
        assert np.isfinite(emb).all(), name
        assert emb.std(0).min() > 0, name  # no dead component
    assert (first["NMF"] >= 0).all()
    # PCA scores are uncorrelated; ICA components are unit-variance.
    assert correlation_score(first["PCA"]) < 1e-4
    np.testing.assert_allclose(first["ICA"].std(0), 1.0, rtol=1e-3)
    again, _ = baseline_embeddings(X.toarray(), 5, seed=0)  # dense input, same seed: same result
    for name in first:
        np.testing.assert_allclose(again[name], first[name], rtol=1e-5, atol=1e-6, err_msg=name)
    other, _ = baseline_embeddings(X, 5, seed=1)
    assert not np.allclose(other["ICA"], first["ICA"])  # the seed is used
    _, few = baseline_embeddings(X, 5, seed=0, max_iter=2)
    assert few["ICA"] == "did not converge in 2 iterations"  # said on the table, not hidden


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


# --- the paper's variant, the table and the entries -----------------------------------------

def test_kmeans_variant_scores_the_embeddings_own_clusters():
    """Three tight blobs, but a reference that splits them at random: the reference-based
    indices are poor, the KMeans ones (the paper's) excellent; they are computed as stated."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    rng = np.random.default_rng(0)
    x = np.repeat(np.array([[0.0, 0], [10, 0], [0, 10]]), 100, axis=0) + rng.normal(scale=0.3, size=(300, 2))
    reference = rng.choice(["a", "b", "c"], 300)
    scores = clustering_metrics(x, reference, seed=0)
    kmeans = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(x)
    assert scores["ASW_kmeans"] == pytest.approx(silhouette_score(x, kmeans))
    assert scores["CH_kmeans"] == pytest.approx(calinski_harabasz_score(x, kmeans))
    assert scores["DB_kmeans"] == pytest.approx(davies_bouldin_score(x, kmeans))
    assert scores["ASW_kmeans"] > 0.9 and scores["ASW"] < 0.525 and abs(scores["ARI"]) < 0.05


def test_embedding_metrics_adds_correlation_and_dimensionality():
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(200, 4)) * [3.0, 1.0, 1.0, 1.0]
    reference = np.repeat(["a", "b"], 100)
    scores = embedding_metrics(latent, reference, seed=0)
    assert set(scores) == set(SCORES) - {"test_nelbo", "test_iwae_nll"}
    assert scores["corr_score"] == pytest.approx(correlation_score(latent))
    eig = np.linalg.eigvalsh(np.cov(latent.T))
    assert scores["participation_ratio"] == pytest.approx(eig.sum() ** 2 / (eig**2).sum())


def test_held_out_likelihood_read_from_its_table(tmp_path):
    pd.DataFrame([{"test_cells": 70, "samples": 100, "test_nelbo": 710.5, "test_iwae_nll": 702.25}]).to_csv(
        tmp_path / "l.tsv", sep="\t", index=False)
    assert held_out_likelihood(tmp_path / "l.tsv") == {"test_nelbo": 710.5, "test_iwae_nll": 702.25}


def test_summary_over_seeds():
    table = pd.DataFrame({"method": ["iVAE", "iVAE", "iVAE", "VAE", "PCA"], "seed": [0, 1, 2, 0, 0],
                          **{k: [1.0, 2.0, 3.0, 5.0, 7.0] for k in SCORES}, "reference": "labels", "note": ""})
    summary = summarise(table).set_index("method")
    assert list(summary.index) == ["iVAE", "VAE", "PCA"]
    assert summary.loc["iVAE", "ARI"] == 2.0 and summary.loc["iVAE", "ARI_sd"] == pytest.approx(1.0)
    assert summary.loc["iVAE", "n_seeds"] == 3 and np.isnan(summary.loc["VAE", "ARI_sd"])


def _labels(tmp_path, data, label_key):
    """cell_labels.tsv of ``data``, made by the real function."""
    import anndata as ad

    from cell_labels import cell_labels
    from cell_table import write_cell_table

    path = tmp_path / f"cell_labels_{label_key}.tsv"
    write_cell_table(cell_labels(ad.read_h5ad(data), label_key=label_key, markers=None), path)
    return str(path)


def _snake(tmp_path, name, step, **inputs):
    return SimpleNamespace(input=SimpleNamespace(**inputs), output=[str(tmp_path / f"{name}.tsv")],
                           params=SimpleNamespace(method="iVAE", seed=3, eval_seed=0, fit_seed=0,
                                                  n_components=6, batch_key=None),
                           log=[str(tmp_path / f"{name}.log")], threads=1)


def test_entries_write_rows_and_summary(lognorm, tmp_path):
    import anndata as ad

    X, obs = lognorm
    obs = obs[["bulk_labels"]].copy()
    obs["bulk_labels"] = obs["bulk_labels"].astype(object)
    obs.iloc[:10, 0] = None  # unlabelled cells are left out
    data = tmp_path / "preprocessed.h5ad"
    ad.AnnData(X=X, obs=obs).write_h5ad(data)
    labels = _labels(tmp_path, data, "bulk_labels")
    emb = ad.AnnData(obs=obs)
    emb.obsm["X_ivae"] = baseline_embeddings(X, 6)[0]["PCA"].astype(np.float32)
    emb.uns["ivae"] = {"train_params": {"irecon": 5.0}}
    emb.write_h5ad(tmp_path / "emb.h5ad")
    pd.DataFrame({"epoch": [1, 2], "val_recon": [3.0, 2.0], "val_irecon": [20.0, 15.0],
                  "selected": [False, True]}).to_csv(tmp_path / "log.tsv", sep="\t", index=False)

    pd.DataFrame([{"test_cells": 70, "samples": 100, "test_nelbo": 3.5, "test_iwae_nll": 3.0}]).to_csv(
        tmp_path / "likelihood.tsv", sep="\t", index=False)
    run = _snake(tmp_path, "run", "run", embedding=str(tmp_path / "emb.h5ad"), log_tsv=str(tmp_path / "log.tsv"),
                 likelihood=str(tmp_path / "likelihood.tsv"), labels=labels)
    main_run(run)
    row = pd.read_csv(run.output[0], sep="\t")
    assert list(row.columns) == METRIC_COLUMNS and len(row) == 1
    assert row.loc[0, "method"] == "iVAE" and row.loc[0, "seed"] == 3 and row.loc[0, "reference"] == "labels"
    assert row.loc[0, "test_nelbo"] == 3.5 and row.loc[0, "test_iwae_nll"] == 3.0 and row.loc[0, "ARI"] > 0.3
    assert "10 of 700 cells have no label" in open(run.log[0]).read()

    base = _snake(tmp_path, "baselines", "baselines", data=str(data), labels=labels)
    main_baselines(base)
    baselines = pd.read_csv(base.output[0], sep="\t")
    assert list(baselines["method"]) == ["PCA", "ICA", "NMF", "FA"] and np.isnan(baselines["test_iwae_nll"]).all()

    table = SimpleNamespace(input=[run.output[0], base.output[0]], log=[str(tmp_path / "table.log")],
                            output=SimpleNamespace(table=str(tmp_path / "metrics.tsv"),
                                                   summary=str(tmp_path / "summary.tsv")))
    main_table(table)
    both = pd.read_csv(table.output.table, sep="\t")
    assert list(both["method"]) == ["iVAE", "PCA", "ICA", "NMF", "FA"]
    summary = pd.read_csv(table.output.summary, sep="\t")
    assert list(summary["method"]) == ["iVAE", "PCA", "ICA", "NMF", "FA"] and (summary["n_seeds"] == 1).all()
    assert not list(tmp_path.glob(".*tmp*"))


def test_run_entry_rejects_mismatched_cells(lognorm, tmp_path):
    import anndata as ad

    from rule_io import InputError

    X, obs = lognorm
    data = tmp_path / "preprocessed.h5ad"
    ad.AnnData(X=X, obs=obs[["bulk_labels"]]).write_h5ad(data)
    emb = ad.AnnData(obs=obs[["bulk_labels"]].iloc[::-1])
    emb.obsm["X_ivae"] = np.zeros((X.shape[0], 4), np.float32)
    emb.write_h5ad(tmp_path / "emb.h5ad")
    pd.DataFrame({"epoch": [1]}).to_csv(tmp_path / "log.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="other cells"):
        main_run(_snake(tmp_path, "run", "run", embedding=str(tmp_path / "emb.h5ad"),
                        log_tsv=str(tmp_path / "log.tsv"), labels=_labels(tmp_path, data, "bulk_labels")))


def test_read_reference_keeps_numeric_cell_names(tmp_path):
    """Cell names that all look like numbers ("0001", "3348") are names, not integers."""
    from cell_table import write_cell_table

    names = pd.Index(["0001", "3348", "12", "007"], name="cell")
    table = pd.DataFrame({"cluster": ["0", "1", "0", "1"], "label": ["1", "2", "1", "2"],
                          "label_source": "labels"}, index=names)
    write_cell_table(table, tmp_path / "labels.tsv")
    labels, kind = read_reference(tmp_path / "labels.tsv", pd.Index(["0001", "3348", "12", "007"]))
    assert kind == "labels" and list(labels) == ["1", "2", "1", "2"]


# --- batch mixing ----------------------------------------------------------------------------

def test_batch_mixing_separated_vs_mixed_batches():
    """Two cell types x two batches: batches on top of each other score ~1, batches pushed
    apart score low, on each of the three scores; cell types stay apart in both."""
    from metrics import batch_mixing

    rng = np.random.default_rng(0)
    cell_type = np.repeat(["T", "B"], 200)
    batch = np.tile(np.repeat(["s1", "s2"], 100), 2)
    centres = np.where(cell_type[:, None] == "T", [0.0, 0.0], [20.0, 0.0])
    mixed = centres + rng.normal(size=(400, 2))
    apart = mixed + np.where(batch[:, None] == "s1", [0.0, 0.0], [0.0, 30.0])
    good, bad = batch_mixing(mixed, batch, cell_type), batch_mixing(apart, batch, cell_type)
    assert good["batch_ASW"] > 0.9 > 0.3 > bad["batch_ASW"]
    assert good["graph_connectivity"] == 1.0 and bad["graph_connectivity"] == pytest.approx(0.5)
    assert good["batch_entropy"] > 0.9 and bad["batch_entropy"] < 0.05
    with pytest.raises(ValueError, match="2 batches"):
        batch_mixing(mixed, np.full(400, "s1"), cell_type)


def test_batch_asw_is_scibs_definition():
    """1 - |silhouette of the batch labels|, computed within each cell type, averaged over types."""
    from sklearn.metrics import silhouette_samples

    from metrics import batch_mixing

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 3))
    cell_type = np.repeat(["a", "b"], 60)
    batch = rng.choice(["x", "y", "z"], 120)
    expected = np.mean([np.mean(1 - np.abs(silhouette_samples(x[cell_type == t], batch[cell_type == t])))
                        for t in ("a", "b")])
    assert batch_mixing(x, batch, cell_type)["batch_ASW"] == pytest.approx(expected)


def test_clustering_metrics_of_20000_cells_subsample_the_silhouette(clusters_20000):
    from metrics import clustering_metrics

    latent, labels = clusters_20000
    scores = clustering_metrics(latent, labels.astype(str), seed=0)
    assert scores["ARI"] > 0.95 and 0.75 < scores["ASW"] <= 1 and np.isfinite([scores["CH"], scores["DB"]]).all()
