"""Scanpy preprocessing: QC, normalisation, highly variable genes, raw counts kept.

Output contract (results/{dataset}/preprocessed.h5ad):
- cells that pass QC (qc.py: fixed or MAD thresholds, optionally Scrublet doublets), the
  highly variable genes;
- ``layers["counts"]``: raw integer counts (what the iVAE models);
- ``X``: log1p of counts normalised to ``target_sum`` per cell (library size over all genes);
- ``.raw`` (unless ``keep_raw`` is false): the log-normalised values of every gene that
  passed QC (for marker genes);
- ``obs``: the input's columns plus scanpy's QC metrics; ``uns["preprocess"]``: parameters,
  ``uns["qc"]``: the QC bounds and how many cells each removed.

Atlases: the input is read a chunk of ``chunk_cells`` cells at a time (stream.py) in four
passes (QC metrics of every cell; gene statistics of the kept cells; the clipped sums of
``seurat_v3``; the output, written to the h5ad as it is made), so memory holds one chunk,
per-cell and per-gene vectors, never the whole matrix. The passes log their progress with
rate and time left. The result is the same whatever the chunk size (tested).

Beside it, results/{dataset}/qc.tsv has every input cell's QC metrics and why it failed
(``qc_fail``, empty for kept cells), and qc_bounds.tsv the bounds; the QC figure draws both.
"""


import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common_io import (InputError, atomic_path, covariate_codes, log, setup_logging, software_versions,
                       write_cell_table)
from qc import cell_metrics, qc_bounds, qc_failures, scrublet_doublets
from stream import H5adWriter, MemoryCounts, clipped_sums, gene_sums, open_counts, row_sums

#: Span of seurat_v3's loess of log variance on log mean (scanpy's default).
LOESS_SPAN = 0.3


def log_normalise_inplace(X: sp.csr_matrix, target_sum: float, totals: np.ndarray | None = None) -> None:
    """X.data <- log1p(x / cell total * target_sum), row by row chunks, in place; the
    cell totals are X's row sums unless given (those of more genes than X holds)."""
    if totals is None:
        totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    step = 1 << 16
    for lo in range(0, X.shape[0], step):
        hi = min(lo + step, X.shape[0])
        a, b = X.indptr[lo], X.indptr[hi]
        X.data[a:b] *= np.repeat(scale[lo:hi], np.diff(X.indptr[lo:hi + 1])).astype(X.data.dtype)
        np.log1p(X.data[a:b], out=X.data[a:b])


class Progress:
    """Logs how far a pass over the cells has got, with its rate and the time left (at most
    every ``every`` seconds, and at the end)."""

    def __init__(self, name: str, total: int, every: float = 10.0):
        self.name, self.total, self.every = name, total, every
        self.start = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("nan")
        log.info("%s: %s of %s cells (%.0f%%), %s cells/s, %.0f s left", self.name, f"{done:,}",
                 f"{self.total:,}", 100 * done / max(self.total, 1), f"{rate:,.0f}", left)


def qc_decision(metrics: pd.DataFrame, *, qc: str, min_genes: int, max_genes: int | None, max_pct_mt: float | None,
                qc_nmads: float = 5.0, qc_nmads_mt: float = 3.0, dataset: str = "dataset", n_mt: int = 0,
                mt_prefix: str = "MT-"):
    """From every cell's QC metrics: ``(QC table, bounds, mask of the kept cells)``.
    InputError when no cell is left."""
    bounds = qc_bounds(metrics, qc=qc, min_genes=min_genes, max_genes=max_genes, max_pct_mt=max_pct_mt,
                       nmads=qc_nmads, nmads_mt=qc_nmads_mt)
    table = metrics.assign(qc_fail=qc_failures(metrics, bounds))
    keep = (table["qc_fail"] == "").to_numpy()
    log.info("QC (%s): kept %d of %d cells; %d %s* genes; bounds:\n%s", qc, keep.sum(), len(keep), n_mt, mt_prefix,
             bounds.to_string(index=False))
    if not keep.any():
        raise InputError(f"dataset '{dataset}': no cells left after QC ({qc}; min_genes={min_genes}, "
                         f"max_genes={max_genes}, max_pct_mt={max_pct_mt}); relax preprocess.")
    return table, bounds, keep


