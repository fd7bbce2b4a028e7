"""Scanpy preprocessing: QC, normalisation, highly variable genes, raw counts kept.

Output contract (results/{dataset}/preprocessed.h5ad):
- cells that pass QC (qc.py: fixed or MAD thresholds, optionally Scrublet doublets), the
  highly variable genes;
- ``layers["counts"]``: raw integer counts (what the iVAE models);
- ``X``: log1p of counts normalised to ``target_sum`` per cell (library size over the QC-passed genes);
- ``.raw`` (unless ``keep_raw`` is false): the log-normalised values of every gene that
  passed QC (for marker genes);
- ``obs``: the input's columns plus scanpy's QC metrics; ``uns["preprocess"]``: parameters,
  ``uns["qc"]``: the QC bounds and how many cells each removed.

Atlases: the input is read a chunk of ``chunk_cells`` cells at a time (stream.py) in four
passes (QC metrics of every cell; gene statistics of the kept cells; the clipped sums of
``seurat_v3``; the output, written to the h5ad as it is made), so memory holds one chunk,
per-cell and per-gene vectors, never the whole matrix. The passes log their progress with
rate and time left. The result is the same whatever the chunk size (tested).

``_preprocess`` runs them a function each, the config's ``preprocess`` section travelling
as one ``PreprocessSettings``:
- the cells: ``qc_metrics_pass`` (pass 1), ``qc_decision``, ``streamed_doublets`` -> ``KeptCells``;
- the genes: ``gene_statistics_pass`` (pass 2) -> ``GeneStats``, ``filter_genes``;
- the HVGs: ``highly_variable_pass``: ``seurat_v3``, whose ``clipped_pass`` is pass 3;
- the output: ``output_pass`` (pass 4, ``normalise_block`` per chunk), ``output_obs``, ``output_uns``.
``preprocess`` (in memory) and ``preprocess_to_file`` (the rule's ``main``) differ only in
where the output's blocks go.

Beside it, results/{dataset}/qc.tsv has every input cell's QC metrics and why it failed
(``qc_fail``, empty for kept cells), and qc_bounds.tsv the bounds; the QC figure draws both.
"""


import time
from dataclasses import dataclass, fields
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cell_table import write_cell_table
from covariates import check_covariate_kinds, covariate_codes
from rule_io import InputError, atomic_path, log, setup_logging
from versions import software_versions
from qc import cell_metrics, qc_bounds, qc_failures, scrublet_doublets
from stream import H5adWriter, MemoryCounts, clipped_sums, gene_sums, open_counts, row_sums

#: Span of seurat_v3's loess of log variance on log mean (scanpy's default).
LOESS_SPAN = 0.3


@dataclass(frozen=True, kw_only=True)
class CellQC:
    """The keys of the config's ``preprocess`` section that decide which cells are kept
    (workflow/schemas/config.schema.yaml holds each one's default and description)."""

    qc: str = "fixed"  # or "mad"
    min_genes: int
    max_genes: int | None
    max_pct_mt: float | None
    mt_prefix: str
    qc_nmads: float = 5.0
    qc_nmads_mt: float = 3.0
    doublets: str | None = None  # or "scrublet"


