"""Scores of an embedding: clustering metrics, correlation score, effective dimensionality,
batch mixing, and their summary over seeds (the metrics tables' columns).

The rules' entry scripts use them: run_metrics.py (one trained model's row),
baselines.py (the linear baselines' rows) and metrics_table.py (all rows and the summary).

For each embedding (cells x components), against the reference groups (the dataset's
``label_key`` labels when given, else Leiden clusters of the log-normalised highly
variable genes; the ``reference`` column says which):

- NMI and ARI of KMeans clusters (k = the number of reference groups) with the reference;
- ASW, CH and DB of the reference groups on the embedding (how well the embedding separates
  the reference's groups);
- ASW_kmeans, CH_kmeans and DB_kmeans of the embedding's own KMeans clusters: the variant
  the iVAE paper reports (its Figure 1C), which rewards any well-separated partition,
  right or wrong;
- corr_score, the paper's correlation score (higher: components more correlated), and
  participation_ratio, the effective number of dimensions of the latent's covariance;
- for trained models, test_nelbo and test_iwae_nll: on the model's test cells (never
  trained on, never used for early stopping), the mean negative ELBO and the negative
  importance-weighted bound of the counts' likelihood (embed.held_out_likelihood), in nats
  per cell, lower is better;
- with a ``batch_key`` and cell-type labels, how well the batches mix within cell types
  (``batch_mixing``; NaN otherwise):
  batch_ASW and graph_connectivity as the scIB benchmark defines them (Luecken et al.
  2022), and batch_entropy, the kNN batch-mixing entropy (Haghverdi et al. 2018); higher
  is better mixed for all three.

Higher is better for NMI, ARI, ASW and CH, lower for DB; CH and DB (and ASW less so)
reward variance concentrated in few directions, so read them beside participation_ratio.

Atlas scale (``evaluation.max_cells``; ``subsample.py``): above max_cells cells, KMeans is
scikit-learn's MiniBatchKMeans on every cell, batch mixing runs on a label-stratified
subsample of max_cells cells, and the baselines are fitted and scored on such a subsample;
each row's ``note`` says so. At or below max_cells nothing changes.
"""


import numpy as np
import pandas as pd
import scipy.sparse as sp

from cell_table import read_cell_table
from rule_io import InputError, log
from correlation import as_embedding, correlation_score, participation_ratio
from methods import BASELINES  # noqa: F401 - the rows of the metrics tables that are not trained models
from subsample import subsample_cells, subsample_note

#: Columns of the metrics tables, in order.
SCORES = ["NMI", "ARI", "ASW", "CH", "DB", "ASW_kmeans", "CH_kmeans", "DB_kmeans", "corr_score",
          "participation_ratio", "test_nelbo", "test_iwae_nll", "batch_ASW", "graph_connectivity", "batch_entropy"]
#: The held-out likelihood's columns (test_likelihood.tsv of each trained model).
LIKELIHOOD = ["test_nelbo", "test_iwae_nll"]
BATCH_SCORES = ["batch_ASW", "graph_connectivity", "batch_entropy"]
#: How each trained model's training ended: epochs run, the epoch kept, whether early stopping ended it.
TRAINING = ["epochs_run", "epoch_kept", "stopped_early"]
METRIC_COLUMNS = ["method", "seed", *SCORES, *TRAINING, "reference", "note"]
#: MiniBatchKMeans above max_cells cells: initialisations and cells per batch.
MINIBATCH_N_INIT, MINIBATCH_SIZE = 3, 4096


class UniformDrawsRandomState(np.random.RandomState):
    """The ``random_state`` of a MiniBatchKMeans fitted without sample weights.

    scikit-learn (since PR #30751, in 1.9.1 here) draws every minibatch as
    ``random_state.choice(n, batch_size, p=weights / weights.sum(), replace=True)``. Given
    ``p``, numpy checks it and builds its cumulative sum over all n cells at every step,
    so a fit costs steps x n, and the steps grow with n too: quadratic in cells (docs/performance.md,
    "Atlas scale": the per-run metrics jobs grew with exponent 1.15-1.30). With equal
    weights that draw is a uniform draw with replacement, which ``randint`` makes in
    O(batch_size). So here ``choice`` with a ``p`` that is uniform (checked once per
    array: scikit-learn passes the same one at every step) draws with ``randint``; every
    other call is numpy's own. The algorithm, its initialisations and early stopping are
    scikit-learn's, unchanged.
    """

    def __init__(self, seed: int):
        super().__init__(seed)
        self._checked: tuple | None = None  # (the last p seen, whether it is uniform over n)

    def choice(self, a, size=None, replace=True, p=None):
        if p is not None and replace and isinstance(a, (int, np.integer)) and self._uniform(p, int(a)):
            return self.randint(0, a, size)
        return super().choice(a, size, replace, p)

    def _uniform(self, p, n: int) -> bool:
        if self._checked is None or self._checked[0] is not p:
            values = np.asarray(p)
            self._checked = (p, values.shape == (n,) and bool(np.all(values == values[0])))
        return self._checked[1]


