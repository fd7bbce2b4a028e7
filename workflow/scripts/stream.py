"""Count matrices read and written a chunk of cells at a time, for atlases.

preprocess.py makes several passes over the input (QC metrics, gene statistics, the
clipped sums of ``seurat_v3``, the output) and needs only one chunk of cells in memory
at a time. The sources it reads:

- ``H5Counts``: an .h5ad whose counts (X, a layer, or .raw's X) are stored as CSR, or a
  Cell Ranger v3 .h5 file (its matrix is CSC over genes x cells, i.e. CSR over cells x
  genes); rows are read straight from the file;
- ``MemoryCounts``: a CSR matrix already in memory (every other input: Matrix Market,
  .loom, dense or CSC .h5ad, Cell Ranger v2 .h5, and AnnData objects in tests).

``open_counts`` picks one and gives it the same obs and var as ``readers.read_counts``
(gene symbols for Ensembl IDs, only Gene Expression features, unique names), so both
paths give the same result. ``gene_sums``, ``clipped_sums`` and ``row_sums`` are the passes'
sums over a chunk (compiled). ``CsrWriter`` appends row blocks to a CSR element of an h5ad
file, and ``H5adWriter`` assembles a whole h5ad from them, so the output is never held
whole either.
"""

from pathlib import Path

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from readers import GENE_EXPRESSION, RAW_COUNTS, check_counts, input_format, read_counts, use_gene_symbols
from rule_io import InputError, log

#: anndata's on-disk encodings (anndata.readthedocs.io, "On-disk format").
ENCODING = {"encoding-type": "csr_matrix", "encoding-version": "0.1.0"}


class MemoryCounts:
    """Cells x genes CSR counts in memory, served in row chunks like ``H5Counts``."""

    streamed = False

    def __init__(self, X, obs: pd.DataFrame, var: pd.DataFrame):
        self.X = X if isinstance(X, sp.csr_matrix) else sp.csr_matrix(X)
        self.obs, self.var = obs, var

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape

    def read(self, lo: int, hi: int) -> sp.csr_matrix:
        return self.X[lo:hi]

    def chunks(self, size: int, rows: np.ndarray | None = None):
        """Yield ``(lo, hi, block)``: the cells lo..hi-1, only those with ``rows`` True if given."""
        yield from _chunks(self, size, rows)


class H5Counts:
    """CSR counts in an HDF5 file (an h5ad element or a Cell Ranger v3 matrix), read by rows.

    ``element``: the group holding the matrix; ``genes``: the columns to keep (None: all);
    ``what`` names the dataset and file in errors. Every cell is checked to hold finite,
    non-negative integer counts (``readers.check_counts``) the first time it is read:
    the first pass over the cells checks them all, and the later passes skip the check.
    """

    streamed = True

    def __init__(self, path: Path, element: str, obs: pd.DataFrame, var: pd.DataFrame, *, shape: tuple[int, int],
                 genes: np.ndarray | None = None, what: str = "the data"):
        self.path, self.element, self.genes, self.what = Path(path), element, genes, what
        self.obs, self.var = obs, var
        self.shape = (shape[0], len(var))
        self._n_file_genes = shape[1]
        self._checked_to = 0  # cells 0.._checked_to-1 have been checked

    def read(self, lo: int, hi: int) -> sp.csr_matrix:
        import h5py

        with h5py.File(self.path, "r") as f:
            group = f[self.element]
            indptr = group["indptr"][lo:hi + 1].astype(np.int64)
            a, b = int(indptr[0]), int(indptr[-1])
            block = sp.csr_matrix((group["data"][a:b].astype(np.float32, copy=False),
                                   group["indices"][a:b], indptr - a), shape=(hi - lo, self._n_file_genes))
        if self.genes is not None:
            block = block[:, self.genes]
        block.sort_indices()
        if hi > self._checked_to:
            check_counts(block, what=self.what)
            if lo <= self._checked_to:
                self._checked_to = hi
        return block

    def chunks(self, size: int, rows: np.ndarray | None = None):
        """Yield ``(lo, hi, block)``: the cells lo..hi-1, only those with ``rows`` True if given."""
        yield from _chunks(self, size, rows)


def _chunks(source, size: int, rows: np.ndarray | None):
    n = source.shape[0]
    for lo in range(0, n, size):
        hi = min(lo + size, n)
        if rows is not None and not rows[lo:hi].any():
            continue
        block = source.read(lo, hi)
        if rows is not None and not rows[lo:hi].all():
            block = block[rows[lo:hi]]
        yield lo, hi, block