@dataclass(frozen=True, kw_only=True)
class PreprocessSettings(CellQC):
    """The config's whole ``preprocess`` section: the cell QC, then the gene filter, highly
    variable genes, normalisation, what is kept and the chunk size. The defaults are the
    schema's (tested), for callers that name only some keys."""

    min_cells: int
    n_top_genes: int
    target_sum: float
    keep_raw: bool = True
    chunk_cells: int = 100_000

    @classmethod
    def from_config(cls, section: dict) -> "PreprocessSettings":
        """From the (validated) config section; a key the dataclass lacks, or the reverse, is an error."""
        names = {f.name for f in fields(cls)}
        if set(section) != names:
            raise ValueError(f"preprocess settings: unknown {sorted(set(section) - names)}, "
                             f"missing {sorted(names - set(section))}")
        return cls(**section)

    def as_uns(self, batch_key: str | None, hvg_flavor: str = "seurat_v3") -> dict:
        """``uns["preprocess"]``: the settings, the HVG method used and the HVGs' batch key
        (None written as "none")."""
        return {
            "min_genes": self.min_genes, "min_cells": self.min_cells,
            "max_genes": self.max_genes if self.max_genes is not None else "none",
            "max_pct_mt": self.max_pct_mt if self.max_pct_mt is not None else "none", "mt_prefix": self.mt_prefix,
            "n_top_genes": self.n_top_genes, "hvg_flavor": hvg_flavor, "target_sum": self.target_sum,
            "keep_raw": self.keep_raw, "qc": self.qc, "qc_nmads": self.qc_nmads, "qc_nmads_mt": self.qc_nmads_mt,
            "doublets": self.doublets or "none", "hvg_batch_key": batch_key or "none", "chunk_cells": self.chunk_cells,
        }


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


def qc_decision(metrics: pd.DataFrame, cell_qc: CellQC, *, dataset: str = "dataset", n_mt: int = 0):
    """From every cell's QC metrics: ``(QC table, bounds, mask of the kept cells)``.
    InputError when no cell is left."""
    bounds = qc_bounds(metrics, qc=cell_qc.qc, min_genes=cell_qc.min_genes, max_genes=cell_qc.max_genes,
                       max_pct_mt=cell_qc.max_pct_mt, nmads=cell_qc.qc_nmads, nmads_mt=cell_qc.qc_nmads_mt)
    table = metrics.assign(qc_fail=qc_failures(metrics, bounds))
    keep = (table["qc_fail"] == "").to_numpy()
    log.info("QC (%s): kept %d of %d cells; %d %s* genes; bounds:\n%s", cell_qc.qc, keep.sum(), len(keep), n_mt,
             cell_qc.mt_prefix, bounds.to_string(index=False))
    if not keep.any():
        raise InputError(f"dataset '{dataset}': no cells left after QC ({cell_qc.qc}; min_genes={cell_qc.min_genes}, "
                         f"max_genes={cell_qc.max_genes}, max_pct_mt={cell_qc.max_pct_mt}); relax preprocess.")
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


def quality_control(X: sp.csr_matrix, obs, var, *, dataset: str = "dataset", **cell_qc):
    """Cell QC of an in-memory matrix (qc.py): ``(X of the kept cells, their obs with the QC
    metrics, the QC table of every cell, the bounds)``. ``cell_qc``: the keys of ``CellQC``.
    Adds ``var["mt"]``. InputError when no cell is left."""
    cell_qc = CellQC(**cell_qc)
    var["mt"] = mt_genes(var, cell_qc.mt_prefix)
    metrics = cell_metrics(X, var["mt"].to_numpy(), top_genes=cell_qc.qc == "mad")
    metrics.index = obs.index
    table, bounds, keep = qc_decision(metrics, cell_qc, dataset=dataset, n_mt=int(var["mt"].sum()))
    if not keep.all():
        X = X[keep]
    if cell_qc.doublets == "scrublet":
        predicted = remove_doublets(X, table, bounds, keep, dataset=dataset)
        X = X[~predicted]
        keep = (table["qc_fail"] == "").to_numpy()
    obs = obs.assign(**{c: metrics[c].to_numpy() for c in metrics})[keep]
    return X, obs, table, bounds


class LoessFailed(RuntimeError):
    """seurat_v3's loess of log variance on log mean found no fit: with few cells, many
    genes share a few (mean, variance) values and the local regressions are singular."""


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
        try:
            model.fit()
        except ValueError as error:  # scikit-misc: "There are other near singularities as well."
            raise LoessFailed(f"batch {b} ({int(n[b])} cells): {error}") from error
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


def _cell_pass(source, name: str, chunk_cells: int, rows: np.ndarray | None = None):
    """``source.chunks(chunk_cells, rows)`` (stream.py), logging the pass's progress as ``name``."""
    progress = Progress(name, source.shape[0])
    for lo, hi, block in source.chunks(chunk_cells, rows):
        yield lo, hi, block
        progress.update(hi)