def remove_doublets(X: sp.csr_matrix, table: pd.DataFrame, bounds: pd.DataFrame, keep: np.ndarray, *,
                    dataset: str = "dataset") -> np.ndarray:
    """Scrublet on ``X``, the counts of the kept cells: marks the doublets in ``table``,
    adds the threshold to ``bounds``; returns which of the kept cells are doublets."""
    table["doublet_score"], table["predicted_doublet"] = np.nan, False
    scores, predicted, threshold = scrublet_doublets(X)
    table.loc[keep, "doublet_score"], table.loc[keep, "predicted_doublet"] = scores, predicted
    bounds.loc[len(bounds)] = ["doublet_score", np.nan, threshold, "Scrublet's automatic threshold"]
    log.info("Scrublet: %d of %d QC-passed cells called doublets (score > %.3f)", predicted.sum(), len(predicted),
             threshold)
    if predicted.all():
        raise InputError(f"dataset '{dataset}': Scrublet called every cell a doublet.")
    table.loc[table.index[keep][predicted], "qc_fail"] = "doublet"
    return predicted


def mt_genes(var: pd.DataFrame, mt_prefix: str) -> np.ndarray:
    """Mitochondrial genes: names starting with ``mt_prefix`` in any case (MT- human, mt- mouse)."""
    return np.asarray(var.index.str.upper().str.startswith(mt_prefix.upper()), dtype=bool)


def quality_control(X: sp.csr_matrix, obs, var, *, qc: str, min_genes: int, max_genes: int | None,
                    max_pct_mt: float | None, mt_prefix: str, qc_nmads: float = 5.0, qc_nmads_mt: float = 3.0,
                    doublets: str | None = None, dataset: str = "dataset"):
    """Cell QC of an in-memory matrix (qc.py): ``(X of the kept cells, their obs with the QC
    metrics, the QC table of every cell, the bounds)``. Adds ``var["mt"]``. InputError when
    no cell is left."""
    var["mt"] = mt_genes(var, mt_prefix)
    metrics = cell_metrics(X, var["mt"].to_numpy(), top_genes=qc == "mad")
    metrics.index = obs.index
    table, bounds, keep = qc_decision(metrics, qc=qc, min_genes=min_genes, max_genes=max_genes, max_pct_mt=max_pct_mt,
                                      qc_nmads=qc_nmads, qc_nmads_mt=qc_nmads_mt, dataset=dataset,
                                      n_mt=int(var["mt"].sum()), mt_prefix=mt_prefix)
    if not keep.all():
        X = X[keep]
    if doublets == "scrublet":
        predicted = remove_doublets(X, table, bounds, keep, dataset=dataset)
        X = X[~predicted]
        keep = (table["qc_fail"] == "").to_numpy()
    obs = obs.assign(**{c: metrics[c].to_numpy() for c in metrics})[keep]
    return X, obs, table, bounds


def seurat_v3(sums: np.ndarray, sumsq: np.ndarray, n: np.ndarray, clipped, n_top_genes: int) -> pd.DataFrame:
    """scanpy's ``highly_variable_genes(flavor="seurat_v3")`` from sums over cells.

    ``sums``, ``sumsq``: (batches x genes) sums of counts and of squared counts; ``n``:
    cells per batch; ``clipped(clip_val)``: (batches x genes) sums and sums of squares of
    the counts clipped at ``clip_val`` (batches x genes), a pass over the cells. As scanpy:
    per batch, mean and variance (ddof 1), a loess (span 0.3, degree 2) of log10 variance
    on log10 mean over the non-constant genes, reg_std = sqrt(10^fit), counts clipped at
    reg_std sqrt(n) + mean, and the normalised variance of the clipped counts; genes
    ranked by it in each batch, then by the median rank among the batches where they are
    in the top ``n_top_genes``, ties broken by how many batches. Returns the columns
    highly_variable, highly_variable_rank, highly_variable_nbatches, means, variances
    (over all cells) and variances_norm (the mean over batches).
    """
    from skmisc.loess import loess

    def mean_var(s, s2, m):
        mean = s / m
        var = s2 / m - mean ** 2
        return mean, var * m / (m - 1) if m != 1 else var

    clip_val = np.zeros_like(sums)
    stats = []
    for b in range(len(n)):
        mean, var = mean_var(sums[b], sumsq[b], n[b])
        not_const = var > 0
        fitted = np.zeros(sums.shape[1])
        model = loess(np.log10(mean[not_const]), np.log10(var[not_const]), span=LOESS_SPAN, degree=2)
        model.fit()
        fitted[not_const] = model.outputs.fitted_values
        reg_std = np.sqrt(10 ** fitted)
        clip_val[b] = reg_std * np.sqrt(n[b]) + mean
        stats.append((mean, reg_std))
    clipped_sum, clipped_sumsq = clipped(clip_val)
    norm_vars = np.stack([(1 / ((n[b] - 1) * np.square(reg_std))) * (
        n[b] * np.square(mean) + clipped_sumsq[b] - 2 * clipped_sum[b] * mean)
        for b, (mean, reg_std) in enumerate(stats)])
    ranks = np.argsort(np.argsort(-norm_vars, axis=1), axis=1).astype(np.float32)
    nbatches = (ranks < n_top_genes).sum(axis=0)
    ranks[ranks >= n_top_genes] = np.nan
    median_rank = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
    means, variances = mean_var(sums.sum(0), sumsq.sum(0), n.sum())
    df = pd.DataFrame({"highly_variable_rank": median_rank, "highly_variable_nbatches": nbatches, "means": means,
                       "variances": variances, "variances_norm": norm_vars.mean(axis=0)})
    order = df.sort_values(["highly_variable_rank", "highly_variable_nbatches"], ascending=[True, False],
                           na_position="last").index
    df["highly_variable"] = False
    df.loc[order[:n_top_genes], "highly_variable"] = True
    return df


