"""`scib` rule: scIB's batch-correction and bio-conservation metrics from the scverse
library scib-metrics, for a dataset with a batch key and cell-type labels.

Embeddings scored, at every training seed: each trained model's posterior-mean latent z
(the iVAE conditioned on the batch, its controls, and the iVAE without covariates); the
**negative control**, PCA of the log-normalised highly variable genes with latent_dim
components (uncorrected); the **positive control**, Harmony (harmonypy) on that PCA with
the batch as its covariate, seeded with the training seed.

Metrics (scib_metrics.benchmark.Benchmarker, defaults of scib-metrics 0.5.10):
batch correction: BRAS (the batch-removal adapted silhouette that replaces scIB's batch
ASW), iLISI, kBET per label, graph connectivity, PCR comparison (variance explained by the
batch, against the PCA); bio conservation: isolated labels, KMeans NMI and ARI, label
silhouette, cLISI; and the library's aggregates (Batch correction, Bio conservation,
Total: 0.4 x batch + 0.6 x bio), unscaled (``min_max_scale=False``), so that values are
comparable across seeds and datasets.

Writes results/{dataset}/scib.tsv (one row per embedding and seed) and scib_summary.tsv
(mean and s.d. over seeds). Above ``evaluation.max_cells`` cells everything runs on a
label-stratified subsample of that many cells.
"""

import numpy as np
import pandas as pd

from h5ad_parts import matrix_shape, read_lognorm, read_obs, read_obsm, read_rows
from metrics import known_reference
from rule_io import InputError, atomic_path, log, setup_logging
from subsample import subsample_cells

NEGATIVE, POSITIVE = "PCA (uncorrected)", "Harmony on PCA"
#: The library's aggregate scores.
AGGREGATES = ["Batch correction", "Bio conservation", "Total"]


def harmony(pca: np.ndarray, batch: np.ndarray, seed: int) -> np.ndarray:
    """Harmony's corrected PCA (cells x components), the batch as its covariate."""
    import harmonypy

    meta = pd.DataFrame({"batch": pd.Categorical(np.asarray(batch).astype(str))})
    result = harmonypy.run_harmony(np.asarray(pca, dtype=np.float64), meta, ["batch"], random_state=seed,
                                   verbose=False)
    corrected = np.asarray(result.Z_corr)
    return corrected.T if corrected.shape[0] != pca.shape[0] else corrected


def scib_scores(embeddings: dict[str, np.ndarray], batch, labels, *, pre_integrated: str,
                n_jobs: int = 1) -> pd.DataFrame:
    """Benchmarker's unscaled results: one row per embedding, a column per metric and aggregate."""
    import anndata as ad
    from scib_metrics.benchmark import Benchmarker

    n = len(labels)
    keys = {name: f"X_{i}" for i, name in enumerate(embeddings)}
    adata = ad.AnnData(X=np.zeros((n, 1), np.float32),
                       obs=pd.DataFrame({"batch": pd.Categorical(np.asarray(batch).astype(str)),
                                         "label": pd.Categorical(np.asarray(labels).astype(str))},
                                        index=[str(i) for i in range(n)]),
                       obsm={keys[name]: np.asarray(e, dtype=np.float32) for name, e in embeddings.items()})
    bench = Benchmarker(adata, "batch", "label", list(keys.values()), pre_integrated_embedding_obsm_key=keys[pre_integrated],
                        n_jobs=n_jobs, progress_bar=False)
    bench.benchmark()
    results = bench.get_results(min_max_scale=False)
    results = results.drop(index="Metric Type", errors="ignore").astype(float)
    results.index = [next(name for name, key in keys.items() if key == index) for index in results.index]
    return results.rename_axis("embedding").reset_index()


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and s.d. over seeds per embedding, in first-seen order."""
    scores = [c for c in table.columns if c not in ("embedding", "seed")]
    grouped = table.groupby("embedding", sort=False)[scores]
    out = grouped.mean().join(grouped.std(ddof=1).add_suffix("_sd"))
    out.insert(0, "seeds", table.groupby("embedding", sort=False)["seed"].nunique())
    return out.reset_index()


def main(snakemake) -> None:
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    setup_logging(snakemake.log[0])
    params, inputs = snakemake.params, snakemake.input
    what = f"dataset '{snakemake.wildcards.dataset}'"
    obs = read_obs(inputs.data)
    reference, kind, known = known_reference(inputs.labels, obs.index)
    if kind != "labels":
        raise InputError(f"{what}: the scIB metrics need cell-type labels (label_key).")
    batch_all = obs[params.batch_key].astype(str).to_numpy()
    rows = np.flatnonzero(known)
    if params.max_cells is not None and len(rows) > params.max_cells:
        keep = subsample_cells(len(rows), int(params.max_cells), labels=reference, seed=int(params.eval_seed))
        rows, reference = rows[keep], reference[keep]
        X = read_rows(inputs.data, rows)
        log.info("%d labelled cells, above max_cells %d: scored on a label-stratified subsample", known.sum(),
                 params.max_cells)
    else:
        X, _ = read_lognorm(inputs.data)
        X = X[rows]
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    batch = batch_all[rows]
    if len(set(batch)) < 2:
        raise InputError(f"{what}: batch_key '{params.batch_key}' has one value among the labelled cells.")
    runs = {(m, int(s)): path for (m, s), path in zip(params.runs, inputs.embeddings, strict=True)}
    frames = []
    with threadpool_limits(getattr(snakemake, "threads", None)):
        for seed in sorted({s for _, s in runs}):
            pca = PCA(n_components=int(params.n_components), random_state=seed).fit_transform(X)
            embeddings = {f"{m} z": read_obsm(path, "X_ivae", rows) for (m, s), path in runs.items() if s == seed}
            for name in [n for n, e in embeddings.items() if not np.isfinite(e).all()]:
                log.warning("%s seed %d: its latent is not finite (training diverged); left out", name, seed)
                del embeddings[name]
            embeddings[NEGATIVE] = pca
            embeddings[POSITIVE] = harmony(pca, batch, seed)
            log.info("seed %d: scIB metrics of %d embeddings on %d cells", seed, len(embeddings), len(rows))
            frames.append(scib_scores(embeddings, batch, reference, pre_integrated=NEGATIVE,
                                      n_jobs=int(getattr(snakemake, "threads", 1) or 1)).assign(seed=seed))
    table = pd.concat(frames, ignore_index=True)
    table = table[["embedding", "seed", *[c for c in table.columns if c not in ("embedding", "seed")]]]
    summary = summarise(table)
    log.info("\n%s", summary.round(3).to_string(index=False))
    for frame, path in ((table, snakemake.output.table), (summary, snakemake.output.summary)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