def qc_metrics_pass(source, mt: np.ndarray, settings: PreprocessSettings) -> pd.DataFrame:
    """Pass 1: every cell's QC metrics (qc.py; ``mt``: the mitochondrial genes), indexed by cell."""
    parts = [cell_metrics(block, mt, top_genes=settings.qc == "mad")
             for *_, block in _cell_pass(source, "pass 1 of 4, QC metrics", settings.chunk_cells)]
    metrics = pd.concat(parts, ignore_index=True)
    metrics.index = source.obs.index
    return metrics


def streamed_doublets(source, table: pd.DataFrame, bounds: pd.DataFrame, keep: np.ndarray, *, chunk_cells: int,
                      dataset: str = "dataset") -> np.ndarray:
    """``remove_doublets`` on the kept cells' counts, read whole (Scrublet needs them so):
    the new mask of the kept cells."""
    X_kept = sp.vstack([block for *_, block in source.chunks(chunk_cells, keep)], format="csr")
    remove_doublets(X_kept, table, bounds, keep, dataset=dataset)
    return (table["qc_fail"] == "").to_numpy()


@dataclass(frozen=True, eq=False)
class KeptCells:
    """The cells that passed QC as the later passes read them: ``keep``, a mask over the
    input's cells; ``codes``, each kept cell's batch (0 without a batch key); ``offsets[i]``,
    how many kept cells come before input cell ``i``."""

    keep: np.ndarray
    codes: np.ndarray
    n_batches: int
    offsets: np.ndarray

    @classmethod
    def of(cls, obs: pd.DataFrame, keep: np.ndarray, batch_key: str | None) -> "KeptCells":
        if batch_key is not None:
            batches, codes = np.unique(obs[batch_key].to_numpy()[keep], return_inverse=True)
        else:
            batches, codes = np.zeros(1), np.zeros(int(keep.sum()), dtype=np.int64)
        return cls(keep, codes, len(batches), np.concatenate([[0], np.cumsum(keep)]))

    def batch_codes(self, lo: int, hi: int) -> np.ndarray:
        """The batches of the kept cells among input cells ``lo`` to ``hi - 1``."""
        return self.codes[self.offsets[lo]:self.offsets[hi]]


@dataclass(frozen=True, eq=False)
class GeneStats:
    """Per gene of the input, over the kept cells: (batches x genes) sums of counts and of
    squared counts, and the number of cells with counts."""

    sums: np.ndarray
    sumsq: np.ndarray
    n_cells_by_counts: np.ndarray


def gene_statistics_pass(source, cells: KeptCells, chunk_cells: int) -> GeneStats:
    """Pass 2: the per-gene sums (by batch) over the kept cells."""
    n_genes = source.shape[1]
    stats = GeneStats(np.zeros((cells.n_batches, n_genes)), np.zeros((cells.n_batches, n_genes)),
                      np.zeros(n_genes, dtype=np.int64))
    for lo, hi, block in _cell_pass(source, "pass 2 of 4, gene statistics", chunk_cells, cells.keep):
        gene_sums(block.indptr, block.indices, block.data, cells.batch_codes(lo, hi), stats.sums, stats.sumsq,
                  stats.n_cells_by_counts)
    return stats


def filter_genes(var: pd.DataFrame, stats: GeneStats, min_cells: int, *,
                 dataset: str = "dataset") -> tuple[np.ndarray, pd.DataFrame]:
    """The genes with counts in at least ``min_cells`` kept cells: ``(their columns in the
    input, their var with n_cells_by_counts and total_counts)``. InputError when there are none."""
    genes = stats.n_cells_by_counts >= min_cells
    log.info("QC: kept %d of %d genes expressed in >= %d cells", genes.sum(), len(genes), min_cells)
    if not genes.any():
        raise InputError(f"dataset '{dataset}': no genes left after QC (min_cells={min_cells}); relax preprocess.")
    gene_idx = np.flatnonzero(genes)
    var = var.iloc[gene_idx].copy()
    var["n_cells_by_counts"] = stats.n_cells_by_counts[gene_idx]
    var["total_counts"] = stats.sums.sum(0)[gene_idx]
    return gene_idx, var


