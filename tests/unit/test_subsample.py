"""Atlas scale (evaluation.max_cells): the subsample helper, the row reader, and every step
that switches to a subsample above max_cells, run here with a small max_cells on
pbmc68k's 700 real cells."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from h5ad_parts import iter_row_blocks, read_rows
from subsample import MIN_PER_LABEL, subsample_cells


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def h5ad(lognorm, pbmc68k_counts, tmp_path_factory):
    """The same data as an .h5ad with .raw (the QC-passed genes, here the same)."""
    import anndata as ad

    X, obs = lognorm
    obs = obs[["bulk_labels"]].astype(str)
    obs["batch"] = np.where(np.arange(len(obs)) % 2, "a", "b")  # two batches, mixed within every type
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pbmc68k_counts.var_names))
    adata.raw = adata.copy()
    path = tmp_path_factory.mktemp("scale") / "preprocessed.h5ad"
    adata.write_h5ad(path)
    return path


# --- the subsample ---------------------------------------------------------------------------

def test_subsample_all_cells_at_or_below_max_cells():
    assert np.array_equal(subsample_cells(100, 100), np.arange(100))
    assert np.array_equal(subsample_cells(5, 1000, labels=list("aabbc")), np.arange(5))


def test_uniform_subsample_is_seeded_sorted_and_unique():
    a = subsample_cells(10_000, 1_000, seed=3)
    assert len(a) == 1_000 and len(np.unique(a)) == 1_000 and np.all(np.diff(a) > 0)
    assert a[0] >= 0 and a[-1] < 10_000
    assert np.array_equal(a, subsample_cells(10_000, 1_000, seed=3))
    assert not np.array_equal(a, subsample_cells(10_000, 1_000, seed=4))


def test_stratified_subsample_is_proportional_and_keeps_every_label():
    rng = np.random.default_rng(0)
    sizes = {"big": 60_000, "mid": 30_000, "small": 9_990, "rare": 10}
    labels = rng.permutation(np.repeat(list(sizes), list(sizes.values())))
    keep = subsample_cells(len(labels), 5_000, labels=labels, seed=1)
    assert len(keep) == 5_000 and len(np.unique(keep)) == 5_000
    counts = pd.Series(labels[keep]).value_counts()
    assert counts["rare"] == 10  # fewer than MIN_PER_LABEL cells: all of them
    assert counts["small"] >= MIN_PER_LABEL
    spare = 5_000 - 10 - 3 * MIN_PER_LABEL
    for label in ("big", "mid", "small"):  # the rest shared in proportion, to within one cell
        expected = MIN_PER_LABEL + spare * (sizes[label] - MIN_PER_LABEL) / (sum(sizes.values()) - 10 - 150)
        assert abs(counts[label] - expected) <= 1, label
    assert np.array_equal(keep, subsample_cells(len(labels), 5_000, labels=labels, seed=1))


def test_stratified_subsample_keeps_a_label_that_proportion_would_drop():
    labels = np.array(["a"] * 99_990 + ["b"] * 10)
    keep = subsample_cells(len(labels), 1_000, labels=labels)
    assert (labels[keep] == "b").sum() == 10 and len(keep) == 1_000


def test_subsample_rejects_labels_of_another_length():
    with pytest.raises(ValueError, match="one label per cell"):
        subsample_cells(10, 5, labels=["a"] * 9)


def test_read_rows_reads_those_rows_a_block_at_a_time(lognorm, h5ad):
    X, _ = lognorm
    rows = subsample_cells(X.shape[0], 123, seed=0)
    got = read_rows(h5ad, rows, chunk_rows=50)  # 14 blocks
    assert sp.issparse(got) and got.shape == (123, X.shape[1])
    assert (got != X[rows]).nnz == 0
    assert (read_rows(h5ad, rows, "raw/X", chunk_rows=64) != X[rows]).nnz == 0
    blocks = list(iter_row_blocks(h5ad, chunk_rows=300))
    assert [s for s, _ in blocks] == [0, 300, 600] and sum(b.shape[0] for _, b in blocks) == X.shape[0]
    with pytest.raises(ValueError, match="sorted"):
        read_rows(h5ad, [3, 1])


# --- Leiden on a subsample ---------------------------------------------------------------------

def test_leiden_on_a_subsample_assigns_every_cell(lognorm):
    from sklearn.metrics import adjusted_rand_score

    from leiden_reference import leiden_clusters, reference_labels, subsampled_leiden

    X, obs = lognorm
    rows = subsample_cells(X.shape[0], 400, seed=0)
    clusters = subsampled_leiden(X[rows], [(0, X[:350]), (350, X[350:])], X.shape[0], rows, seed=0)
    own = leiden_clusters(X[rows], seed=0).obs["leiden"].astype(str).to_numpy()
    assert len(clusters) == X.shape[0] and pd.notna(clusters).all()
    assert np.array_equal(clusters[rows], own)  # the subsample keeps its Leiden clusters
    assert set(clusters) == set(own)
    # the other cells follow the data's structure: they agree with the full Leiden run as
    # well as the subsample's own cells do
    full, _ = reference_labels(obs, X, label_key=None, seed=0, max_cells=X.shape[0])  # at max_cells: no switch
    others = np.setdiff1d(np.arange(X.shape[0]), rows)
    assert adjusted_rand_score(full[others], clusters[others]) > 0.5 * adjusted_rand_score(full[rows], own)
    # reference_labels switches to it above max_cells, and not at or below
    above, kind = reference_labels(obs, X, label_key=None, seed=0, max_cells=400)
    assert kind == "clusters" and np.array_equal(above, clusters)
    assert np.array_equal(full, leiden_clusters(X, seed=0).obs["leiden"].astype(str).to_numpy())


def test_subsample_projection_reproduces_the_pca_scores(lognorm):
    """The other cells are placed with (x - mean) @ PCs: the same map that gave the subsample's scores."""
    from leiden_reference import leiden_clusters

    X, _ = lognorm
    fitted = leiden_clusters(X[:300], seed=0)
    pcs = np.asarray(fitted.varm["PCs"], np.float64)
    projected = (X[:300] @ pcs) - np.asarray(X[:300].mean(0)).ravel() @ pcs
    np.testing.assert_allclose(projected, fitted.obsm["X_pca"], atol=1e-3)