def kmeans_note(n_cells: int, max_cells: int | None) -> str:
    """The ``note`` for the KMeans switch: "" at or below ``max_cells``."""
    if max_cells is None or n_cells <= max_cells:
        return ""
    return (f"KMeans: MiniBatchKMeans (n_init {MINIBATCH_N_INIT}, batch {MINIBATCH_SIZE}) on all {n_cells:,} cells, "
            f"above max_cells {max_cells:,}")


def clustering_metrics(embedding, reference, *, seed: int = 0, max_cells_silhouette: int = 10000,
                       max_cells: int | None = None) -> dict:
    """Clustering metrics of ``embedding`` (cells x components) against ``reference`` labels.

    With g = the number of distinct reference groups and n cells:

    - KMeans (scikit-learn, k = g, n_init = 10, random_state = ``seed``) on the embedding;
      above ``max_cells`` cells (None: never) MiniBatchKMeans instead (k = g, n_init = 3,
      batch_size = 4096, random_state = ``UniformDrawsRandomState(seed)``), still on every
      cell: Lloyd's KMeans with 10 initialisations on millions of cells takes hours on a
      few cores;
    - NMI = I(K; R) / ((H(K) + H(R)) / 2) between KMeans labels K and reference R
      (entropies in nats; scikit-learn's arithmetic normalisation);
    - ARI = (sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E),
      E = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2), over the contingency table n_ij of
      K and R with row sums a_i and column sums b_j (Hubert & Arabie's adjusted Rand index);
    - ASW = (s + 1) / 2, as scIB reports the label silhouette (0 to 1, 0.5 for groups no
      better separated than chance): s = mean over cells of (b - a) / max(a, b), a = mean
      Euclidean distance to the cell's own reference group, b = smallest mean distance to
      another group; on a
      random subsample of ``max_cells_silhouette`` cells (``np.random.default_rng(seed)``,
      without replacement) when n is larger, as it costs O(n^2); NaN if the subsample
      holds fewer than two groups;
    - CH = [B / (g - 1)] / [W / (n - g)], B = sum_k n_k |c_k - c|^2, W = sum_k sum_{x in k}
      |x - c_k|^2 (reference groups k, centroids c_k, overall mean c);
    - DB = (1/g) sum_k max_{l != k} (s_k + s_l) / |c_k - c_l|, s_k = mean distance of group
      k's cells to c_k;
    - ASW_kmeans, CH_kmeans, DB_kmeans: the same three indices of the KMeans clusters
      instead of the reference groups (the iVAE paper's variant; its silhouette s is not
      rescaled, as the paper reports it, -1 to 1); NaN when KMeans finds fewer than two
      clusters.

    Returns ``{"NMI", "ARI", "ASW", "CH", "DB", "ASW_kmeans", "CH_kmeans", "DB_kmeans"}`` as floats. Raises ValueError unless the
    embedding is finite and 2-D, ``reference`` has one label per row, and there are at
    least 2 and fewer than n groups.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import (
        adjusted_rand_score,
        calinski_harabasz_score,
        davies_bouldin_score,
        normalized_mutual_info_score,
        silhouette_score,
    )

    x = as_embedding(embedding)
    reference = np.asarray(reference)
    if reference.ndim != 1 or reference.shape[0] != x.shape[0]:
        raise ValueError(
            f"reference must hold one label per cell: the embedding has {x.shape[0]} rows, "
            f"the reference has shape {reference.shape}."
        )
    if pd.isna(reference).any():
        raise ValueError(f"reference holds {int(pd.isna(reference).sum())} missing labels; drop those cells first.")
    codes, groups = pd.factorize(pd.Series(reference, copy=False).astype(str), sort=True)  # hashing, not sorting n strings
    n, g = x.shape[0], len(groups)
    if g < 2:
        raise ValueError(f"reference has {g} group(s); clustering metrics need at least 2.")
    if g >= n:
        raise ValueError(f"reference has {g} groups for {n} cells; clustering metrics need fewer groups than cells.")
    if max_cells_silhouette < 2:
        raise ValueError(f"max_cells_silhouette must be at least 2; got {max_cells_silhouette}.")

    if max_cells is not None and n > max_cells:
        from sklearn.cluster import MiniBatchKMeans

        kmeans = MiniBatchKMeans(n_clusters=g, n_init=MINIBATCH_N_INIT, batch_size=MINIBATCH_SIZE,
                                 random_state=UniformDrawsRandomState(seed)).fit_predict(x)
    else:
        kmeans = KMeans(n_clusters=g, n_init=10, random_state=seed).fit_predict(x)
    sil = (np.sort(np.random.default_rng(seed).choice(n, size=max_cells_silhouette, replace=False))
           if n > max_cells_silhouette else np.arange(n))

    def indices(groups_of_cells: np.ndarray) -> tuple[float, float, float]:
        """(ASW on the subsample, CH, DB) of a partition of the cells; NaN without 2 groups."""
        if len(np.unique(groups_of_cells)) < 2:
            return float("nan"), float("nan"), float("nan")
        g_sil = len(np.unique(groups_of_cells[sil]))
        asw = float(silhouette_score(x[sil], groups_of_cells[sil])) if 2 <= g_sil < len(sil) else float("nan")
        return asw, float(calinski_harabasz_score(x, groups_of_cells)), float(davies_bouldin_score(x, groups_of_cells))

    asw, ch, db = indices(codes)
    asw_k, ch_k, db_k = indices(kmeans)
    return {"NMI": float(normalized_mutual_info_score(codes, kmeans)), "ARI": float(adjusted_rand_score(codes, kmeans)),
            "ASW": (asw + 1) / 2, "CH": ch, "DB": db, "ASW_kmeans": asw_k, "CH_kmeans": ch_k, "DB_kmeans": db_k}


def batch_mixing(embedding, batch, cell_type, *, n_neighbors: int = 15, seed: int = 0,
                 max_cells_silhouette: int = 10000, max_cells: int | None = None) -> dict:
    """How well the batches mix within cell types on ``embedding`` (scIB's definitions).

    - batch_ASW: for each cell type with cells from >= 2 batches, 1 - |s| averaged over its
      cells, s = each cell's silhouette of the batch labels among that type's cells; the
      mean over cell types (1: batches indistinguishable within types; scIB's
      ``silhouette_batch``). At most ``max_cells_silhouette`` cells per type (seeded subsample).
    - graph_connectivity: the kNN graph (``n_neighbors``, Euclidean) restricted to each cell
      type; the fraction of the type's cells in its largest connected component; the mean
      over cell types (1: every type one connected piece, whatever the batch).
    - batch_entropy: for each cell, the entropy of the batches among its ``n_neighbors``
      nearest neighbours divided by log(number of batches); the mean over cells (1: evenly
      mixed, 0: neighbours all from one batch).

    Above ``max_cells`` cells (None: never), all three are computed on
    ``subsample_cells(n, max_cells, labels=cell_type, seed=seed)``: a subsample stratified
    by cell type (the kNN graph of millions of cells is the costly part).
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.metrics import silhouette_samples
    from sklearn.neighbors import NearestNeighbors

    x = as_embedding(embedding)
    batch = np.asarray(batch).astype(str)
    cell_type = np.asarray(cell_type).astype(str)
    if max_cells is not None and x.shape[0] > max_cells:
        keep = subsample_cells(x.shape[0], max_cells, labels=cell_type, seed=seed)
        return batch_mixing(x[keep], batch[keep], cell_type[keep], n_neighbors=n_neighbors, seed=seed,
                            max_cells_silhouette=max_cells_silhouette)
    n_batches = len(np.unique(batch))
    if n_batches < 2:
        raise ValueError("batch mixing needs at least 2 batches.")
    rng = np.random.default_rng(seed)
    asw, connectivity = [], []
    k = min(n_neighbors, x.shape[0] - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)
    is_self = idx[:, 0] == np.arange(x.shape[0])  # each cell is its own nearest, unless it has a twin
    neighbours = np.where(is_self[:, None], idx[:, 1:], idx[:, :k])
    rows = np.repeat(np.arange(x.shape[0]), k)
    graph = sp.csr_matrix((np.ones(rows.size), (rows, neighbours.ravel())), shape=(x.shape[0],) * 2)
    for group in np.unique(cell_type):
        cells = np.flatnonzero(cell_type == group)
        if len(np.unique(batch[cells])) >= 2 and len(cells) > 2:
            if len(cells) > max_cells_silhouette:
                cells_sil = np.sort(rng.choice(cells, max_cells_silhouette, replace=False))
            else:
                cells_sil = cells
            if 2 <= len(np.unique(batch[cells_sil])) < len(cells_sil):
                asw.append(float(np.mean(1 - np.abs(silhouette_samples(x[cells_sil], batch[cells_sil])))))
        _, components = connected_components(graph[cells][:, cells], directed=False)
        connectivity.append(np.bincount(components).max() / len(cells))
    codes = np.unique(batch, return_inverse=True)[1]
    share = np.zeros((x.shape[0], n_batches))
    np.add.at(share, (rows, codes[neighbours].ravel()), 1.0 / k)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(share > 0, share * np.log(share), 0.0).sum(1) / np.log(n_batches)
    return {"batch_ASW": float(np.mean(asw)) if asw else float("nan"),
            "graph_connectivity": float(np.mean(connectivity)), "batch_entropy": float(entropy.mean())}


def embedding_metrics(embedding, reference, *, seed: int = 0, max_cells_silhouette: int = 10000,
                      batch=None, max_cells: int | None = None) -> dict:
    """Every score of SCORES but the validation NLLs, for one embedding against ``reference``
    (and with ``batch``, each cell's batch, the batch-mixing scores; else NaN); ``max_cells``
    as in ``clustering_metrics`` and ``batch_mixing``."""
    mixing = (batch_mixing(embedding, batch, reference, seed=seed, max_cells=max_cells) if batch is not None
              else dict.fromkeys(BATCH_SCORES, float("nan")))
    return {**clustering_metrics(embedding, reference, seed=seed, max_cells_silhouette=max_cells_silhouette,
                                 max_cells=max_cells),
            "corr_score": correlation_score(embedding), "participation_ratio": participation_ratio(embedding),
            **mixing}


def selected_epoch(history: pd.DataFrame) -> pd.Series:
    """The training log's row of the epoch whose model was kept (``selected``; else the last)."""
    if "selected" in history and history["selected"].any():
        return history[history["selected"].astype(bool)].iloc[-1]
    return history.iloc[-1]


def held_out_likelihood(path) -> dict:
    """test_nelbo and test_iwae_nll from a model's test_likelihood.tsv (NaN without test cells)."""
    row = pd.read_csv(path, sep="\t").iloc[0]
    return {column: float(row[column]) for column in LIKELIHOOD}


def training_end(history: pd.DataFrame, max_epochs: int) -> dict:
    """Epochs run, the epoch whose model was kept, and whether training stopped before ``max_epochs``."""
    return {"epochs_run": int(history["epoch"].max()), "epoch_kept": int(selected_epoch(history)["epoch"]),
            "stopped_early": bool(history["epoch"].max() < max_epochs)}


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and s.d. over seeds of every score, one row per method (in first-seen order):
    columns method, n_seeds, <score>, <score>_sd, reference."""
    order = list(dict.fromkeys(table["method"]))
    grouped = table.groupby("method", sort=False)
    scores = [c for c in SCORES if c in table]  # tables of earlier versions lack the newer scores
    summary = grouped[scores].mean().join(grouped[scores].std(ddof=1).add_suffix("_sd"))
    summary.insert(0, "n_seeds", grouped["seed"].nunique())
    summary["reference"] = grouped["reference"].first()
    return summary.loc[order].reset_index()


def read_reference(path, obs_names: pd.Index) -> tuple[np.ndarray, str]:
    """The metrics' reference from cell_labels.tsv: ``(labels, kind)``.

    The dataset's labels when it has them (kind ``"labels"``; missing ones as None),
    otherwise the Leiden clusters of the log-normalised data (kind ``"clusters"``), also
    when the labels are marker-based: those are names given to the same clusters.
    """
    table = read_cell_table(path)
    if not table.index.equals(obs_names):
        raise InputError(f"{path} holds other cells than the preprocessed data (or in another order); rerun it.")
    if (table["label_source"] == "labels").all():
        return table["label"].to_numpy(dtype=object), "labels"
    return table["cluster"].to_numpy(dtype=object), "clusters"


def known_reference(path, obs_names: pd.Index):
    """(labels as str, kind, mask of the cells that have one) from cell_labels.tsv."""
    reference, kind = read_reference(path, obs_names)
    known = pd.notna(reference)
    if not known.all():
        log.warning("%d of %d cells have no label: left out of the metrics", (~known).sum(), len(known))
    return reference[known].astype(str), kind, known


def batches_for_mixing(obs: pd.DataFrame, batch_key: str | None, known: np.ndarray, kind: str):
    """Each (labelled) cell's batch; None without a batch_key or without cell-type labels
    (Leiden clusters of the uncorrected data split by batch themselves: mixing within them
    would mean little)."""
    if batch_key is None or kind != "labels":
        return None
    return obs[batch_key].astype(str).to_numpy()[known]


def max_cells_param(snakemake) -> int | None:
    """The rule's ``max_cells`` param (evaluation.max_cells); None where a rule has none."""
    value = getattr(snakemake.params, "max_cells", None)
    return None if value is None else int(value)


def scale_note(n_cells: int, max_cells: int | None, mixing: bool) -> str:
    """A trained model's ``note``: "" at or below ``max_cells``; above, how KMeans and the
    batch-mixing scores were computed."""
    if max_cells is None or n_cells <= max_cells:
        return ""
    notes = [kmeans_note(n_cells, max_cells)]
    if mixing:
        notes.append(f"batch mixing on {subsample_note(max_cells, n_cells, stratified=True)}")
    return "; ".join(notes)