def highly_variable_pass(source, cells: KeptCells, stats: GeneStats, gene_idx: np.ndarray, var: pd.DataFrame,
                         settings: PreprocessSettings, *, dataset: str = "dataset") -> tuple[pd.DataFrame, str]:
    """Pass 3: ``seurat_v3`` among the QC-passed genes (``gene_idx``, described by ``var``),
    its columns added to ``var``; every gene is highly variable when fewer than
    ``n_top_genes`` passed QC (and there is no pass). Returns ``(var, the method used)``.

    Fallback: where seurat_v3's loess has no fit (a few hundred cells or fewer, LoessFailed),
    the genes are ranked by the variance of their analytic Pearson residuals (Lause et al.,
    Genome Biology 2021; scanpy's ``pearson_residuals`` flavour, on the same raw counts and
    batches), logged as a warning and recorded as ``uns["preprocess"]["hvg_flavor"]``."""
    n_top_genes = settings.n_top_genes
    if len(gene_idx) < n_top_genes:
        log.info("only %d genes pass QC: all of them are used (n_top_genes=%d)", len(gene_idx), n_top_genes)
        var["highly_variable"] = True
        return var, "all genes"
    clipped = partial(clipped_pass, source, cells, gene_idx, settings.chunk_cells)
    try:
        hvg = seurat_v3(stats.sums[:, gene_idx], stats.sumsq[:, gene_idx],
                        np.bincount(cells.codes, minlength=cells.n_batches), clipped, n_top_genes)
        columns, flavor = ("highly_variable", "highly_variable_rank", "means", "variances", "variances_norm"), "seurat_v3"
    except LoessFailed as error:
        log.warning("dataset '%s': seurat_v3's loess found no fit on %d cells (%s); the %d highly variable genes are "
                    "ranked by the variance of their Pearson residuals instead (scanpy's pearson_residuals flavour)",
                    dataset, len(cells.codes), error, n_top_genes)
        hvg = pearson_residual_hvgs(source, cells, gene_idx, n_top_genes, settings.chunk_cells)
        columns, flavor = ("highly_variable", "highly_variable_rank", "means", "variances",
                           "residual_variances"), "pearson_residuals"
    for column in columns:
        var[column] = hvg[column].to_numpy()
    return var, flavor


def pearson_residual_hvgs(source, cells: KeptCells, gene_idx: np.ndarray, n_top_genes: int,
                          chunk_cells: int) -> pd.DataFrame:
    """scanpy's ``highly_variable_genes(flavor="pearson_residuals")`` (theta 100, residuals
    clipped at sqrt(cells)) on the kept cells' counts of the genes ``gene_idx``, read whole:
    the fallback for datasets too small for seurat_v3, so small that they fit in memory.
    Batch-aware as seurat_v3 (ranks within each batch, then the median rank)."""
    import anndata as ad
    import scanpy as sc

    X = sp.vstack([block[:, gene_idx] for *_, block in source.chunks(chunk_cells, cells.keep)], format="csr")
    adata = ad.AnnData(X=X.astype(np.float32), obs=pd.DataFrame({"batch": pd.Categorical(cells.codes)},
                                                                index=[str(i) for i in range(X.shape[0])]))
    sc.experimental.pp.highly_variable_genes(adata, flavor="pearson_residuals", n_top_genes=n_top_genes,
                                             batch_key="batch" if cells.n_batches > 1 else None)
    var = adata.var.copy()
    var["means"] = np.asarray(X.mean(axis=0)).ravel()
    var["variances"] = np.asarray(X.multiply(X).mean(axis=0)).ravel() - var["means"] ** 2
    var["variances"] *= X.shape[0] / max(X.shape[0] - 1, 1)
    return var.reset_index(drop=True)


