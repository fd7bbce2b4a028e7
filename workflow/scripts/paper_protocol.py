"""The iVAE paper's protocol, written out so that any model can be scored by it.

Fu et al. (BMC Biology 23:213, 2025) report the iVAE above a VAE (their Figure 1C) with
the scores its reference package (``iVAE`` 0.0.5 on PyPI) computes at every training step
(``envMixin._metrics``; ``../shared/reference/IVAE.md``):

- reference labels: KMeans with k = latent_dim on log1p of the counts, not annotations;
- a minibatch of 1 % of the cells, drawn with replacement; a *sample* of its latent
  (z ~ q(z | x), not the posterior mean);
- that sample's own KMeans clusters (k = latent_dim);
- "ARI": the adjusted *mutual information* between the two clusterings (the package names
  it ARI); NMI between them; ASW (silhouette, -1 to 1, not rescaled), Calinski-Harabasz
  and Davies-Bouldin of the sample against its own clusters; the correlation score of the
  sample (correlation.correlation_score).

``paper_scores`` applies that protocol to any model through a ``sample(rows)`` function,
averaged over ``n_batches`` such minibatches instead of read off one step (one batch of
1 % of the cells is a noisy estimate). The other protocol, this workflow's, is
metrics.embedding_metrics: the posterior mean of every cell against the dataset's
reference labels (``workflow``).

``compare_protocols`` takes the per-seed table of both model families (the reference
package's runs and this workflow's) under both protocols and tests the paper's Figure 1C
directions (iVAE vs VAE) in each, with verdicts.compare_methods (paired intervals, Holm
within a dataset).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import (adjusted_mutual_info_score, calinski_harabasz_score, davies_bouldin_score,
                             normalized_mutual_info_score, silhouette_score)

from correlation import correlation_score
from verdicts import compare_methods, pooled

#: The reference package's settings that the paper's Figure 1C used (its defaults, with
#: irecon 5 for the iVAE and 0 for its VAE, read at step 5,000).
PACKAGE_DEFAULTS = {"hidden_dim": 128, "latent_dim": 10, "i_dim": 2, "lr": 1e-4, "beta": 1.0, "percent": 0.01}
#: The metric columns of both protocols (their definitions differ: see the module docstring).
METRICS = ["ARI", "NMI", "ASW", "CH", "DB", "corr_score"]
#: The paper's Figure 1C, VAE vs iVAE at step 5,000 (values read off the published
#: figure, approximate; ../shared/reference/IVAE.md).
PAPER_FIGURE_1C = {"ARI": (0.47, 0.56), "NMI": (0.63, 0.69), "ASW": (0.15, 0.21), "CH": (8.0, 17.0),
                   "DB": (1.42, 1.17), "corr_score": (1.35, 2.5)}
#: The paper's direction for the iVAE against the VAE: +1 higher, -1 lower (Figure 1C).
PAPER_DIRECTION = {m: int(np.sign(ivae - vae)) for m, (vae, ivae) in PAPER_FIGURE_1C.items()}
#: The protocols: the paper's (the package's scores) and this workflow's.
PROTOCOLS = ("paper", "workflow")
#: The model families: the reference package's runs and this workflow's.
FAMILIES = ("reference package", "workflow")


def paper_batch_size(n_cells: int, latent_dim: int, percent: float = PACKAGE_DEFAULTS["percent"]) -> int:
    """The package's minibatch, ``int(percent * n_cells)`` cells, raised to 3 x latent_dim
    where that is more: its KMeans with k = latent_dim needs more cells than clusters, and
    its silhouette fewer clusters than cells (with fewer than 100 cells the package's own
    batch is empty). Never more than the cells there are."""
    if n_cells < latent_dim + 1:
        raise ValueError(f"the paper's protocol needs more than latent_dim = {latent_dim} cells; got {n_cells}")
    return int(min(n_cells, max(int(percent * n_cells), 3 * latent_dim)))


def reference_clusters(log1p_counts, k: int, seed: int) -> np.ndarray:
    """The paper's reference labels: KMeans (k clusters, scikit-learn's defaults, seeded)
    of log1p counts (cells x genes, dense)."""
    return KMeans(n_clusters=k, random_state=seed).fit_predict(np.asarray(log1p_counts))


def batch_scores(latent, reference, *, seed: int) -> dict:
    """The package's ``_metrics`` of one minibatch: ``latent`` (cells x d, a sampled
    latent), ``reference`` (the reference clusters of the same cells). KMeans with k = d on
    the latent (seeded; the package's is not)."""
    latent = np.asarray(latent, dtype=np.float64)
    labels = KMeans(n_clusters=latent.shape[1], random_state=seed).fit_predict(latent)
    out = {"ARI": adjusted_mutual_info_score(reference, labels), "NMI": normalized_mutual_info_score(reference, labels)}
    if len(np.unique(labels)) < 2:  # the geometry scores need two clusters
        out.update(ASW=np.nan, CH=np.nan, DB=np.nan)
    else:
        out.update(ASW=silhouette_score(latent, labels), CH=calinski_harabasz_score(latent, labels),
                   DB=davies_bouldin_score(latent, labels))
    out["corr_score"] = correlation_score(latent)
    return {k: float(v) for k, v in out.items()}


def paper_scores(sample: Callable[[np.ndarray], np.ndarray], reference, *, batch_size: int, n_batches: int,
                 seed: int) -> dict:
    """The paper's protocol, averaged over ``n_batches`` minibatches of ``batch_size`` cells
    drawn with replacement (as the package draws them; ``np.random.default_rng(seed)``).
    ``sample(rows)``: a sampled latent of those cells; ``reference``: every cell's reference
    cluster. Returns the mean of each score (NaN batches left out) and ``n_batches``."""
    reference = np.asarray(reference)
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_batches):
        idx = rng.integers(0, len(reference), batch_size)
        rows.append(batch_scores(sample(idx), reference[idx], seed=seed + b))
    means = pd.DataFrame(rows).mean()
    return {**{m: float(means[m]) for m in METRICS}, "n_batches": n_batches}