class _MemorySink:
    """Collects the output's row blocks and makes an AnnData of them (the in-memory result)."""

    def __init__(self, keep_raw: bool):
        self.X, self.counts, self.raw = [], [], [] if keep_raw else None

    def append(self, X, layers, raw=None):
        self.X.append(X)
        self.counts.append(layers["counts"])
        if self.raw is not None:
            self.raw.append(raw)

    def finish(self, obs, var, uns, raw_var=None):
        import anndata as ad

        out = ad.AnnData(X=sp.vstack(self.X, format="csr"), obs=obs, var=var, uns=uns)
        out.layers["counts"] = sp.vstack(self.counts, format="csr")
        if self.raw is not None:
            out.raw = ad.AnnData(X=sp.vstack(self.raw, format="csr"), var=raw_var)
        return out


def _preprocess(source, sink_factory, *, min_genes: int, min_cells: int, max_genes: int | None,
                max_pct_mt: float | None, mt_prefix: str, n_top_genes: int, target_sum: float, keep_raw: bool = True,
                qc: str = "fixed", qc_nmads: float = 5.0, qc_nmads_mt: float = 3.0, doublets: str | None = None,
                batch_key: str | None = None, chunk_cells: int = 100_000, dataset: str = "dataset"):
    """The four passes (module doc) over ``source`` (stream.py); ``sink_factory(n_hvg,
    n_genes)`` makes what the output's blocks go to. Returns ``(sink.finish(...), QC
    table, bounds)``."""
    n0_cells, n0_genes = source.shape
    obs, var = source.obs, source.var.copy()
    var["mt"] = mt_genes(var, mt_prefix)
    mt = var["mt"].to_numpy()

    # pass 1: QC metrics of every cell
    progress, parts = Progress("pass 1 of 4, QC metrics", n0_cells), []
    for _, hi, block in source.chunks(chunk_cells):
        parts.append(cell_metrics(block, mt, top_genes=qc == "mad"))
        progress.update(hi)
    metrics = pd.concat(parts, ignore_index=True)
    metrics.index = obs.index
    table, bounds, keep = qc_decision(metrics, qc=qc, min_genes=min_genes, max_genes=max_genes, max_pct_mt=max_pct_mt,
                                      qc_nmads=qc_nmads, qc_nmads_mt=qc_nmads_mt, dataset=dataset, n_mt=int(mt.sum()),
                                      mt_prefix=mt_prefix)
    if doublets == "scrublet":  # Scrublet needs the kept cells' counts whole
        X_kept = sp.vstack([block for *_, block in source.chunks(chunk_cells, keep)], format="csr")
        predicted = remove_doublets(X_kept, table, bounds, keep, dataset=dataset)
        del X_kept
        keep = (table["qc_fail"] == "").to_numpy()
    n_kept = int(keep.sum())

    # pass 2: per-gene sums (by batch) over the kept cells
    if batch_key is not None:
        batches, codes = np.unique(obs[batch_key].to_numpy()[keep], return_inverse=True)
    else:
        batches, codes = np.zeros(1), np.zeros(n_kept, dtype=np.int64)
    n_batches, offsets = len(batches), np.concatenate([[0], np.cumsum(keep)])
    sums = np.zeros((n_batches, n0_genes))
    sumsq = np.zeros((n_batches, n0_genes))
    n_cells_by_counts = np.zeros(n0_genes, dtype=np.int64)
    progress = Progress("pass 2 of 4, gene statistics", n0_cells)
    for lo, hi, block in source.chunks(chunk_cells, keep):
        gene_sums(block.indptr, block.indices, block.data, codes[offsets[lo]:offsets[hi]], sums, sumsq,
                   n_cells_by_counts)
        progress.update(hi)
    genes = n_cells_by_counts >= min_cells
    log.info("QC: kept %d of %d genes expressed in >= %d cells", genes.sum(), n0_genes, min_cells)
    if not genes.any():
        raise InputError(f"dataset '{dataset}': no genes left after QC (min_cells={min_cells}); relax preprocess.")
    gene_idx = np.flatnonzero(genes)
    var = var.iloc[gene_idx].copy()
    var["n_cells_by_counts"] = n_cells_by_counts[gene_idx]
    var["total_counts"] = sums.sum(0)[gene_idx]
    n_genes = len(gene_idx)

    def kept_genes(block):
        return block if n_genes == n0_genes else block[:, gene_idx]

    # pass 3: seurat_v3's clipped sums, and the highly variable genes
    n_hvg = min(n_top_genes, n_genes)
    if n_hvg < n_top_genes:
        log.info("only %d genes pass QC: all of them are used (n_top_genes=%d)", n_genes, n_top_genes)
        var["highly_variable"] = True
    else:
        n_per_batch = np.bincount(codes, minlength=n_batches)

        gene_pos = np.full(n0_genes, -1, dtype=np.int64)
        gene_pos[gene_idx] = np.arange(n_genes)

        def clipped(clip_val):
            clip_val = np.ascontiguousarray(clip_val, dtype=np.float64).reshape(n_batches, n_genes)
            csum, csumsq = np.zeros_like(clip_val), np.zeros_like(clip_val)
            progress = Progress("pass 3 of 4, clipped variances", n0_cells)
            for lo, hi, block in source.chunks(chunk_cells, keep):
                clipped_sums(block.indptr, block.indices, block.data, codes[offsets[lo]:offsets[hi]], gene_pos,
                              clip_val, csum, csumsq)
                progress.update(hi)
            return csum, csumsq

        hvg = seurat_v3(sums[:, gene_idx], sumsq[:, gene_idx], n_per_batch, clipped, n_hvg)
        for column in ("highly_variable", "highly_variable_rank", "means", "variances", "variances_norm"):
            var[column] = hvg[column].to_numpy()
    hvg_idx = np.flatnonzero(var["highly_variable"].to_numpy())

    # pass 4: the output, block by block
    sink = sink_factory(len(hvg_idx), n_genes if keep_raw else None)
    empty_parts = []
    progress = Progress("pass 4 of 4, normalise and write", n0_cells)
    hvg_columns = gene_idx[hvg_idx]  # in the input's genes
    gene_kept = np.zeros(n0_genes, dtype=bool)
    gene_kept[gene_idx] = True
    for _, hi, block in source.chunks(chunk_cells, keep):
        counts = block[:, hvg_columns].tocsr()
        empty = np.asarray(counts.sum(axis=1)).ravel() == 0
        empty_parts.append(empty)
        # cell totals over every QC-passed gene: sums of integers, exact in float64 (as in float32 below 2^24)
        totals = row_sums(block.indptr, block.indices, block.data, gene_kept)
        X = counts.copy()
        log_normalise_inplace(X, target_sum, totals)
        raw = None
        if keep_raw:  # every QC-passed gene, log-normalised
            raw = kept_genes(block)
            log_normalise_inplace(raw, target_sum, totals)
        if empty.any():
            X, counts = X[~empty], counts[~empty]
            raw = raw[~empty] if keep_raw else None
        sink.append(X, {"counts": counts}, raw)
        progress.update(hi)
    empty = np.concatenate(empty_parts)
    if empty.all():
        raise InputError(f"dataset '{dataset}': no cell has counts in the highly variable genes.")
    obs = obs.assign(**{c: metrics[c].to_numpy() for c in metrics})[keep]
    if empty.any():
        log.info("dropping %d cells with no counts in the %d highly variable genes", empty.sum(), len(hvg_idx))
        table.loc[obs.index[empty], "qc_fail"] = "no counts in the highly variable genes"
        obs = obs[~empty]
    uns = {
        "log1p": {"base": None},
        "software": software_versions(["scanpy", "anndata", "numpy", "scipy", "scikit-misc"]),
        "preprocess": {
            "min_genes": min_genes, "min_cells": min_cells,
            "max_genes": max_genes if max_genes is not None else "none",
            "max_pct_mt": max_pct_mt if max_pct_mt is not None else "none", "mt_prefix": mt_prefix,
            "n_top_genes": n_top_genes, "hvg_flavor": "seurat_v3", "target_sum": target_sum, "keep_raw": keep_raw,
            "qc": qc, "qc_nmads": qc_nmads, "qc_nmads_mt": qc_nmads_mt, "doublets": doublets or "none",
            "hvg_batch_key": batch_key or "none", "chunk_cells": chunk_cells,
        },
        "qc": {"bounds": bounds.astype({"lower": float, "upper": float}),
               "removed": table["qc_fail"].value_counts().drop("", errors="ignore").to_dict()},
    }
    out = sink.finish(obs, var.iloc[hvg_idx].copy(), uns, var[[]] if keep_raw else None)
    log.info("preprocessed: %d cells x %d highly variable genes", len(obs), len(hvg_idx))
    return out, table, bounds


