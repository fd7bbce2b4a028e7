"""standard_models.py: scVI and LDVAE from scvi-tools on the workflow's split, covariates
and outputs."""

import numpy as np
import pandas as pd
import pytest

from rule_io import InputError
from train import held_out_split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small(pbmc68k_counts):
    """200 cells x the 100 most expressed genes of pbmc68k_reduced (raw counts), and two batches."""
    X = pbmc68k_counts.X[:200]
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    top = np.sort(np.argsort(-X.sum(0))[:100])
    batches = pd.DataFrame({"donor": np.where(np.arange(200) % 2, "d1", "d2")})
    return X[:, top].astype(np.float32), pbmc68k_counts.var_names[top], batches


def test_default_max_epochs_are_scvi_tools():
    from standard_models import default_max_epochs

    assert default_max_epochs(700) == 400 and default_max_epochs(20000) == 400
    assert default_max_epochs(50000) == 160 and default_max_epochs(1_000_000) == 8


def test_ldvae_trains_on_the_workflows_split_reproducibly(small):
    from standard_models import fit, held_out, loadings_table, make_anndata

    counts, genes, _ = small
    split = held_out_split(200, 0.1, 0.1, seed=3)
    runs = []
    for _ in range(2):
        model, history = fit(make_anndata(counts, genes), "LDVAE", latent_dim=4, seed=3, split=split, patience=5,
                             max_epochs=3, batch_size=64)
        runs.append((model, history, model.get_latent_representation()))
    (model, history, latent), (_, _, again) = runs
    np.testing.assert_array_equal(latent, again)  # the seed fixes every stream
    assert latent.shape == (200, 4)
    for ours, theirs in zip(split, (model.train_indices, model.validation_indices, model.test_indices)):
        assert np.array_equal(np.sort(theirs), ours)  # the workflow models' cells, the test cells never trained on
    assert list(history.columns) == ["epoch", "loss", "val_loss", "selected"] and len(history) == 3
    assert history["selected"].sum() == 1 and history.loc[history["selected"], "val_loss"].iloc[0] == history[
        "val_loss"].min()  # the best epoch's weights are the ones kept
    # no KL warm-up, as the workflow's models: the loss trained on (reconstruction + weight x KL)
    # is the ELBO itself from the first epoch (with scvi-tools' default warm-up it is below it)
    trained_on, elbo = (np.asarray(model.history[k].iloc[:, 0].tolist(), dtype=float)
                        for k in ("validation_loss", "elbo_validation"))
    np.testing.assert_allclose(trained_on, elbo, rtol=1e-5)
    likelihood = held_out(model, split[2], n_samples=50)
    assert likelihood["test_cells"] == len(split[2]) == 20 and likelihood["samples"] == 50
    assert np.isfinite(list(likelihood.values())).all()
    assert held_out(model, split[2], n_samples=5, max_cells=8)["test_cells"] == 8  # a seeded subsample above
    assert likelihood["test_iwae_nll"] <= likelihood["test_nelbo"] + 1e-3  # the importance-sampled bound is tighter
    loadings = loadings_table(model)
    assert len(loadings) == 4 * 100 and set(loadings["gene"]) == set(map(str, genes))
    for _, component in loadings.groupby("component"):
        assert sorted(component["rank"]) == list(range(1, 101))
        assert abs(component.iloc[0]["loading"]) == component["loading"].abs().max()  # rank 1: the largest |loading|
    wide = model.get_loadings()
    first = loadings[loadings["component"] == 0].set_index("gene")["loading"]
    np.testing.assert_allclose(first.loc[wide.index].to_numpy(), wide.iloc[:, 0].to_numpy())


def test_scvi_takes_the_batch_covariate(small):
    from standard_models import fit, make_anndata

    counts, genes, batches = small
    adata = make_anndata(counts, genes, batches)
    assert adata.obs["covariate_donor"].cat.categories.tolist() == ["d1", "d2"]
    model, _ = fit(adata, "scVI", latent_dim=4, seed=0, split=held_out_split(200, 0.1, 0.1, seed=0), patience=5,
                   max_epochs=2, batch_size=64)
    assert model.summary_stats["n_batch"] == 2


def test_no_validation_cells_is_refused(small):
    from standard_models import fit, make_anndata

    counts, genes, _ = small
    with pytest.raises(InputError, match="validation_fraction"):
        fit(make_anndata(counts, genes), "LDVAE", latent_dim=4, seed=0, split=held_out_split(200, 0.0, 0.1, seed=0),
            patience=5, max_epochs=1)