def test_cell_labels_from_file_above_max_cells(h5ad):
    from cell_labels import cell_labels, cell_labels_from_file

    markers = {"B": ["MS4A1", "CD79A", "CD79B"], "CD14+ monocyte": ["CD14", "LYZ", "S100A8"],
               "NK": ["GNLY", "NKG7"], "T": ["CD3D", "CD3E", "IL7R"]}
    table = cell_labels_from_file(h5ad, label_key=None, markers=markers, max_cells=400, seed=0)
    assert len(table) == 700 and table["cluster"].notna().all() and table["label"].notna().all()
    assert table["leiden_subsample"].sum() == 400 and (table["label_source"] == "markers").all()
    # marker scores from the subsample name every cell's cluster, in and out of the subsample
    import anndata as ad

    bulk = ad.read_h5ad(h5ad, backed="r").obs["bulk_labels"].to_numpy()
    assert (table["label"][bulk == "CD14+ Monocyte"] == "CD14+ monocyte").mean() > 0.7
    assert (table["label"][(bulk == "CD19+ B") & ~table["leiden_subsample"]] == "B").mean() > 0.6
    by_label = cell_labels_from_file(h5ad, label_key="bulk_labels", markers=None, max_cells=400, seed=0)
    assert (by_label["label_source"] == "labels").all() and by_label["label"].nunique() == 10

    whole = cell_labels(ad.read_h5ad(h5ad), label_key=None, markers=None)
    assert "leiden_subsample" not in whole  # at or below max_cells: today's table


# --- metrics above max_cells -------------------------------------------------------------------

