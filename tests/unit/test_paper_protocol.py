"""The paper's protocol (paper_protocol.py) against the reference package's own scoring,
the reference package's runs (paper_reference.py), the workflow models' scoring
(paper_score_workflow.py) and the per-dataset table and page (paper_page.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from paper_protocol import (METRICS, PAPER_DIRECTION, batch_scores, compare_protocols, paper_batch_size,
                            paper_scores, reference_clusters)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_counts(pbmc68k_counts):
    """200 cells x the 100 most expressed genes of pbmc68k_reduced, dense raw counts."""
    X = pbmc68k_counts.X[:200]
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    top = np.argsort(-X.sum(0))[:100]
    return X[:, top].astype(np.float32)


def test_batch_size_is_the_packages_with_room_for_its_kmeans():
    assert paper_batch_size(8617, 10) == 86  # int(1 % of the cells), as the package draws
    assert paper_batch_size(3005, 10) == 30
    assert paper_batch_size(700, 10) == 30  # the package's 7 cells cannot hold 10 KMeans clusters
    assert paper_batch_size(20, 10) == 20  # never more than there are
    with pytest.raises(ValueError, match="more than latent_dim"):
        paper_batch_size(10, 10)


def test_batch_scores_are_the_packages(small_counts):
    """The package's envMixin._metrics on the same latent, reference and KMeans clusters."""
    from iVAE.mixin import envMixin
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    latent = rng.normal(size=(60, 10)) + np.repeat(rng.normal(scale=3, size=(4, 10)), 15, axis=0)
    reference = reference_clusters(np.log1p(small_counts[:60]), 10, seed=0)
    env = envMixin()
    env.labels, env.idx = reference, np.arange(60)
    theirs = env._metrics(latent, KMeans(10, random_state=3).fit_predict(latent))
    ours = batch_scores(latent, reference, seed=3)
    np.testing.assert_allclose([ours[m] for m in METRICS], theirs, rtol=1e-10)