def clipped_pass(source, cells: KeptCells, gene_idx: np.ndarray, chunk_cells: int, clip_val: np.ndarray):
    """seurat_v3's ``clipped``: by batch, the sums and sums of squares over the kept cells of
    the counts of the genes ``gene_idx`` clipped at ``clip_val`` (batches x those genes)."""
    gene_pos = np.full(source.shape[1], -1, dtype=np.int64)
    gene_pos[gene_idx] = np.arange(len(gene_idx))
    clip_val = np.ascontiguousarray(clip_val, dtype=np.float64).reshape(cells.n_batches, len(gene_idx))
    csum, csumsq = np.zeros_like(clip_val), np.zeros_like(clip_val)
    for lo, hi, block in _cell_pass(source, "pass 3 of 4, clipped variances", chunk_cells, cells.keep):
        clipped_sums(block.indptr, block.indices, block.data, cells.batch_codes(lo, hi), gene_pos, clip_val, csum,
                     csumsq)
    return csum, csumsq


def normalise_block(block: sp.csr_matrix, hvg_columns: np.ndarray, gene_idx: np.ndarray, *, target_sum: float,
                    keep_raw: bool):
    """One chunk of kept cells' output: ``(X, counts, raw, empty)``, the log-normalised and
    the raw counts of the HVGs (``hvg_columns``), .raw's log-normalised QC-passed genes
    (``gene_idx``; None without ``keep_raw``), and which cells have no counts in the HVGs
    (left out of the three). Library sizes are over the QC-passed genes. ``block`` may be
    normalised in place."""
    counts = block[:, hvg_columns].tocsr()
    empty = np.asarray(counts.sum(axis=1)).ravel() == 0
    gene_kept = np.zeros(block.shape[1], dtype=bool)
    gene_kept[gene_idx] = True
    # cell totals over every QC-passed gene: sums of integers, exact in float64 (as in float32 below 2^24)
    totals = row_sums(block.indptr, block.indices, block.data, gene_kept)
    X = counts.copy()
    log_normalise_inplace(X, target_sum, totals)
    raw = None
    if keep_raw:  # every QC-passed gene, log-normalised
        raw = block if len(gene_idx) == block.shape[1] else block[:, gene_idx]
        log_normalise_inplace(raw, target_sum, totals)
    if empty.any():
        X, counts = X[~empty], counts[~empty]
        raw = raw[~empty] if keep_raw else None
    return X, counts, raw, empty


def output_pass(source, sink, cells: KeptCells, gene_idx: np.ndarray, hvg_columns: np.ndarray,
                settings: PreprocessSettings) -> np.ndarray:
    """Pass 4: the kept cells normalised (``normalise_block``) and appended to ``sink`` a chunk
    at a time; returns which kept cells have no counts in the HVGs (left out)."""
    empty = []
    for *_, block in _cell_pass(source, "pass 4 of 4, normalise and write", settings.chunk_cells, cells.keep):
        X, counts, raw, block_empty = normalise_block(block, hvg_columns, gene_idx, target_sum=settings.target_sum,
                                                      keep_raw=settings.keep_raw)
        empty.append(block_empty)
        sink.append(X, {"counts": counts}, raw)
    return np.concatenate(empty)


def output_obs(obs: pd.DataFrame, metrics: pd.DataFrame, keep: np.ndarray, empty: np.ndarray, table: pd.DataFrame,
               *, n_hvg: int, dataset: str = "dataset") -> pd.DataFrame:
    """The output's obs: the input's columns and the QC metrics of the kept cells that have
    counts in the HVGs; those without are marked in ``table``. InputError when none has."""
    if empty.all():
        raise InputError(f"dataset '{dataset}': no cell has counts in the highly variable genes.")
    obs = obs.assign(**{c: metrics[c].to_numpy() for c in metrics})[keep]
    if empty.any():
        log.info("dropping %d cells with no counts in the %d highly variable genes", empty.sum(), n_hvg)
        table.loc[obs.index[empty], "qc_fail"] = "no counts in the highly variable genes"
        obs = obs[~empty]
    return obs