def test_clustering_metrics_switch_to_minibatch_kmeans_above_max_cells(monkeypatch):
    import sklearn.cluster

    from metrics import clustering_metrics

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(4, 5))
    truth = rng.integers(0, 4, 2_000)
    x = centres[truth] + rng.normal(size=(2_000, 5))
    used = []
    for name in ("KMeans", "MiniBatchKMeans"):
        original = getattr(sklearn.cluster, name)
        monkeypatch.setattr(sklearn.cluster, name,
                            lambda *a, _o=original, _n=name, **k: used.append(_n) or _o(*a, **k))
    small = clustering_metrics(x, truth.astype(str), seed=0, max_cells=2_000)
    big = clustering_metrics(x, truth.astype(str), seed=0, max_cells=1_000)
    assert used == ["KMeans", "MiniBatchKMeans"]
    assert big["ARI"] > 0.95 and small["ARI"] > 0.95
    assert big["CH"] == small["CH"]  # the reference's own scores do not involve KMeans


def test_batch_mixing_runs_on_a_stratified_subsample_above_max_cells():
    from metrics import batch_mixing

    rng = np.random.default_rng(0)
    n = 3_000
    cell_type = rng.integers(0, 3, n).astype(str)
    batch = rng.integers(0, 2, n).astype(str)
    x = rng.normal(size=(n, 4)) + 10 * cell_type.astype(float)[:, None]
    full = batch_mixing(x, batch, cell_type, seed=0)
    sub = batch_mixing(x, batch, cell_type, seed=0, max_cells=1_000)
    keep = subsample_cells(n, 1_000, labels=cell_type, seed=0)
    assert sub == batch_mixing(x[keep], batch[keep], cell_type[keep], seed=0)
    assert sub["batch_entropy"] == pytest.approx(full["batch_entropy"], abs=0.05)
    assert batch_mixing(x, batch, cell_type, seed=0, max_cells=n) == full


def _snake(tmp_path, name, step, max_cells, **inputs):
    return SimpleNamespace(input=SimpleNamespace(**inputs), output=[str(tmp_path / f"{name}.tsv")],
                           params=SimpleNamespace(method="iVAE", seed=3, eval_seed=0, fit_seed=0,
                                                  n_components=6, batch_key="batch", max_cells=max_cells),
                           log=[str(tmp_path / f"{name}.log")], threads=1)


def test_baselines_and_run_rows_above_max_cells(h5ad, tmp_path):
    import anndata as ad

    from cell_labels import cell_labels
    from cell_table import write_cell_table
    from baselines import main as main_baselines
    from metrics import METRIC_COLUMNS
    from run_metrics import main as main_run

    labels = tmp_path / "cell_labels.tsv"
    write_cell_table(cell_labels(ad.read_h5ad(h5ad), label_key="bulk_labels", markers=None), labels)
    base = _snake(tmp_path, "baselines", "baselines", 300, data=str(h5ad), labels=str(labels))
    main_baselines(base)
    rows = pd.read_csv(base.output[0], sep="\t", keep_default_na=False)
    assert list(rows.columns) == METRIC_COLUMNS and list(rows["method"]) == ["PCA", "ICA", "NMF", "FA"]
    assert rows["note"].str.contains("fitted and scored on a subsample of 300 of 700 cells "
                                     "(stratified by label)", regex=False).all()
    assert np.isfinite(rows[["NMI", "ARI", "ASW", "corr_score", "batch_entropy"]].to_numpy(float)).all()
    assert "baselines fitted and scored on a subsample of 300" in open(base.log[0]).read()

    emb = ad.read_h5ad(h5ad)
    emb.obsm["X_ivae"] = np.asarray(emb.X[:, :8].toarray())
    emb.uns["ivae"] = {"train_params": {"irecon": 1.0}}
    emb.write_h5ad(tmp_path / "emb.h5ad")
    pd.DataFrame({"epoch": [1], "val_recon": [1.0]}).to_csv(tmp_path / "log.tsv", sep="\t", index=False)
    pd.DataFrame([{"test_cells": 70, "samples": 100, "test_nelbo": 1.5, "test_iwae_nll": 1.0}]).to_csv(
        tmp_path / "likelihood.tsv", sep="\t", index=False)
    run = _snake(tmp_path, "run", "run", 300, embedding=str(tmp_path / "emb.h5ad"), log_tsv=str(tmp_path / "log.tsv"),
                 likelihood=str(tmp_path / "likelihood.tsv"), labels=str(labels))
    main_run(run)
    row = pd.read_csv(run.output[0], sep="\t", keep_default_na=False)
    assert list(row.columns) == METRIC_COLUMNS
    note = row.loc[0, "note"]
    assert "MiniBatchKMeans" in note and "on all 700 cells" in note
    assert "batch mixing on a subsample of 300 of 700 cells (stratified by label)" in note