def open_counts(path, *, counts_layer: str | None = None, dataset: str = "dataset"):
    """The counts of ``path`` as a chunked source: ``H5Counts`` where the file allows it,
    else ``MemoryCounts`` of ``readers.read_counts``. Obs and var as read_counts gives them."""
    path = Path(path)
    what = f"dataset '{dataset}' ({path})"
    fmt = input_format(path) if path.exists() else None
    source = None
    try:
        if fmt == "h5ad":
            source = _h5ad_source(path, counts_layer, what)
        elif fmt == "h5":
            source = _10x_source(path, what)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable input
        raise InputError(f"{what}: could not be read ({type(exc).__name__}: {exc}).") from exc
    if source is None:
        adata = read_counts(path, counts_layer=counts_layer, dataset=dataset)
        return MemoryCounts(adata.X, adata.obs, adata.var)
    log.info("%s: reading %d cells x %d genes in chunks", what, *source.shape)
    return source


def _named(obs: pd.DataFrame, var: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """obs and var named as read_counts names them (gene symbols, unique names)."""
    import anndata as ad

    adata = ad.AnnData(obs=obs, var=var)
    use_gene_symbols(adata)
    adata.var_names_make_unique()
    adata.obs_names_make_unique()
    return adata.obs, adata.var


def _h5ad_source(path: Path, counts_layer: str | None, what: str):
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        if counts_layer == RAW_COUNTS:
            if "raw" not in f:
                raise InputError(f"{what}: counts_layer '{RAW_COUNTS}' but the file has no .raw.")
            element, var_element = "raw/X", "raw/var"
        elif counts_layer is not None:
            layers = sorted(f["layers"]) if "layers" in f else []
            if counts_layer not in layers:
                raise InputError(f"{what}: counts_layer '{counts_layer}' is not a layer of the file; "
                                 f"its layers are {layers or 'none'} (null means X).")
            element, var_element = f"layers/{counts_layer}", "var"
        else:
            element, var_element = "X", "var"
        node = f[element]
        if not isinstance(node, h5py.Group) or node.attrs.get("encoding-type") != ENCODING["encoding-type"]:
            return None  # dense or CSC: read whole
        shape = tuple(int(s) for s in node.attrs["shape"])
        obs, var = read_elem(f["obs"]), read_elem(f[var_element])
    obs, var = _named(obs, var)
    return H5Counts(path, element, obs, var, shape=shape, what=what)


def _10x_source(path: Path, what: str):
    """Cell Ranger v3 .h5 (group ``matrix``), Gene Expression features only, as scanpy's read_10x_h5."""
    import h5py

    with h5py.File(path, "r") as f:
        if "matrix" not in f:
            return None  # Cell Ranger v2 layout: read whole by scanpy
        m = f["matrix"]
        n_genes, n_cells = (int(s) for s in m["shape"][:])
        features = m["features"]

        def strings(name):
            return np.asarray([s.decode() for s in features[name][:]], dtype=object)

        var = pd.DataFrame({"gene_ids": strings("id"), "feature_types": strings("feature_type")},
                           index=pd.Index(strings("name")))
        if "genome" in features:
            var["genome"] = strings("genome")
        obs = pd.DataFrame(index=pd.Index([s.decode() for s in m["barcodes"][:]]))
    keep = (var["feature_types"] == GENE_EXPRESSION).to_numpy()
    genes = None if keep.all() else np.flatnonzero(keep)
    var = var[keep]
    obs, var = _named(obs, var)
    return H5Counts(path, "matrix", obs, var, shape=(n_cells, n_genes), genes=genes, what=what)


# preprocess.py's sums over a chunk's stored entries: one compiled loop each (numba), with no
# whole-chunk temporaries (row keys, float64 copies, gathers), which made up most of an
# atlas's preprocessing time in numpy. Sums of counts are sums of integers, exact in float64
# in any order; the clipped sums are not, and are accumulated per chunk in entry order as
# np.bincount accumulates them, so the results are bitwise those of np.bincount over the
# entries (tested).

@numba.njit(cache=True)
def gene_sums(indptr, indices, data, codes, sums, sumsq, n_cells_by_counts):  # pragma: no cover - compiled
    """Add each gene's sum, sum of squares (squared as stored, float32) and number of stored
    entries, by row group ``codes``, into the arrays given."""
    for row in range(indptr.size - 1):
        group = codes[row]
        for k in range(indptr[row], indptr[row + 1]):
            gene, x = indices[k], data[k]
            sums[group, gene] += np.float64(x)
            sumsq[group, gene] += np.float64(x * x)
            n_cells_by_counts[gene] += 1


@numba.njit(cache=True)
def clipped_sums(indptr, indices, data, codes, gene_pos, clip, csum, csumsq):  # pragma: no cover - compiled
    """Add the sums and sums of squares of min(count, clip[group, gene]) of the genes with
    ``gene_pos >= 0`` (at that position) into ``csum``/``csumsq`` (groups x genes)."""
    part, part_sq = np.zeros_like(csum), np.zeros_like(csumsq)
    for row in range(indptr.size - 1):
        group = codes[row]
        for k in range(indptr[row], indptr[row + 1]):
            gene = gene_pos[indices[k]]
            if gene >= 0:
                v = min(np.float64(data[k]), clip[group, gene])
                part[group, gene] += v
                part_sq[group, gene] += v * v
    csum += part
    csumsq += part_sq


@numba.njit(cache=True)
def row_sums(indptr, indices, data, columns):  # pragma: no cover - compiled
    """Each row's sum over the columns with ``columns`` True (float64)."""
    out = np.zeros(indptr.size - 1)
    for row in range(indptr.size - 1):
        for k in range(indptr[row], indptr[row + 1]):
            if columns[indices[k]]:
                out[row] += np.float64(data[k])
    return out


class CsrWriter:
    """A CSR element of an h5ad file (``group[name]``) written one block of rows at a time."""

    def __init__(self, group, name: str, n_cols: int, *, dtype=np.float32, compression: str | None = "gzip"):
        self.group = group.create_group(name)
        self.n_rows, self.n_cols, self.nnz = 0, n_cols, 0
        kwargs = {"maxshape": (None,), "chunks": (1 << 16,), "compression": compression}
        self.data = self.group.create_dataset("data", shape=(0,), dtype=dtype, **kwargs)
        self.indices = self.group.create_dataset("indices", shape=(0,), dtype=np.int32, **kwargs)
        self.indptr = self.group.create_dataset("indptr", shape=(1,), dtype=np.int64, data=[0], **kwargs)
        self._write_attrs()

    def _write_attrs(self) -> None:
        self.group.attrs.update({**ENCODING, "shape": (self.n_rows, self.n_cols)})

    def append(self, block: sp.csr_matrix) -> None:
        if block.shape[1] != self.n_cols:
            raise ValueError(f"block has {block.shape[1]} columns, the matrix {self.n_cols}.")
        n, nnz = block.shape[0], block.nnz
        self.data.resize((self.nnz + nnz,))
        self.data[self.nnz:] = block.data.astype(self.data.dtype, copy=False)
        self.indices.resize((self.nnz + nnz,))
        self.indices[self.nnz:] = block.indices
        self.indptr.resize((self.n_rows + n + 1,))
        self.indptr[self.n_rows + 1:] = block.indptr[1:].astype(np.int64) + self.nnz
        self.n_rows, self.nnz = self.n_rows + n, self.nnz + nnz
        self._write_attrs()


class H5adWriter:
    """An h5ad file assembled element by element: CSR matrices appended by rows
    (``X``, ``layers[...]``, ``raw``'s X), then obs, var and uns. Readable by
    ``anndata.read_h5ad`` once ``finish`` has run."""

    def __init__(self, path, n_vars: int, *, layers=(), raw_vars: int | None = None, compression: str | None = "gzip"):
        import h5py
        from anndata.io import write_elem

        self.file = h5py.File(path, "w")
        self.file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        self.X = CsrWriter(self.file, "X", n_vars, compression=compression)
        write_elem(self.file, "layers", {})
        self.layers = {name: CsrWriter(self.file["layers"], name, n_vars, compression=compression) for name in layers}
        self.raw = None
        if raw_vars is not None:
            raw = self.file.create_group("raw")
            raw.attrs.update({"encoding-type": "raw", "encoding-version": "0.1.0"})
            self.raw = CsrWriter(raw, "X", raw_vars, compression=compression)

    def append(self, X: sp.csr_matrix, layers: dict | None = None, raw: sp.csr_matrix | None = None) -> None:
        self.X.append(X)
        for name, block in (layers or {}).items():
            self.layers[name].append(block)
        if self.raw is not None:
            self.raw.append(raw)

    def finish(self, obs: pd.DataFrame, var: pd.DataFrame, uns: dict, raw_var: pd.DataFrame | None = None) -> None:
        from anndata.io import write_elem

        if len(obs) != self.X.n_rows:
            raise ValueError(f"obs has {len(obs)} rows, X {self.X.n_rows}.")
        for key, value in (("obs", obs), ("var", var), ("uns", uns), ("obsm", {}), ("varm", {}), ("obsp", {}),
                           ("varp", {})):
            write_elem(self.file, key, value)
        if self.raw is not None:
            write_elem(self.file["raw"], "var", raw_var)
            write_elem(self.file["raw"], "varm", {})
        self.file.close()

    def close(self) -> None:
        self.file.close()
