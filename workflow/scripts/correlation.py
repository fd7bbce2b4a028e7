"""How correlated the components of an embedding are, how many dimensions it effectively
uses, and what chance or the architecture alone would give: the analysis behind the latent
correlation and spectrum figures. NumPy, and numba for shuffling long columns (no plotting, no
torch).

Nulls for the mean |off-diagonal r| of a latent (cells x d):

- ``permutation_null`` ("before" the interpretative module): each component permuted
  independently across cells, which keeps every component's distribution and removes any
  dependence between them: what correlations chance gives at this number of cells;
- ``random_module_null`` ("after"): ld = W2 (W1 z + b1) + b2 with an untrained module of the
  trained one's shape, initialised as PyTorch initialises ``nn.Linear`` (weights and
  biases uniform on +-1/sqrt(fan_in)), applied to the same z. ld is an affine image of an
  i_dim-wide code, so its components are correlated whatever training does: this null is
  what the architecture alone gives;
- ``rank_k_reference``: the best rank-k linear reconstruction of z (its top k principal
  components), the most correlation a rank-k bottleneck needs to keep z's variance.
"""

import numpy as np

from blocked_shuffle import blocked_shuffle


def as_embedding(x, name: str = "embedding") -> np.ndarray:
    """``x`` as a float64 cells x components array; ValueError unless 2-D, non-empty and finite."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (cells x components); got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values ({(~np.isfinite(x)).sum()} entries).")
    return x


def correlation_matrix(x: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns of ``x`` (cells x components).

    A constant column has no defined correlation: its row and column are NaN (the
    diagonal stays 1), rather than a division-by-zero warning.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    return _correlation_from_products(centred.T @ centred, np.sqrt((centred**2).sum(0)))


def mean_abs_offdiagonal(corr: np.ndarray) -> float:
    """Mean |r| over the off-diagonal entries, ignoring undefined (NaN) ones."""
    off = corr[~np.eye(corr.shape[0], dtype=bool)]
    return float(np.nanmean(np.abs(off))) if off.size else float("nan")


def correlation_score(latent) -> float:
    """The iVAE paper's Pearson correlation score of a latent (cells x d components).

        score = (1/d) * sum_i sum_{j != i} |r_ij|,   r = Pearson correlation of the columns,

    the mean over components of their summed |correlation| with every other component:
    0 for uncorrelated components, d - 1 when all are perfectly (anti-)correlated. Higher
    means more correlated components; neither direction is better in itself. A constant
    component has no defined correlation: it counts as |r| = 0. One component scores 0.
    """
    latent = as_embedding(latent, "latent")
    d = latent.shape[1]
    corr = np.abs(correlation_matrix(latent))
    off = ~np.eye(d, dtype=bool)
    return float(np.nan_to_num(corr[off], nan=0.0).sum() / d)


def covariance_spectrum(latent) -> np.ndarray:
    """Eigenvalues of the covariance of the columns of ``latent``, largest first (>= 0)."""
    latent = np.asarray(latent, dtype=np.float64)
    eigenvalues = np.linalg.eigvalsh(np.atleast_2d(np.cov(latent, rowvar=False)))
    return np.clip(eigenvalues[::-1], 0.0, None)


def participation_ratio(latent) -> float:
    """Effective number of dimensions: (sum of eigenvalues)^2 / sum of squared eigenvalues
    of the covariance; 1 when all variance lies on one axis, d when spread evenly over d."""
    eigenvalues = covariance_spectrum(latent)
    total = eigenvalues.sum()
    return float(total**2 / np.square(eigenvalues).sum()) if total > 0 else float("nan")


BLOCKED_SHUFFLE_MIN_CELLS = 1 << 18
"""From this many cells on, ``permutation_null`` shuffles with ``blocked_shuffle``."""


def permutation_null(latent, n_draws: int, *, seed: int = 0,
                     blocked_from_cells: int = BLOCKED_SHUFFLE_MIN_CELLS) -> np.ndarray:
    """Mean |off-diagonal r| of ``latent`` with each column permuted independently, per draw.

    Permuting a column changes neither its mean nor its norm, so the columns are centred and
    their norms taken once, and each draw costs the shuffles and one cross-product (the
    values are those of ``correlation_matrix`` of the permuted columns, to float rounding).

    Below ``blocked_from_cells`` cells every column is shuffled in turn by NumPy
    (``rng.shuffle``, the shuffles ``rng.permutation`` makes). From that size on, where a
    column no longer fits in a core's L2 and NumPy's shuffle costs more per cell the more
    cells there are, the columns are shuffled by ``blocked_shuffle`` (as uniform, and flat
    in cost per cell), and the first column is left in place: the correlation matrix does
    not change when every column is permuted by one common permutation, so permuting
    columns 2..d independently and uniformly gives the same distribution of draws as
    permuting all d. Both give the same null distribution; which one a run used only
    decides which draws a seed gives, and every dataset under the threshold keeps the draws
    it had before the blocked path existed."""
    latent = np.asarray(latent, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centred = np.asfortranarray(latent - latent.mean(0))  # columns contiguous: each shuffled in place
    norm = np.sqrt((centred**2).sum(0))
    shuffled = np.empty_like(centred, order="F")
    blocked = centred.shape[0] >= blocked_from_cells
    if blocked:
        shuffled[:, 0] = centred[:, 0]
    out = np.empty(n_draws)
    for i in range(n_draws):
        for j in range(1 if blocked else 0, centred.shape[1]):
            if blocked:
                blocked_shuffle(centred[:, j], shuffled[:, j], rng)
            else:  # the shuffles rng.permutation(column) makes, column by column
                shuffled[:, j] = centred[:, j]
                rng.shuffle(shuffled[:, j])
        out[i] = mean_abs_offdiagonal(_correlation_from_products(shuffled.T @ shuffled, norm))
    return out


def _correlation_from_products(products: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """``correlation_matrix`` from the centred columns' cross-products and norms."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = products / np.outer(norm, norm)
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return corr