# --- UMAPs and figures above max_cells ---------------------------------------------------------

@pytest.fixture(scope="module")
def model_outputs(h5ad, tmp_path_factory):
    """preprocessed data, an embedding (PCA scores standing in for the latents) and cell labels."""
    import anndata as ad

    from baselines import baseline_embeddings

    pre = ad.read_h5ad(h5ad)
    pre.obs["total_counts"] = np.asarray(pre.X.expm1().sum(1)).ravel()
    scores = baseline_embeddings(pre.X, 8)[0]["PCA"].astype(np.float32)
    emb = ad.AnnData(obs=pre.obs[[]])
    emb.obsm["X_ivae"], emb.obsm["X_ivae_interp"], emb.obsm["X_ivae_ld"] = scores, scores[:, :2], scores
    emb.uns["ivae"] = {"train_params": {"irecon": 1.0}}
    labels = pd.DataFrame({"cluster": "0", "label": pre.obs["bulk_labels"].astype(str), "label_source": "labels"},
                          index=pd.Index(pre.obs_names, name="cell"))
    return pre, emb, labels


def test_adata_umap_and_graph_of_a_subsample_above_max_cells(model_outputs):
    import scanpy as sc

    from make_anndata import build_anndata

    pre, emb, labels = model_outputs
    adata = build_anndata(pre.copy(), emb, labels, seed=0, max_cells=300)
    sub = adata.obs["umap_subsample"].to_numpy()
    assert sub.sum() == 300 and adata.uns["umap_subsample"]["n_subsample"] == 300
    assert "a subsample of 300 of 700 cells (stratified by label)" in adata.uns["umap_subsample"]["note"]
    assert np.isfinite(adata.obsm["X_umap"][sub]).all() and np.isnan(adata.obsm["X_umap"][~sub]).all()
    graph = adata.obsp["connectivities"]
    assert graph.shape == (700, 700) and graph[~sub].nnz == 0 and graph[:, ~sub].nnz == 0
    assert (graph[sub].getnnz(1) > 0).all()
    assert set(adata[sub].obs["label"]) == set(labels["label"])  # every label drawn
    # the subsample is a complete scanpy neighbour graph: Leiden runs on it as is
    part = adata[sub].copy()
    sc.tl.leiden(part, flavor="igraph", n_iterations=2, directed=False, random_state=0)
    assert part.obs["leiden"].nunique() > 2
    whole = build_anndata(pre.copy(), emb, labels, seed=0, max_cells=700)
    assert "umap_subsample" not in whole.obs and np.isfinite(whole.obsm["X_umap"]).all()


