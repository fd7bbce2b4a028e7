"""Verdicts that say what the data can: paired differences over seeds, their intervals,
Holm's correction within a family of comparisons, and equivalence by two one-sided tests.

For one dataset, a method is compared with a reference method on one metric through the
paired differences d_s = metric(method, seed s) - metric(reference, seed s) over the
seeds both were trained at (the KMeans and evaluation draws vary with the seed too, so
each pair shares everything but the model):

- the mean difference with its 95 % confidence interval, t with n - 1 degrees of freedom;
- a two-sided paired t-test of "no difference" (the p-value of ``scipy.stats.ttest_rel``);
- two one-sided tests (TOST) of "the difference lies outside ±margin": the larger of the
  two one-sided p-values;
- within a family (every comparison of one table: methods x metrics x datasets), both
  p-values are adjusted by Holm's step-down method, which controls the family-wise error
  rate at alpha without assuming independence.

The verdict, with the metric's direction (higher or lower is better):

- ``better`` / ``worse``: the adjusted difference p-value is below alpha (the interval,
  widened for the family, excludes 0), in the metric's good or bad direction;
- ``equivalent``: not that, and the adjusted TOST p-value is below alpha: the difference
  lies within ±margin;
- ``inconclusive``: neither; the data cannot tell the methods apart nor show them equal.

Across datasets (``pooled``): the mean of the datasets' mean differences with a t
interval over datasets (each dataset one draw of a random effect: the interval is wide
when datasets disagree), and the Wilcoxon signed-rank test over every dataset x seed
difference.

Analysis only: no plotting imports.
"""

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Equivalence margins: differences within ±margin count as no practical difference. ARI
#: and NMI in their own units (0.02: about one cell type of ten merged or split on a few
#: per cent of cells), the silhouettes likewise (scIB's rescaled ASW), the held-out
#: negative log-likelihood per cell in nats (0.5 % of a typical 700-nat cell), the
#: participation ratio in dimensions.
MARGINS = {"ARI": 0.02, "NMI": 0.02, "ASW": 0.02, "ASW_kmeans": 0.02, "test_nelbo": 3.5, "test_iwae_nll": 3.5,
           "participation_ratio": 0.5, "corr_score": 0.1}
#: +1: higher is better; -1: lower is better.
DIRECTION = {"ARI": 1, "NMI": 1, "ASW": 1, "ASW_kmeans": 1, "CH": 1, "DB": -1, "test_nelbo": -1,
             "test_iwae_nll": -1, "participation_ratio": 1, "corr_score": 1}
ALPHA = 0.05


@dataclass(frozen=True)
class Difference:
    """One paired comparison: ``mean`` of the differences, its 95 % interval, the paired
    t-test's ``p`` and the TOST ``p_equivalent`` at ``margin``, over ``n`` seeds."""

    mean: float
    sd: float
    n: int
    low: float
    high: float
    p: float
    p_equivalent: float
    margin: float


def paired_difference(a, b, margin: float, level: float = 0.95) -> Difference:
    """Paired differences ``a - b`` (equal-length, aligned by seed)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.shape != np.shape(b) or d.ndim != 1:
        raise ValueError(f"paired samples must be 1-D and of equal length; got {np.shape(a)} and {np.shape(b)}")
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        nan = float("nan")
        return Difference(float(d.mean()) if n else nan, nan, n, nan, nan, nan, nan, margin)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / np.sqrt(n)
    q = stats.t.ppf(0.5 + level / 2, n - 1)
    if se == 0:  # identical differences: certain, p 0 unless they are all exactly 0
        p = 1.0 if mean == 0 else 0.0
        p_eq = 0.0 if abs(mean) < margin else 1.0
        return Difference(mean, sd, n, mean, mean, p, p_eq, margin)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), n - 1))
    p_eq = tost_p(mean, se, n - 1, margin)
    return Difference(mean, sd, n, mean - q * se, mean + q * se, p, p_eq, margin)


def tost_p(mean: float, se: float, df: int, margin: float) -> float:
    """Two one-sided t-tests of H0: mean <= -margin and H0: mean >= +margin; the larger p
    (equivalence is shown when it is below alpha)."""
    p_low = stats.t.sf((mean + margin) / se, df)   # H0: mean <= -margin
    p_high = stats.t.cdf((mean - margin) / se, df)  # H0: mean >= +margin
    return float(max(p_low, p_high))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if not m:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def verdict(mean: float, p_adjusted: float, p_equivalent_adjusted: float, direction: int,
            alpha: float = ALPHA) -> str:
    """better / worse / equivalent / inconclusive (see the module's docstring)."""
    if np.isfinite(p_adjusted) and p_adjusted < alpha:
        return "better" if mean * direction > 0 else "worse"
    if np.isfinite(p_equivalent_adjusted) and p_equivalent_adjusted < alpha:
        return "equivalent"
    return "inconclusive"


def compare_methods(table: pd.DataFrame, pairs, metrics, *, dataset_column: str = "dataset",
                    margins: dict | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """Every (method, reference) pair of ``pairs`` x metric x dataset of a long ``table``
    (columns dataset, method, seed and the metrics): one row each with the difference,
    its interval, both p-values, their Holm adjustments over the whole family (every row
    of the result) and the verdict."""
    margins = {**MARGINS, **(margins or {})}
    rows = []
    for dataset, part in table.groupby(dataset_column, sort=False):
        for method, reference in pairs:
            a = part[part["method"] == method].set_index("seed")
            b = part[part["method"] == reference].set_index("seed")
            seeds = a.index.intersection(b.index)
            for metric in metrics:
                if metric not in part:
                    continue
                diff = paired_difference(a.loc[seeds, metric], b.loc[seeds, metric], margins.get(metric, np.nan))
                if diff.n == 0:  # e.g. a likelihood the reference (PCA) has none of
                    continue
                rows.append({dataset_column: dataset, "method": method, "reference": reference, "metric": metric,
                             **asdict(diff)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = holm(out["p"])
    out["p_equivalent_holm"] = holm(out["p_equivalent"])
    out["verdict"] = [verdict(r.mean, r.p_holm, r.p_equivalent_holm, DIRECTION.get(r.metric, 1), alpha)
                      for r in out.itertuples()]
    return out


def pooled(table: pd.DataFrame, method: str, reference: str, metric: str, *,
           dataset_column: str = "dataset", level: float = 0.95) -> dict:
    """Across datasets: the mean of the per-dataset mean differences with a t interval over
    datasets, and the signed-rank test over every dataset x seed difference."""
    diffs, means = [], []
    for _, part in table.groupby(dataset_column, sort=False):
        a = part[part["method"] == method].set_index("seed")[metric]
        b = part[part["method"] == reference].set_index("seed")[metric]
        d = (a - b).dropna()
        if len(d):
            diffs.append(d.to_numpy())
            means.append(float(d.mean()))
    k = len(means)
    nan = float("nan")
    if k == 0:
        return {"datasets": 0, "pairs": 0, "mean": nan, "low": nan, "high": nan, "p_signed_rank": nan}
    mean = float(np.mean(means))
    if k > 1:
        half = stats.t.ppf(0.5 + level / 2, k - 1) * np.std(means, ddof=1) / np.sqrt(k)
        low, high = mean - half, mean + half
    else:
        low = high = nan
    every = np.concatenate(diffs)
    p = float(stats.wilcoxon(every).pvalue) if len(every) > 1 and np.any(every != 0) else nan
    return {"datasets": k, "pairs": len(every), "mean": mean, "low": float(low), "high": float(high),
            "p_signed_rank": p}