def test_ldvae_takes_every_covariate_as_one_batch(small):
    """LinearSCVI has a batch key only: two covariates are combined into it (scVI: batch and
    categorical covariate)."""
    from standard_models import make_anndata, setup

    counts, genes, batches = small
    covariates = batches.assign(assay=np.where(np.arange(200) % 3, "10x", "ss2"))
    adata = make_anndata(counts, genes, covariates)
    assert setup(adata, "LDVAE") == {"batch_key": "covariates_joint"}
    assert adata.obs["covariates_joint"].nunique() == 4 and "d1 | 10x" in set(adata.obs["covariates_joint"])
    assert setup(make_anndata(counts, genes, covariates), "scVI") == {
        "batch_key": "covariate_donor", "categorical_covariate_keys": ["covariate_assay"]}


def test_divergence_is_named(small, monkeypatch):
    """Non-finite values in training stop the run with an error that says what happened."""
    import scvi

    from standard_models import fit, make_anndata

    def diverge(*args, **kwargs):
        raise ValueError("Expected parameter loc (Tensor of shape (32, 10)) ... but found invalid values:\ntensor(nan)")

    monkeypatch.setattr(scvi.model.LinearSCVI, "train", diverge)
    counts, genes, _ = small
    with pytest.raises(FloatingPointError, match="LDVAE diverged at seed 0: non-finite values.*lower train.lr"):
        fit(make_anndata(counts, genes), "LDVAE", latent_dim=4, seed=0, split=held_out_split(200, 0.1, 0.1, seed=0),
            patience=5, max_epochs=1)


def test_a_diverged_run_is_recorded_and_scored_as_such(small, tmp_path):
    """write_diverged writes every output of the rule (NaN latent and likelihood, the reason
    in uns), run_metrics turns it into a row of empty scores whose note says why, and the
    components leave it out."""
    from types import SimpleNamespace

    import anndata as ad

    import run_metrics
    from components import model_embeddings
    from standard_models import make_anndata, write_diverged

    counts, genes, _ = small
    names = [f"c{i}" for i in range(200)]
    data = tmp_path / "pre.h5ad"
    ad.AnnData(obs=pd.DataFrame({"x": np.arange(200)}, index=names)).write_h5ad(data)
    out = {k: str(tmp_path / v) for k, v in dict(model="scvi_model", log_tsv="log.tsv", likelihood="ll.tsv",
                                                 loadings="loadings.tsv", latent="latent.npy",
                                                 h5ad="embedding.h5ad").items()}
    snake = SimpleNamespace(input=SimpleNamespace(data=str(data)), output=SimpleNamespace(**out),
                            params=SimpleNamespace(latent_dim=4, importance_samples=100, method="LDVAE"))
    write_diverged(snake, make_anndata(counts, genes), "LDVAE diverged at seed 1: non-finite values", 20, 400, [])
    embedding = ad.read_h5ad(out["h5ad"])
    assert embedding.obsm["X_ivae"].shape == (200, 4) and np.isnan(embedding.obsm["X_ivae"]).all()
    assert embedding.uns["ivae"]["diverged"].startswith("LDVAE diverged")
    assert np.isnan(pd.read_csv(out["likelihood"], sep="\t")["test_iwae_nll"]).all()
    assert pd.read_csv(out["loadings"], sep="\t").empty and (tmp_path / "scvi_model" / "diverged.txt").exists()
    labels = tmp_path / "labels.tsv"
    pd.DataFrame({"cell": names, "label": ["a", "b"] * 100, "cluster": ["0"] * 200,
                  "label_source": ["labels"] * 200}).to_csv(labels, sep="\t", index=False)
    row_path = tmp_path / "row.tsv"
    run_metrics.main(SimpleNamespace(
        input=SimpleNamespace(embedding=out["h5ad"], labels=str(labels), log_tsv=out["log_tsv"],
                              likelihood=out["likelihood"]),
        output=[str(row_path)], log=[str(tmp_path / "rm.log")],
        params=SimpleNamespace(batch_key=None, method="LDVAE", seed=1, max_cells=None)))
    row = pd.read_csv(row_path, sep="\t").iloc[0]
    assert row["method"] == "LDVAE" and row["seed"] == 1 and np.isnan(row["ARI"]) and np.isnan(row["test_iwae_nll"])
    assert row["note"].startswith("training diverged: LDVAE diverged at seed 1")
    left = model_embeddings({("LDVAE", 1): out["h5ad"]}, np.asarray(counts, dtype=np.float32), None, 4)
    assert "LDVAE z" not in left and 1 in left["PCA"]  # the baselines still fitted at that seed