def test_reference_clusters_are_seeded(small_counts):
    X = np.log1p(small_counts)
    a, b = reference_clusters(X, 10, seed=1), reference_clusters(X, 10, seed=1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 10


def test_paper_scores_average_batches_drawn_with_replacement():
    reference = np.repeat(np.arange(3), 50)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    drawn = []

    def sample(rows):
        drawn.append(rows)
        return centres[reference[rows]] + np.random.default_rng(len(drawn)).normal(scale=0.1, size=(len(rows), 2))

    scores = paper_scores(sample, reference, batch_size=30, n_batches=4, seed=0)
    assert len(drawn) == 4 and all(len(r) == 30 for r in drawn)
    assert scores["n_batches"] == 4
    # k = 2 clusters of a 2-d latent over 3 groups: partly right, far above chance
    assert 0.4 < scores["ARI"] <= 1 and scores["ASW"] > 0.5
    again = paper_scores(lambda rows: centres[reference[rows]] + 0.0, reference, batch_size=30, n_batches=4, seed=0)
    assert np.isfinite([again[m] for m in METRICS]).all()


def runs_table(shift: float, seeds=range(5), noise=0.01) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for family in ("reference package", "workflow"):
        for protocol in ("paper", "workflow"):
            for seed in seeds:
                base = {m: rng.normal() for m in METRICS}
                for method, delta in (("VAE", 0.0), ("iVAE", shift)):
                    rows.append({"dataset": "d", "family": family, "protocol": protocol, "method": method,
                                 "seed": seed, **{m: base[m] + delta + rng.normal(scale=noise) for m in METRICS}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("shift", "expected"), [
    (0.5, {m: "yes" if d > 0 else "opposite" for m, d in PAPER_DIRECTION.items()}),
    (-0.5, {m: "opposite" if d > 0 else "yes" for m, d in PAPER_DIRECTION.items()}),
])
def test_compare_protocols_says_whether_the_papers_direction_holds(shift, expected):
    comp = compare_protocols(runs_table(shift))
    assert len(comp) == 2 * 2 * len(METRICS)
    assert set(comp["family"]) == {"reference package", "workflow"} and set(comp["protocol"]) == {"paper", "workflow"}
    for row in comp.itertuples():
        assert row.paper_holds == expected[row.metric], row
    assert (comp["p_holm"] >= comp["p"]).all()


def test_pooled_over_datasets():
    from paper_protocol import pooled_protocols

    runs = pd.concat([runs_table(0.5).assign(dataset=d) for d in ("a", "b", "c")], ignore_index=True)
    pool = pooled_protocols(runs)
    assert len(pool) == 2 * 2 * len(METRICS) and (pool["datasets"] == 3).all()
    assert pool["mean"].to_numpy() == pytest.approx(0.5, abs=0.02)
    for row in pool.itertuples():
        assert row.paper_holds == ("yes" if PAPER_DIRECTION[row.metric] > 0 else "opposite"), row
    from paper_page import page

    text = page(runs, compare_protocols(runs), pool)
    assert ("- workflow, paper protocol: pooled over 3 datasets, the paper's direction on ARI, NMI, ASW, CH, "
            "corr_score; against it on DB.") in text  # every score 0.5 higher, DB included
    assert "Per dataset, at 5 seeds with Holm's correction over each dataset's 24 tests" in text


def test_compare_protocols_noise_is_not_shown():
    comp = compare_protocols(runs_table(0.0, noise=1.0))
    assert (comp["paper_holds"] == "not shown").all()


def test_reference_package_trains_reproducibly_and_scores_both_ways(small_counts):
    from paper_reference import score_reference, trace_table, train_reference

    a = train_reference(small_counts, irecon=5.0, steps=15, seed=2)
    b = train_reference(small_counts, irecon=5.0, steps=15, seed=2)
    ta, tb = trace_table(a), trace_table(b)
    assert list(ta.columns[:2]) == ["step", "loss"] and len(ta) == 15 and ta["step"].iloc[-1] == 15
    pd.testing.assert_frame_equal(ta, tb)  # every stream seeded: the same run twice
    assert a.batch_size == 30  # 1 % of 200 cells is 2: raised to 3 x latent_dim
    assert (ta["irecon_loss"] > 0).all()
    vae = train_reference(small_counts, irecon=0.0, steps=15, seed=2)
    assert (trace_table(vae)["irecon_loss"] == 0).all()
    labels = np.repeat(np.array(["a", "b", "c", "d"]), 50)
    scores = score_reference(a, labels, np.ones(200, bool), seed=2, n_batches=3)
    assert list(scores["protocol"]) == ["paper", "paper_trace", "workflow"]
    assert np.isfinite(scores[["ARI", "NMI", "ASW", "corr_score"]].to_numpy()).all()
    assert scores.set_index("protocol").loc["workflow", "ASW"] >= 0  # rescaled (s + 1) / 2


def test_workflow_model_scored_by_the_papers_protocol(small_counts):
    from model import IVAE
    from paper_score_workflow import score_workflow_model

    torch.manual_seed(0)
    model = IVAE(n_genes=small_counts.shape[1], hidden_dim=16, latent_dim=6, i_dim=2).eval()
    a = score_workflow_model(model, small_counts, seed=1, n_batches=3)
    b = score_workflow_model(model, small_counts, seed=1, n_batches=3)
    assert a == b and a["n_batches"] == 3
    assert -1 <= a["ASW"] <= 1 and 0 <= a["corr_score"] <= 5  # d - 1 at most, d = 6


def test_dataset_table_and_page(tmp_path):
    from paper_page import dataset_table, page

    runs = runs_table(0.5, seeds=range(3))
    reference, workflow = [], []
    for (family, protocol, method, seed), row in runs.set_index(["family", "protocol", "method", "seed"]).iterrows():
        values = row[METRICS].to_dict()
        if family == "reference package":
            path = tmp_path / f"ref_{protocol}_{method}_{seed}.tsv"
            pd.DataFrame([{"method": method, "seed": seed, "protocol": protocol, **values}]).to_csv(
                path, sep="\t", index=False)
            reference.append(path)
        elif protocol == "paper":
            path = tmp_path / f"wf_{method}_{seed}.tsv"
            pd.DataFrame([{"method": method, "seed": seed, "protocol": "paper", **values}]).to_csv(
                path, sep="\t", index=False)
            workflow.append(path)
    own = runs[(runs["family"] == "workflow") & (runs["protocol"] == "workflow")].drop(
        columns=["dataset", "family", "protocol"])
    metrics = pd.concat([own, pd.DataFrame([{"method": "PCA", "seed": 0, **dict.fromkeys(METRICS, 0.0)}])])
    metrics.to_csv(tmp_path / "metrics.tsv", sep="\t", index=False)
    table = dataset_table("d", reference, workflow, tmp_path / "metrics.tsv")
    assert len(table) == len(runs) and list(table["family"].unique()) == ["reference package", "workflow"]
    assert set(table["method"]) == {"iVAE", "VAE"}  # PCA's row is not part of it
    comp = compare_protocols(table)
    text = page(table, comp)
    assert "## Pooled over datasets" not in text  # one dataset: nothing to pool
    assert "| reference package | paper | 1 / 1 | 1 / 1 |" in text
    # the iVAE column holds the iVAE's mean (0.5 above the VAE's)
    first = next(line for line in text.splitlines() if line.startswith("| reference package | paper | ARI |"))
    vae, ivae = (float(cell.split(" ± ")[0]) for cell in first.split(" | ")[3:5])
    assert ivae - vae == pytest.approx(0.5, abs=0.05)
    metrics[metrics["seed"] != 2].to_csv(tmp_path / "metrics.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="no row for"):
        dataset_table("d", reference, workflow, tmp_path / "metrics.tsv")
