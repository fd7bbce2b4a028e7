"""Cell quality control: per-cell metrics, thresholds, and which cells fail them.

Two ways to set thresholds (``preprocess.qc``):

- ``fixed``: detected genes in [min_genes, max_genes] and mitochondrial % <= max_pct_mt,
  the classic PBMC recipe (the workflow's default, tuned for PBMCs);
- ``mad``: thresholds from the data, as in the single-cell best-practices book (Heumos et
  al., Nat Rev Genet 2023; Germain et al., Genome Biol 2020): a cell is an outlier if
  log1p(total counts), log1p(detected genes) or the % of counts in its 20 most-expressed
  genes lies more than ``nmads`` median absolute deviations (MAD, unscaled) from the
  dataset's median, or its mitochondrial % more than ``nmads_mt`` MADs above the median.
  ``min_genes`` stays as an absolute floor; ``max_genes`` and ``max_pct_mt`` are not used.

Optionally, doublets are called with scanpy's Scrublet (``preprocess.doublets: scrublet``)
on the cells that pass.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rule_io import log

#: Number of most-expressed genes whose share of a cell's counts is a QC metric (scanpy's name).
TOP_N = 20
TOP_COLUMN = f"pct_counts_in_top_{TOP_N}_genes"
#: Per-metric bounds: (metric, lower, upper, basis); NaN = no bound on that side.
BOUND_COLUMNS = ["metric", "lower", "upper", "basis"]


def top_n_percent(X: sp.csr_matrix, n: int = TOP_N, *, chunk: int = 1 << 16) -> np.ndarray:
    """% of each cell's counts in its ``n`` highest-count genes (100 when it has <= n genes).

    Works on the stored values of row chunks (sorted within each row), never densifying.
    """
    out = np.empty(X.shape[0])
    for lo in range(0, X.shape[0], chunk):
        hi = min(lo + chunk, X.shape[0])
        a, b = X.indptr[lo], X.indptr[hi]
        values = np.asarray(X.data[a:b], dtype=np.float64)
        lengths = np.diff(X.indptr[lo:hi + 1])
        rows = np.repeat(np.arange(hi - lo), lengths)
        order = np.lexsort((-values, rows))  # by row, largest value first
        rank = np.arange(b - a) - np.repeat(X.indptr[lo:hi] - a, lengths)
        top = np.bincount(rows, weights=np.where(rank < n, values[order], 0.0), minlength=hi - lo)
        total = np.bincount(rows, weights=values, minlength=hi - lo)
        out[lo:hi] = np.divide(100 * top, total, out=np.zeros(hi - lo), where=total > 0)
    return out


def cell_metrics(X: sp.csr_matrix, mt_mask: np.ndarray, *, top_genes: bool = False) -> pd.DataFrame:
    """Per-cell QC metrics with scanpy's column names, computed without copying X.

    ``n_genes_by_counts``, ``total_counts``, ``total_counts_mt``, ``pct_counts_mt``, and
    with ``top_genes`` also ``pct_counts_in_top_20_genes``.
    """
    total = np.asarray(X.sum(axis=1)).ravel()
    total_mt = np.asarray(X[:, np.flatnonzero(mt_mask)].sum(axis=1)).ravel()
    pct_mt = np.divide(100 * total_mt, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0)
    metrics = pd.DataFrame({
        "n_genes_by_counts": np.diff(X.indptr),
        "total_counts": total,
        "total_counts_mt": total_mt,
        "pct_counts_mt": pct_mt,
    })
    if top_genes:
        metrics[TOP_COLUMN] = top_n_percent(X)
    return metrics


def mad_bounds(values, nmads: float, *, log1p: bool = False) -> tuple[float, float]:
    """median -/+ nmads * MAD of ``values`` (MAD unscaled, as scipy's median_abs_deviation).

    With ``log1p`` the bounds are computed on log1p(values) and returned on the original
    scale, so that they can be compared with (and drawn on) the metric itself. A metric
    without spread (MAD 0) gets no bounds (NaN).
    """
    v = np.log1p(values) if log1p else np.asarray(values, dtype=np.float64)
    median = float(np.median(v))
    mad = float(np.median(np.abs(v - median)))
    if mad == 0:  # no spread (e.g. no mitochondrial counts at all): a bound would remove any deviation
        return float("nan"), float("nan")
    low, high = median - nmads * mad, median + nmads * mad
    return (float(np.expm1(low)), float(np.expm1(high))) if log1p else (low, high)


def qc_bounds(metrics: pd.DataFrame, *, qc: str, min_genes: int, max_genes: int | None,
              max_pct_mt: float | None, nmads: float = 5.0, nmads_mt: float = 3.0) -> pd.DataFrame:
    """The bounds each cell must lie within, one row per metric (see the module doc)."""
    nan = float("nan")
    if qc == "fixed":
        rows = [("n_genes_by_counts", min_genes, max_genes if max_genes is not None else nan,
                 "fixed: min_genes" + (", max_genes" if max_genes is not None else ""))]
        if max_pct_mt is not None:
            rows.append(("pct_counts_mt", nan, max_pct_mt, "fixed: max_pct_mt"))
    elif qc == "mad":
        basis = f"{nmads:g} MADs of log1p"
        low, high = mad_bounds(metrics["n_genes_by_counts"], nmads, log1p=True)
        rows = [("n_genes_by_counts", max(low, min_genes), high, f"{basis}; floor min_genes={min_genes}")]
        rows.append(("total_counts", *mad_bounds(metrics["total_counts"], nmads, log1p=True), basis))
        rows.append((TOP_COLUMN, *mad_bounds(metrics[TOP_COLUMN], nmads), f"{nmads:g} MADs"))
        rows.append(("pct_counts_mt", nan, mad_bounds(metrics["pct_counts_mt"], nmads_mt)[1],
                     f"{nmads_mt:g} MADs above the median"))
    else:
        raise ValueError(f"qc must be 'fixed' or 'mad', not {qc!r}")
    return pd.DataFrame(rows, columns=BOUND_COLUMNS)


def qc_failures(metrics: pd.DataFrame, bounds: pd.DataFrame) -> pd.Series:
    """Why each cell fails QC: e.g. ``"low n_genes_by_counts; high pct_counts_mt"``, ``""`` if it passes."""
    reasons = [[] for _ in range(len(metrics))]
    for row in bounds.itertuples(index=False):
        values = metrics[row.metric].to_numpy(dtype=np.float64)
        for side, bad in (("low", values < row.lower), ("high", values > row.upper)):
            for i in np.flatnonzero(bad):  # comparisons with NaN (no bound) are False
                reasons[i].append(f"{side} {row.metric}")
    return pd.Series(["; ".join(r) for r in reasons], index=metrics.index, dtype=object)


def scrublet_doublets(counts: sp.csr_matrix, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Scrublet (scanpy's port; Wolock et al. 2019) on raw counts of cells x genes.

    Returns ``(doublet score, predicted doublet, threshold)``. The threshold is Scrublet's
    automatic one (scikit-image's threshold_minimum of the simulated doublets' scores); a
    cell is a doublet when its score is above it. Where Scrublet finds no threshold, it is
    NaN and no cell is called a doublet (logged as a warning).
    """
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=counts)
    sc.pp.scrublet(adata, random_state=seed, verbose=False)
    threshold = float(adata.uns["scrublet"].get("threshold", np.nan))
    if not np.isfinite(threshold):
        log.warning("Scrublet found no doublet-score threshold (its simulated scores are not bimodal): "
                    "no cell is called a doublet")
    predicted = adata.obs["predicted_doublet"].to_numpy(dtype=bool)
    return adata.obs["doublet_score"].to_numpy(dtype=np.float64), predicted, threshold
