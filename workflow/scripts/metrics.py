"""Evaluation after training: clustering and disentanglement metrics of the iVAE, a plain
VAE and four linear/matrix-factorisation baselines, in one table.

For each embedding (cells x components): KMeans with k = the number of reference groups,
scored against the reference by NMI and ARI; the reference groups scored on the embedding
by the silhouette (ASW), Calinski-Harabasz (CH) and Davies-Bouldin (DB) indices; and the
iVAE paper's Pearson correlation score of the components. The reference is the
dataset's ``label_key`` column when one is given, else Leiden clusters of the
log-normalised highly variable genes (the ``reference`` column of the table says which).

Output (results/{dataset}/metrics.tsv): one row per method, iVAE, VAE, PCA, ICA, NMF, FA;
columns method, NMI, ARI, ASW, CH, DB, corr_score, reference. Higher is better for NMI,
ARI, ASW and CH; lower for DB and corr_score.
"""


import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common_io import InputError, atomic_path, log, read_cell_table, setup_logging
from plot_latent_correlation import correlation_matrix

METRIC_COLUMNS = ["method", "NMI", "ARI", "ASW", "CH", "DB", "corr_score", "reference"]
BASELINES = ("PCA", "ICA", "NMF", "FA")


def _as_embedding(x, name: str = "embedding") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (cells x components); got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values ({(~np.isfinite(x)).sum()} entries).")
    return x


def correlation_score(latent) -> float:
    """The iVAE paper's Pearson correlation score of a latent (cells x d components).

        score = (1/d) * sum_i sum_{j != i} |r_ij|,   r = Pearson correlation of the columns,

    i.e. the mean over components of their summed |correlation| with every other component:
    0 for uncorrelated components, d - 1 when all are perfectly (anti-)correlated. Lower is
    better (more disentangled). A constant component has no defined correlation
    (``correlation_matrix`` gives NaN): it counts as uncorrelated (|r| = 0) here, so a
    collapsed component does not make the score undefined. One component scores 0.
    """
    latent = _as_embedding(latent, "latent")
    d = latent.shape[1]
    corr = np.abs(correlation_matrix(latent))
    off = ~np.eye(d, dtype=bool)
    return float(np.nan_to_num(corr[off], nan=0.0).sum() / d)