def output_uns(settings: PreprocessSettings, batch_key: str | None, table: pd.DataFrame, bounds: pd.DataFrame,
               *, hvg_flavor: str = "seurat_v3") -> dict:
    """The output's uns: log1p's base, the software, the settings (with the HVG method
    used), the QC bounds and how many cells each removed."""
    return {
        "log1p": {"base": None},
        "software": software_versions(["scanpy", "anndata", "numpy", "scipy", "scikit-misc"]),
        "preprocess": settings.as_uns(batch_key, hvg_flavor),
        "qc": {"bounds": bounds.astype({"lower": float, "upper": float}),
               "removed": table["qc_fail"].value_counts().drop("", errors="ignore").to_dict()},
    }


def _preprocess(source, sink_factory, settings: PreprocessSettings, *, batch_key: str | None = None,
                dataset: str = "dataset"):
    """The four passes (module doc) over ``source`` (stream.py); ``sink_factory(n_hvg,
    n_genes)`` makes what the output's blocks go to. Returns ``(sink.finish(...), QC
    table, bounds)``."""
    var = source.var.copy()
    var["mt"] = mt_genes(var, settings.mt_prefix)
    metrics = qc_metrics_pass(source, var["mt"].to_numpy(), settings)
    table, bounds, keep = qc_decision(metrics, settings, dataset=dataset, n_mt=int(var["mt"].sum()))
    if settings.doublets == "scrublet":
        keep = streamed_doublets(source, table, bounds, keep, chunk_cells=settings.chunk_cells, dataset=dataset)
    cells = KeptCells.of(source.obs, keep, batch_key)
    stats = gene_statistics_pass(source, cells, settings.chunk_cells)
    gene_idx, var = filter_genes(var, stats, settings.min_cells, dataset=dataset)
    var, hvg_flavor = highly_variable_pass(source, cells, stats, gene_idx, var, settings, dataset=dataset)
    hvg_idx = np.flatnonzero(var["highly_variable"].to_numpy())
    sink = sink_factory(len(hvg_idx), len(gene_idx) if settings.keep_raw else None)
    empty = output_pass(source, sink, cells, gene_idx, gene_idx[hvg_idx], settings)
    obs = output_obs(source.obs, metrics, keep, empty, table, n_hvg=len(hvg_idx), dataset=dataset)
    uns = output_uns(settings, batch_key, table, bounds, hvg_flavor=hvg_flavor)
    out = sink.finish(obs, var.iloc[hvg_idx].copy(), uns, var[[]] if settings.keep_raw else None)
    log.info("preprocessed: %d cells x %d highly variable genes", len(obs), len(hvg_idx))
    return out, table, bounds


def _settings(settings: PreprocessSettings | None, section: dict) -> PreprocessSettings:
    """``settings``, or made of the section's keys given as keywords (not both)."""
    if settings is None:
        return PreprocessSettings(**section)
    if section:
        raise TypeError(f"give PreprocessSettings or the section's keys, not both ({sorted(section)})")
    return settings


def preprocess(adata, settings: PreprocessSettings | None = None, *, batch_key: str | None = None,
               dataset: str = "dataset", **section):
    """AnnData of raw counts (CSR) in X -> ``(preprocessed AnnData, QC table)``, in memory.

    ``settings``, or ``section``: the keys of the config's ``preprocess`` section
    (``PreprocessSettings``); ``batch_key`` and ``dataset`` from the dataset's entry. The
    AnnData is that of the module doc; the QC table has one row per input cell (its metrics
    and ``qc_fail``, why it was removed: empty if kept). Highly variable genes are scanpy's
    ``seurat_v3`` (variance-stabilised raw counts), batch-aware with ``batch_key`` (genes
    ranked within each batch, as scanpy does). Raises InputError when no cells or no genes
    are left after QC.
    """
    X = adata.X if sp.isspmatrix_csr(adata.X) or isinstance(adata.X, sp.csr_array) else sp.csr_matrix(adata.X)
    source = MemoryCounts(X, adata.obs, adata.var)
    out, table, _ = _preprocess(source, lambda n_hvg, n_raw: _MemorySink(n_raw is not None),
                                _settings(settings, section), batch_key=batch_key, dataset=dataset)
    return out, table


