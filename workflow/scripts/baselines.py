"""`baselines` rule: PCA, ICA, NMF and factor analysis of the log-normalised genes, fitted
with one seed per training seed and scored like the trained models (their rows of the
metrics table).

Above ``evaluation.max_cells`` labelled cells they are fitted and scored on a
label-stratified subsample of that size, read without densifying the atlas; each row's
``note`` says so.
"""

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from h5ad_parts import read_lognorm, read_obs, read_rows
from rule_io import atomic_path, log, setup_logging
from metrics import METRIC_COLUMNS, batches_for_mixing, embedding_metrics, known_reference, max_cells_param
from subsample import subsample_cells, subsample_note

#: FastICA and NMF iterations: enough for these data to converge (a baseline that does
#: not converge says so in the table's ``note``).
MAX_ITER = 5000


def baseline_embeddings(X_lognorm, n_components: int, *, seed: int = 0,
                        max_iter: int = MAX_ITER) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Four scikit-learn baselines with ``n_components`` components each, all seeded.

    ``X_lognorm``: cells x highly variable genes, log-normalised (non-negative), dense or
    sparse; it is densified once (float32: the stored precision, half the memory).

    - ``PCA``: scores on the top principal axes of the gene-centred data;
    - ``ICA``: FastICA, ``whiten="unit-variance"``, up to ``max_iter`` iterations;
    - ``NMF``: X ~ W H with W, H >= 0, ``init="nndsvda"``, up to ``max_iter`` iterations; W returned;
    - ``FA``: factor analysis, posterior means of the factors.

    Returns ``(embeddings, notes)``: ``{"PCA", "ICA", "NMF", "FA"}`` -> (cells x n_components)
    float64 arrays, and -> "" or what went wrong ("did not converge in N iterations"),
    which is also logged, not raised. Raises ValueError for negative or non-finite input or
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
        "ICA": FastICA(n_components=n_components, whiten="unit-variance", max_iter=max_iter, random_state=seed),
        "NMF": NMF(n_components=n_components, init="nndsvda", max_iter=max_iter, random_state=seed),
        "FA": FactorAnalysis(n_components=n_components, random_state=seed),
    }
    out, notes = {}, {}
    for name, model in models.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            out[name] = np.asarray(model.fit_transform(X), dtype=np.float64)
        notes[name] = ""
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                log.warning("%s baseline: %s", name, w.message)
                notes[name] = f"did not converge in {max_iter} iterations"
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out, notes


def main(snakemake) -> None:
    """PCA, ICA, NMF and FA with the iVAE's latent_dim components, fitted and scored (KMeans)
    with one seed, the training seed they sit beside, like the models; the atlas subsample
    with the evaluation seed: their rows."""
    import sklearn.cluster  # noqa: F401 - load scikit-learn's OpenMP runtime so that threadpool_limits sees it
    import sklearn.decomposition  # noqa: F401
    from threadpoolctl import threadpool_limits

    setup_logging(snakemake.log[0])
    fit_seed, seed = int(snakemake.params.fit_seed), int(snakemake.params.eval_seed)
    max_cells = max_cells_param(snakemake)
    obs = read_obs(snakemake.input.data)
    reference, kind, known = known_reference(snakemake.input.labels, obs.index)
    subsampled = max_cells is not None and len(reference) > max_cells
    if subsampled:  # never densify an atlas: read only the subsample's rows
        keep = subsample_cells(len(reference), max_cells, labels=reference, seed=seed)
        rows = np.flatnonzero(known)[keep]
        X, reference = read_rows(snakemake.input.data, rows), reference[keep]
        batch = batches_for_mixing(obs.iloc[rows], snakemake.params.batch_key, np.ones(len(rows), bool), kind)
        scale = f"fitted and scored on {subsample_note(len(rows), int(known.sum()), stratified=True)}"
        log.info("%d labelled cells, above max_cells %d: baselines %s", known.sum(), max_cells, scale)
    else:
        X, _ = read_lognorm(snakemake.input.data)
        X = X[known]
        batch = batches_for_mixing(obs, snakemake.params.batch_key, known, kind)
        scale = ""
    n_components = int(snakemake.params.n_components)
    with threadpool_limits(getattr(snakemake, "threads", None)):
        log.info("baselines PCA, ICA, NMF, FA with %d components on %d x %d, seed %d", n_components, *X.shape,
                 fit_seed)
        embeddings, notes = baseline_embeddings(X, n_components, seed=fit_seed)
        rows = [{"method": name, "seed": fit_seed,
                 **embedding_metrics(e, reference, seed=fit_seed, batch=batch, max_cells=max_cells),
                 "test_nelbo": np.nan, "test_iwae_nll": np.nan, "reference": kind,
                 "note": "; ".join(n for n in (notes[name], scale) if n)}
                for name, e in embeddings.items()]
    table = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    log.info("\n%s", table.to_string(index=False))
    with atomic_path(snakemake.output[0]) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