def compare_protocols(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x family x protocol, the iVAE against the VAE on every metric (paired
    over seeds; Holm within each dataset's family of tests), and whether the paper's
    direction holds: ``yes`` (a significant difference its way), ``opposite`` (significant
    the other way) or ``not shown`` (equivalent or inconclusive). ``runs``: the long
    per-seed table (dataset, family, protocol, method, seed, METRICS)."""
    table = runs.assign(group=runs["dataset"] + " | " + runs["family"] + " | " + runs["protocol"])
    parts = []
    for dataset, part in table.groupby("dataset", sort=False):
        comp = compare_methods(part, [("iVAE", "VAE")], METRICS, dataset_column="group")
        if comp.empty:
            continue
        comp[["dataset", "family", "protocol"]] = comp["group"].str.split(" | ", regex=False, expand=True)
        parts.append(comp.drop(columns="group"))
    if not parts:
        return pd.DataFrame()
    comp = pd.concat(parts, ignore_index=True)
    comp["paper_direction"] = comp["metric"].map(PAPER_DIRECTION)
    significant = comp["verdict"].isin(["better", "worse"])
    agrees = np.sign(comp["mean"]) == comp["paper_direction"]
    comp["paper_holds"] = np.where(significant & agrees, "yes", np.where(significant, "opposite", "not shown"))
    first = ["dataset", "family", "protocol", "metric", "method", "reference"]
    return comp[first + [c for c in comp if c not in first]]


def pooled_protocols(runs: pd.DataFrame) -> pd.DataFrame:
    """Per family x protocol x metric, iVAE - VAE over datasets (verdicts.pooled: the mean
    of the datasets' mean differences with a t interval over datasets, uncorrected), and
    whether the interval places it the paper's way (``yes``), the other way (``opposite``)
    or neither (``not shown``)."""
    rows = []
    for (family, protocol), part in runs.groupby(["family", "protocol"], sort=False):
        for metric in METRICS:
            estimate = pooled(part, "iVAE", "VAE", metric)
            if estimate["datasets"]:
                rows.append({"family": family, "protocol": protocol, "metric": metric, **estimate})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    direction = out["metric"].map(PAPER_DIRECTION)
    above, below = out["low"] > 0, out["high"] < 0
    agrees = (above & (direction > 0)) | (below & (direction < 0))
    out["paper_holds"] = np.where(agrees, "yes", np.where(above | below, "opposite", "not shown"))
    return out