def preprocess_to_file(source, path, settings: PreprocessSettings | None = None, *, batch_key: str | None = None,
                       dataset: str = "dataset", **section):
    """``preprocess`` of a chunked source (stream.py) written straight to the h5ad ``path``
    (gzip-compressed, as the rest of the workflow's files): ``(QC table, bounds)``."""
    writers = []

    def factory(n_hvg, n_raw):
        writers.append(H5adWriter(path, n_hvg, layers=("counts",), raw_vars=n_raw))
        return writers[-1]

    try:
        _, table, bounds = _preprocess(source, factory, _settings(settings, section), batch_key=batch_key,
                                       dataset=dataset)
    finally:
        for writer in writers:
            writer.close()  # a no-op after finish
    return table, bounds


def check_dataset_keys(obs: pd.DataFrame, *, label_key: str | None, covariates, what: str) -> None:
    """InputError unless ``label_key`` (if any) and every covariate are columns of ``obs``,
    the covariates categorical (``check_covariate_kinds``) without missing values."""
    if label_key is not None and label_key not in obs:
        raise InputError(f"{what}: label_key '{label_key}' is not an obs column; its columns are {list(obs.columns)}.")
    covariate_codes(obs, covariates, what=what)
    check_covariate_kinds(obs, covariates, what=what)


def check_labels(obs: pd.DataFrame, label_key: str | None, *, what: str) -> None:
    """InputError unless the cells left after QC (``obs``) carry at least two groups of
    ``label_key`` and more labelled cells than groups (KMeans with k groups, silhouettes);
    cells without a label are allowed (left out of the scores)."""
    if label_key is None:
        return
    labels = obs[label_key]
    groups = labels.dropna().astype(str).value_counts()
    if len(groups) < 2:
        found = f"only {groups.index[0]!r}" if len(groups) else "no label at all"
        raise InputError(f"{what}: label_key '{label_key}' has {len(groups)} group(s) among the {len(obs)} cells left "
                         f"after QC ({found}); the clustering scores need at least 2. Use another column, or leave "
                         "label_key out: the reference is then Leiden clusters.")
    if groups.sum() <= len(groups):
        raise InputError(f"{what}: label_key '{label_key}' has {len(groups)} groups among {int(groups.sum())} labelled "
                         "cells left after QC; KMeans with k groups and the silhouettes need more cells than groups.")


def write_bounds(bounds: pd.DataFrame, path) -> None:
    """qc_bounds.tsv: one row per bound, NaN where a side has none."""
    with atomic_path(path) as tmp:
        bounds.astype({"lower": float, "upper": float}).to_csv(tmp, sep="\t", index=False)


def main(snakemake) -> None:
    """The rule: the dataset's counts, read in chunks, to preprocessed.h5ad, qc.tsv and qc_bounds.tsv."""
    setup_logging(snakemake.log[0])
    params, path = snakemake.params, snakemake.input[0]
    source = open_counts(path, counts_layer=params.counts_layer, dataset=params.dataset)
    log.info("read %s: %d cells x %d genes", path, *source.shape)
    check_dataset_keys(source.obs, label_key=params.label_key, covariates=params.covariates,
                       what=f"dataset '{params.dataset}' ({path})")
    settings = PreprocessSettings.from_config(params.preprocess)
    with atomic_path(snakemake.output.h5ad) as tmp:
        qc_table, bounds = preprocess_to_file(source, tmp, settings, batch_key=params.batch_key,
                                              dataset=params.dataset)
        # the kept cells (qc.tsv's rows are the input's, in order; "" = kept): refused before the file is in place
        check_labels(source.obs[(qc_table["qc_fail"] == "").to_numpy()], params.label_key,
                     what=f"dataset '{params.dataset}' ({path})")
    write_cell_table(qc_table, snakemake.output.qc)
    write_bounds(bounds, snakemake.output.bounds)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