def torch_linear_init(rng: np.random.Generator, fan_in: int, fan_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight fan_out x fan_in, bias) as ``torch.nn.Linear`` draws them by default:
    kaiming_uniform_(a=sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    and the same bound for the bias."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_out, fan_in)), rng.uniform(-bound, bound, fan_out)


def random_module(latent, i_dim: int, rng: np.random.Generator) -> np.ndarray:
    """``latent`` through an untrained interpretative module: latent_decoder(latent_encoder(z))."""
    latent = np.asarray(latent, dtype=np.float64)
    d = latent.shape[1]
    w1, b1 = torch_linear_init(rng, d, i_dim)
    w2, b2 = torch_linear_init(rng, i_dim, d)
    return (latent @ w1.T + b1) @ w2.T + b2


def random_module_null(latent, i_dim: int, n_draws: int, *, seed: int = 0) -> np.ndarray:
    """Mean |off-diagonal r| of ``latent`` through ``n_draws`` untrained modules of width ``i_dim``.

    The module is affine, ld = z A^T + c with A = W2 W1, so the covariance of ld is
    A cov(z) A^T: each draw is computed from z's covariance (d x d), not by passing every
    cell through the module, and equals ``correlation_matrix(random_module(...))`` to float
    rounding with the same draws of the weights (tested)."""
    latent = np.asarray(latent, dtype=np.float64)
    centred = latent - latent.mean(0)
    products = centred.T @ centred
    rng = np.random.default_rng(seed)
    out = np.empty(n_draws)
    d = latent.shape[1]
    for i in range(n_draws):
        w1, _ = torch_linear_init(rng, d, i_dim)  # the draws random_module makes, in its order
        w2, _ = torch_linear_init(rng, i_dim, d)
        a = w2 @ w1
        cov = a @ products @ a.T
        out[i] = mean_abs_offdiagonal(_correlation_from_products(cov, np.sqrt(np.clip(np.diag(cov), 0.0, None))))
    return out


def rank_k_reference(latent, k: int) -> float:
    """Mean |off-diagonal r| of the best rank-``k`` reconstruction of ``latent`` (its
    projection on its top ``k`` principal axes)."""
    latent = np.asarray(latent, dtype=np.float64)
    centred = latent - latent.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return mean_abs_offdiagonal(correlation_matrix(centred @ vt[:k].T @ vt[:k]))


def null_summary(observed: float, null: np.ndarray) -> dict:
    """Observed value against its null draws: the null's mean, s.d., 2.5 and 97.5 %
    quantiles, and the observed value's percentile in it (% of draws <= observed)."""
    return {"observed": float(observed), "null_mean": float(null.mean()), "null_sd": float(null.std(ddof=1)),
            "null_low": float(np.quantile(null, 0.025)), "null_high": float(np.quantile(null, 0.975)),
            "percentile": float(100.0 * (null <= observed).mean()), "n_draws": len(null)}