def clustering_metrics(embedding, reference, *, seed: int = 0, max_cells_silhouette: int = 10000) -> dict:
    """Clustering metrics of ``embedding`` (cells x components) against ``reference`` labels.

    With g = the number of distinct reference groups and n cells:

    - KMeans (scikit-learn, k = g, n_init = 10, random_state = ``seed``) on the embedding;
    - NMI = I(K; R) / ((H(K) + H(R)) / 2) between KMeans labels K and reference R
      (entropies in nats; scikit-learn's arithmetic normalisation);
    - ARI = (sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E),
      E = sum_i C(a_i, 2) * sum_j C(b_j, 2) / C(n, 2), over the contingency table n_ij of
      K and R with row sums a_i and column sums b_j (Hubert & Arabie's adjusted Rand index);
    - ASW = mean over cells of (b - a) / max(a, b), a = mean Euclidean distance to the
      cell's own reference group, b = smallest mean distance to another group; on a
      random subsample of ``max_cells_silhouette`` cells (``np.random.default_rng(seed)``,
      without replacement) when n is larger, as it costs O(n^2); NaN if the subsample
      holds fewer than two groups;
    - CH = [B / (g - 1)] / [W / (n - g)], B = sum_k n_k |c_k - c|^2, W = sum_k sum_{x in k}
      |x - c_k|^2 (reference groups k, centroids c_k, overall mean c);
    - DB = (1/g) sum_k max_{l != k} (s_k + s_l) / |c_k - c_l|, s_k = mean distance of group
      k's cells to c_k.

    Returns ``{"NMI", "ARI", "ASW", "CH", "DB"}`` as floats. Raises ValueError unless the
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

    x = _as_embedding(embedding)
    reference = np.asarray(reference)
    if reference.ndim != 1 or reference.shape[0] != x.shape[0]:
        raise ValueError(
            f"reference must hold one label per cell: the embedding has {x.shape[0]} rows, "
            f"the reference has shape {reference.shape}."
        )
    if pd.isna(reference).any():
        raise ValueError(f"reference holds {int(pd.isna(reference).sum())} missing labels; drop those cells first.")
    groups, codes = np.unique(reference.astype(str), return_inverse=True)
    n, g = x.shape[0], len(groups)
    if g < 2:
        raise ValueError(f"reference has {g} group(s); clustering metrics need at least 2.")
    if g >= n:
        raise ValueError(f"reference has {g} groups for {n} cells; clustering metrics need fewer groups than cells.")
    if max_cells_silhouette < 2:
        raise ValueError(f"max_cells_silhouette must be at least 2; got {max_cells_silhouette}.")

    kmeans = KMeans(n_clusters=g, n_init=10, random_state=seed).fit_predict(x)
    if n > max_cells_silhouette:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_cells_silhouette, replace=False))
        x_sil, codes_sil = x[idx], codes[idx]
    else:
        x_sil, codes_sil = x, codes
    g_sil = len(np.unique(codes_sil))
    asw = float(silhouette_score(x_sil, codes_sil)) if 2 <= g_sil < len(codes_sil) else float("nan")
    return {
        "NMI": float(normalized_mutual_info_score(codes, kmeans)),
        "ARI": float(adjusted_rand_score(codes, kmeans)),
        "ASW": asw,
        "CH": float(calinski_harabasz_score(x, codes)),
        "DB": float(davies_bouldin_score(x, codes)),
    }


def reference_labels(obs: pd.DataFrame, X_lognorm, *, label_key: str | None, seed: int = 0,
                     resolution: float = 1.0) -> tuple[np.ndarray, str]:
    """The reference groups for the clustering metrics: ``(labels as str, kind)``.

    With ``label_key``: the obs column, kind ``"labels"`` (ValueError if the column is
    absent or has missing values: drop those cells first). Without: Leiden clusters of the
    log-normalised highly variable genes ``X_lognorm`` (cells x genes, dense or sparse),
    kind ``"clusters"``: scanpy PCA (min(50, genes - 1, cells - 1) components, unscaled,
    seeded), the 15-nearest-neighbour graph, and ``sc.tl.leiden(flavor="igraph",
    n_iterations=2, resolution=resolution, random_state=seed)``, the usual scanpy recipe.
    """
    if label_key is not None:
        if label_key not in obs.columns:
            raise ValueError(f"label_key '{label_key}' is not an obs column; the columns are {list(obs.columns)}.")
        column = obs[label_key]
        if column.isna().any():
            raise ValueError(f"obs['{label_key}'] has {int(column.isna().sum())} missing labels; drop those cells first.")
        return column.astype(str).to_numpy(), "labels"

    import anndata as ad
    import scanpy as sc

    n_cells, n_genes = X_lognorm.shape
    if obs.shape[0] != n_cells:
        raise ValueError(f"obs has {obs.shape[0]} rows but the expression matrix has {n_cells} cells.")
    n_comps = min(50, n_genes - 1, n_cells - 1)
    if n_comps < 1:
        raise ValueError(f"Leiden reference clusters need at least 2 cells and 2 genes; got {n_cells} x {n_genes}.")
    X = X_lognorm.astype(np.float32) if sp.issparse(X_lognorm) else np.asarray(X_lognorm, dtype=np.float32)
    adata = ad.AnnData(X=X)
    sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=min(15, n_cells - 1), random_state=seed)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, resolution=resolution,
                 random_state=seed, key_added="leiden")
    return adata.obs["leiden"].astype(str).to_numpy(), "clusters"


def baseline_embeddings(X_lognorm, n_components: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Four scikit-learn baselines with ``n_components`` components each, all seeded.

    ``X_lognorm``: cells x highly variable genes, log-normalised (non-negative), dense or
    sparse; it is densified once (float32: the stored precision, half the memory).

    - ``PCA``: scores on the top principal axes of the gene-centred data;
    - ``ICA``: FastICA, ``whiten="unit-variance"``, up to 1000 iterations;
    - ``NMF``: X ~ W H with W, H >= 0, ``init="nndsvda"``, up to 1000 iterations; W returned;
    - ``FA``: factor analysis, posterior means of the factors.

    Returns ``{"PCA", "ICA", "NMF", "FA"}`` -> (cells x n_components) float64 arrays. Non-
    convergence is logged, not raised. Raises ValueError for negative or non-finite input or
    ``n_components`` outside 1..min(cells, genes).
    """
    from sklearn.decomposition import NMF, PCA, FactorAnalysis, FastICA
    from sklearn.exceptions import ConvergenceWarning

    X = X_lognorm.toarray() if sp.issparse(X_lognorm) else np.asarray(X_lognorm)
    X = X.astype(np.float32, copy=False)
    if X.ndim != 2:
        raise ValueError(f"the expression matrix must be 2-D; got shape {X.shape}.")
    if not 1 <= n_components <= min(X.shape):
        raise ValueError(f"n_components must be between 1 and min(cells, genes) = {min(X.shape)}; got {n_components}.")
    if not np.isfinite(X).all():
        raise ValueError("the expression matrix holds NaN or infinite values.")
    if X.min() < 0:
        raise ValueError(f"NMF needs non-negative log-normalised values; the matrix has minimum {X.min():g}.")

    models = {
        "PCA": PCA(n_components=n_components, random_state=seed),
        "ICA": FastICA(n_components=n_components, whiten="unit-variance", max_iter=1000, random_state=seed),
        "NMF": NMF(n_components=n_components, init="nndsvda", max_iter=1000, random_state=seed),
        "FA": FactorAnalysis(n_components=n_components, random_state=seed),
    }
    out = {}
    for name, model in models.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            out[name] = np.asarray(model.fit_transform(X), dtype=np.float64)
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                log.warning("%s baseline: %s", name, w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out


def metrics_table(embeddings: dict[str, np.ndarray], reference, reference_kind: str, *, seed: int = 0,
                  max_cells_silhouette: int = 10000) -> pd.DataFrame:
    """One row per embedding, in the order given: ``clustering_metrics`` and
    ``correlation_score``; columns method, NMI, ARI, ASW, CH, DB, corr_score, reference
    (``reference_kind``: "labels" or "clusters")."""
    if reference_kind not in ("labels", "clusters"):
        raise ValueError(f"reference_kind must be 'labels' or 'clusters'; got {reference_kind!r}.")
    rows = []
    for method, embedding in embeddings.items():
        scores = clustering_metrics(embedding, reference, seed=seed, max_cells_silhouette=max_cells_silhouette)
        rows.append({"method": method, **scores, "corr_score": correlation_score(embedding),
                     "reference": reference_kind})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def _read_lognorm(path):
    """(X, obs) of preprocessed.h5ad: the log-normalised HVG matrix and obs, not .raw or layers."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        X = read_elem(f["X"])
        obs = read_elem(f["obs"])
    return X, obs


def _read_latent(path, obs_names: pd.Index) -> np.ndarray:
    import anndata as ad

    emb = ad.read_h5ad(path)
    if "X_ivae" not in emb.obsm:
        raise InputError(f"{path}: no obsm['X_ivae']; rerun the embed rule.")
    if not emb.obs_names.equals(obs_names):
        raise InputError(f"{path} holds other cells than the preprocessed data (or in another order); rerun embed.")
    return np.asarray(emb.obsm["X_ivae"])


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


def main(snakemake) -> None:
    import sklearn.cluster  # noqa: F401 - load scikit-learn's OpenMP runtime so that threadpool_limits sees it
    import sklearn.decomposition  # noqa: F401
    from threadpoolctl import threadpool_limits

    setup_logging(snakemake.log[0])
    seed = int(snakemake.params.seed)
    X, obs = _read_lognorm(snakemake.input.data)
    latents = {"iVAE": _read_latent(snakemake.input.ivae, obs.index),
               "VAE": _read_latent(snakemake.input.vae, obs.index)}
    reference, kind = read_reference(snakemake.input.labels, obs.index)
    known = pd.notna(reference)
    if not known.all():
        log.warning("%d of %d cells have no label: left out of the metrics", (~known).sum(), len(known))
        X, reference = X[known], reference[known]
        latents = {k: v[known] for k, v in latents.items()}
    reference = reference.astype(str)
    log.info("reference: %s, %d groups over %d cells (from %s)",
             "cell-type labels" if kind == "labels" else "Leiden clusters of the log-normalised genes",
             len(np.unique(reference)), len(reference), snakemake.input.labels)

    with threadpool_limits(getattr(snakemake, "threads", None)):
        n_components = latents["iVAE"].shape[1]
        log.info("baselines PCA, ICA, NMF, FA with %d components (the iVAE latent_dim) on %d x %d",
                 n_components, *X.shape)
        embeddings = {**latents, **baseline_embeddings(X, n_components, seed=seed)}
        table = metrics_table(embeddings, reference, kind, seed=seed)
    for row in table.itertuples(index=False):
        log.info("%-5s NMI %.3f ARI %.3f ASW %.3f CH %.1f DB %.3f corr %.3f", row.method, row.NMI, row.ARI,
                 row.ASW, row.CH, row.DB, row.corr_score)
    with atomic_path(snakemake.output.tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