def test_plot_embeddings_draws_the_subsample_and_says_so(model_outputs, tmp_path, monkeypatch):
    import plot_embeddings
    import plotstyle
    from make_anndata import build_anndata

    pre, emb, labels = model_outputs
    build_anndata(pre.copy(), emb, labels, seed=0, max_cells=300).write_h5ad(tmp_path / "adata.h5ad")
    emb.write_h5ad(tmp_path / "vae.h5ad")
    titles, drawn = [], []
    save = plotstyle.save
    monkeypatch.setattr(plotstyle, "save", lambda fig, pdf, png: titles.append(
        fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()) or save(fig, pdf, png))
    umap = plot_embeddings.umap_coordinates
    monkeypatch.setattr(plot_embeddings, "umap_coordinates", lambda x, **k: drawn.append(len(x)) or umap(x, **k))
    out = {f"{f}_{e}": str(tmp_path / f"{f}.{e}") for f in ("interp", "umap") for e in ("pdf", "png")}
    plot_embeddings.main(SimpleNamespace(
        input=SimpleNamespace(adata=str(tmp_path / "adata.h5ad"), vae=str(tmp_path / "vae.h5ad"), no_covariates=[]),
        output=SimpleNamespace(**out), log=[str(tmp_path / "plot.log")], wildcards=SimpleNamespace(dataset="toy"),
        params=SimpleNamespace(seed=0, batch_key="batch", max_cells=300)))
    assert drawn == [300]  # the VAE's UMAP computed on the subsample only
    assert "subsample of 300 of 700 cells, stratified by label" in titles[0]  # interpretative embedding
    assert titles[1] == "toy: UMAPs of the latents (subsample of 300 of 700 cells, stratified by label)"
    assert (tmp_path / "umap.png").stat().st_size > 50_000


def test_blockwise_correlation_equals_the_whole_matrix_one(lognorm):
    from component_genes import blockwise_correlation, expression_correlation

    X, _ = lognorm
    v = np.random.default_rng(0).normal(size=(X.shape[0], 3))
    whole = expression_correlation(v, X)
    blocks = [(s, X[s:s + 128]) for s in range(0, X.shape[0], 128)]
    np.testing.assert_allclose(blockwise_correlation({"v": v}, blocks)["v"], whole, rtol=1e-9, atol=1e-12)
    dense = [(s, b.toarray()) for s, b in blocks]
    np.testing.assert_allclose(blockwise_correlation({"v": v}, dense)["v"], whole, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("max_cells", [300, 700])
def test_adata_file_is_the_in_memory_anndata(model_outputs, tmp_path, max_cells):
    """The workflow writes adata.h5ad into a copy of preprocessed.h5ad, never loading its
    matrices: the file holds what build_anndata makes in memory, .raw included."""
    import anndata as ad

    from make_anndata import build_anndata, write_anndata

    pre, emb, labels = model_outputs
    pre = pre.copy()
    pre.raw = pre.copy()
    pre.write_h5ad(tmp_path / "pre.h5ad", compression="gzip")
    write_anndata(tmp_path / "pre.h5ad", emb, labels, tmp_path / "adata.h5ad", seed=0, max_cells=max_cells)
    got = ad.read_h5ad(tmp_path / "adata.h5ad")
    want = build_anndata(pre.copy(), emb, labels, seed=0, max_cells=max_cells)
    pd.testing.assert_frame_equal(got.obs, want.obs)
    assert (got.X != want.X).nnz == 0 and (got.raw.X != want.raw.X).nnz == 0
    assert sorted(got.obsm) == sorted(want.obsm) and sorted(got.obsp) == sorted(want.obsp)
    for key in want.obsm:
        np.testing.assert_array_equal(got.obsm[key], want.obsm[key])
    for key in want.obsp:
        assert (got.obsp[key] != want.obsp[key]).nnz == 0
    assert got.uns["neighbors"]["params"] == want.uns["neighbors"]["params"]
    assert set(got.uns) == set(want.uns)


def test_uns_entry_read_alone(tmp_path):
    import anndata as ad

    from h5ad_parts import read_uns

    adata = ad.AnnData(obs=pd.DataFrame(index=["a", "b"]))
    adata.uns["ivae"] = {"model_params": {"i_dim": 2}, "train_params": {"irecon": 5.0}}
    adata.write_h5ad(tmp_path / "e.h5ad")
    assert read_uns(tmp_path / "e.h5ad", "ivae")["train_params"]["irecon"] == 5.0
    assert int(read_uns(tmp_path / "e.h5ad", "ivae/model_params/i_dim")) == 2
    assert read_uns(tmp_path / "e.h5ad", "software", {}) == {}