def preprocess(adata, **params):
    """AnnData of raw counts (CSR) in X -> ``(preprocessed AnnData, QC table)``, in memory.

    ``params``: the ``preprocess`` section of the config (min_genes, min_cells, max_genes,
    max_pct_mt, mt_prefix, n_top_genes, target_sum, keep_raw, qc, qc_nmads, qc_nmads_mt,
    doublets, chunk_cells) plus batch_key and dataset. The AnnData is that of the module
    doc; the QC table has one row per input cell (its metrics and ``qc_fail``, why it was
    removed: empty if kept). Highly variable genes are scanpy's ``seurat_v3``
    (variance-stabilised raw counts; ``seurat_v3`` here), batch-aware with ``batch_key``
    (genes ranked within each batch, as scanpy does). Raises InputError when no cells or
    no genes are left after QC.
    """
    X = adata.X if sp.isspmatrix_csr(adata.X) or isinstance(adata.X, sp.csr_array) else sp.csr_matrix(adata.X)
    source = MemoryCounts(X, adata.obs, adata.var)
    out, table, _ = _preprocess(source, lambda n_hvg, n_raw: _MemorySink(n_raw is not None), **params)
    return out, table


def preprocess_to_file(source, path, **params):
    """``preprocess`` of a chunked source (stream.py) written straight to the h5ad ``path``
    (gzip-compressed, as the rest of the workflow's files): ``(QC table, bounds)``."""
    writers = []

    def factory(n_hvg, n_raw):
        writers.append(H5adWriter(path, n_hvg, layers=("counts",), raw_vars=n_raw))
        return writers[-1]

    try:
        _, table, bounds = _preprocess(source, factory, **params)
    finally:
        for writer in writers:
            writer.close()  # a no-op after finish
    return table, bounds


if "snakemake" in globals():
    setup_logging(snakemake.log[0])  # noqa: F821
    params = snakemake.params  # noqa: F821
    source = open_counts(snakemake.input[0], counts_layer=params.counts_layer, dataset=params.dataset)  # noqa: F821
    log.info("read %s: %d cells x %d genes", snakemake.input[0], *source.shape)  # noqa: F821
    what = f"dataset '{params.dataset}' ({snakemake.input[0]})"  # noqa: F821
    if params.label_key is not None and params.label_key not in source.obs:
        raise InputError(f"{what}: label_key '{params.label_key}' is not an obs column; "
                         f"its columns are {list(source.obs.columns)}.")
    covariate_codes(source.obs, params.covariates, what=what)  # every covariate present, no missing values
    with atomic_path(snakemake.output.h5ad) as tmp:  # noqa: F821
        qc_table, bounds = preprocess_to_file(source, tmp, dataset=params.dataset, batch_key=params.batch_key,
                                              **params.preprocess)
    write_cell_table(qc_table, snakemake.output.qc)  # noqa: F821
    with atomic_path(snakemake.output.bounds) as tmp:  # noqa: F821
        bounds.astype({"lower": float, "upper": float}).to_csv(tmp, sep="\t", index=False)
