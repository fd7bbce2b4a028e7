"""Reading count matrices in the formats users bring: .h5ad, 10x .h5 and directories, GEO
Matrix Market files and .loom; checked to be raw counts."""

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rule_io import InputError, log


def check_counts(X, *, what: str, chunk: int = 1 << 24) -> None:
    """Raise InputError unless X holds finite, non-negative integer counts.

    ``what`` names the dataset and file for the message. Checks the stored values in
    chunks, so an atlas needs no full-size temporary arrays.
    """
    values = (X.data if sp.issparse(X) else np.asarray(X)).reshape(-1)
    for lo in range(0, values.size, chunk):
        part = values[lo:lo + chunk]
        finite = np.isfinite(part)
        if not finite.all():
            raise InputError(f"{what}: the count matrix holds NaN or infinite values.")
        if part.min() < 0:
            raise InputError(
                f"{what}: the count matrix holds negative values (min {part.min():g}); "
                "raw UMI counts are needed (set counts_layer to the layer that holds them)."
            )
        frac = part != np.rint(part)
        if frac.any():
            raise InputError(
                f"{what}: the count matrix holds non-integer values (e.g. {part[frac][0]:g}), so it is "
                "not raw counts (log-normalised data?). Point counts_layer at the raw counts."
            )


#: ``counts_layer`` value that takes the counts from ``.raw.X`` (with .raw's genes).
RAW_COUNTS = "raw.X"


#: var columns that hold gene symbols, in the order they are looked for.
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "gene_names", "feature_name", "symbol", "name")


def use_gene_symbols(adata) -> None:
    """If the gene names are Ensembl IDs and a symbol column exists, name genes by symbol.

    The IDs are kept in ``var["gene_ids"]``; symbols are made unique (``-1``, ``-2``...),
    and a missing symbol falls back to its ID. Works in place.
    """
    names = adata.var_names.to_series()
    if names.str.match(r"^ENS[A-Z]*G\d+").mean() <= 0.5:
        return
    column = next((c for c in SYMBOL_COLUMNS if c in adata.var and adata.var[c].notna().any()), None)
    if column is None:
        log.info("genes are Ensembl IDs and no symbol column was found (%s): keeping IDs", ", ".join(SYMBOL_COLUMNS))
        return
    symbols = adata.var[column].astype("string")
    adata.var["gene_ids"] = names.to_numpy()
    adata.var_names = symbols.where(symbols.notna() & (symbols != ""), names).to_numpy()
    log.info("genes named by var['%s'] instead of Ensembl IDs (IDs kept in var['gene_ids'])", column)


#: Matrix Market file names as Cell Ranger writes them; GEO puts a common prefix before them.
MTX_MATRIX = ("matrix.mtx.gz", "matrix.mtx")


MTX_FEATURES = ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")


MTX_BARCODES = ("barcodes.tsv.gz", "barcodes.tsv")


#: The feature type kept from a features file with a type column (scanpy's gex_only).
GENE_EXPRESSION = "Gene Expression"


#: What ``path`` may be, for the unsupported-input message.
ACCEPTED_INPUTS = (
    "an .h5ad file, a 10x .h5 file, a .loom file, or Matrix Market files as Cell Ranger and GEO "
    "write them ([PREFIX]matrix.mtx[.gz], [PREFIX]features.tsv[.gz] or [PREFIX]genes.tsv[.gz], "
    "[PREFIX]barcodes.tsv[.gz]): their directory or the matrix file itself"
)


def read_counts(path: str | os.PathLike, *, counts_layer: str | None = None, dataset: str = "dataset"):
    """Read raw counts into an AnnData whose ``X`` is a CSR float32 count matrix.

    Formats: ``.h5ad`` (counts in ``X``, in ``layers[counts_layer]``, or in ``.raw.X``
    with ``counts_layer="raw.X"``), a 10x ``.h5`` file, a ``.loom`` file (counts in
    ``/matrix`` or ``/layers/<counts_layer>``), and Matrix Market files (10x
    ``filtered_feature_bc_matrix`` and GEO deposits: a directory, or the matrix file
    itself). Gene names are made unique; Ensembl IDs are replaced by a symbol column
    where there is one. Raises InputError with the dataset, the file and what is wrong.
    """
    path = Path(path)
    what = f"dataset '{dataset}' ({path})"
    if not path.exists():
        raise InputError(f"{what}: no such file or directory.")
    fmt = input_format(path)
    if fmt is None:
        raise InputError(f"{what}: unsupported input; give {ACCEPTED_INPUTS}.")
    try:
        adata = read_input(path, fmt, counts_layer=counts_layer, what=what)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable input
        raise InputError(f"{what}: could not be read ({type(exc).__name__}: {exc}).") from exc

    adata.layers.clear()
    adata.raw = None
    use_gene_symbols(adata)
    X = adata.X
    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    adata.X = X.astype(np.float32, copy=False)
    check_counts(adata.X, what=what)
    adata.var_names_make_unique()
    adata.obs_names_make_unique()
    return adata


def input_format(path: Path) -> str | None:
    """``"mtx"``, ``"h5ad"``, ``"h5"`` or ``"loom"`` for an existing path; None if none fits."""
    if path.is_dir() or path.name.endswith(MTX_MATRIX):
        return "mtx"
    return {".h5ad": "h5ad", ".h5": "h5", ".loom": "loom"}.get(path.suffix)


def read_input(path: Path, fmt: str, *, counts_layer: str | None, what: str):
    """The AnnData of one input in format ``fmt``, with the counts ``counts_layer`` names in X."""
    import anndata as ad
    import scanpy as sc

    if fmt == "loom":  # reads only the one layer it needs
        return read_loom(path, counts_layer=counts_layer, what=what)
    if fmt == "mtx":
        adata = read_mtx(path, what=what)
    elif fmt == "h5ad":
        adata = ad.read_h5ad(path)
    else:
        adata = sc.read_10x_h5(path)
    return select_counts(adata, counts_layer, what=what)


def select_counts(adata, counts_layer: str | None, *, what: str):
    """Put the counts in X: X itself (None), ``.raw`` (``"raw.X"``) or a layer."""
    if counts_layer == RAW_COUNTS:
        if adata.raw is None:
            raise InputError(f"{what}: counts_layer '{RAW_COUNTS}' but the file has no .raw.")
        return adata.raw.to_adata()
    if counts_layer is not None:
        if counts_layer not in adata.layers:
            raise InputError(
                f"{what}: counts_layer '{counts_layer}' is not a layer of the file; "
                f"its layers are {sorted(adata.layers) or 'none'} (null means X)."
            )
        adata.X = adata.layers[counts_layer]
    return adata


def read_mtx(path: Path, *, what: str):
    """AnnData of Matrix Market files: a directory of them, or their matrix file.

    Genes are named by the features file's name column (its only column if it has one);
    IDs go to ``var["gene_ids"]`` and types to ``var["feature_types"]`` where the file has
    them, and only "Gene Expression" features are kept. Barcodes are taken as strings,
    from the first column. The matrix (gzipped or not; scipy reads ``.gz`` through gzip)
    goes to CSR without densifying.
    """
    import anndata as ad
    import scipy.io

    files = find_mtx_files(path, what=what)
    matrix_file, features_file, barcodes_file = files
    var = mtx_var(read_tsv(features_file))
    barcodes = read_tsv(barcodes_file)[0].to_numpy()
    X = cells_by_genes(scipy.io.mmread(matrix_file), files, n_cells=len(barcodes), n_genes=len(var), what=what)
    adata = ad.AnnData(X=X, obs=pd.DataFrame(index=pd.Index(barcodes, dtype=object)), var=var)
    return gene_expression_only(adata, what=what)


def find_mtx_files(path: Path, *, what: str) -> tuple[Path, Path, Path]:
    """(matrix, features, barcodes) files of ``path``: a directory holding one matrix, or a matrix file."""
    matrix = path
    if path.is_dir():
        matrices = sorted(p for p in path.iterdir() if p.name.endswith(MTX_MATRIX))
        if not matrices:
            raise InputError(f"{what}: the directory holds no [PREFIX]matrix.mtx[.gz] file; give {ACCEPTED_INPUTS}.")
        if len(matrices) > 1:
            prefixes = sorted({mtx_prefix(m) for m in matrices})
            raise InputError(
                f"{what}: the directory holds {len(matrices)} count matrices (prefixes {prefixes}): "
                f"{', '.join(m.name for m in matrices)}; point path at one matrix file."
            )
        matrix = matrices[0]
    prefix = mtx_prefix(matrix)
    features = mtx_companion(matrix, prefix, MTX_FEATURES, what=what)
    return matrix, features, mtx_companion(matrix, prefix, MTX_BARCODES, what=what)


def mtx_prefix(matrix: Path) -> str:
    """The GEO prefix of a matrix file: ``GSM1_a_`` for ``GSM1_a_matrix.mtx.gz``, '' for ``matrix.mtx``."""
    return matrix.name.removesuffix(".gz").removesuffix("matrix.mtx")


def mtx_companion(matrix: Path, prefix: str, names: tuple[str, ...], *, what: str) -> Path:
    """The first of ``prefix + name`` that exists next to ``matrix``; InputError naming what was expected."""
    for name in names:
        candidate = matrix.with_name(prefix + name)
        if candidate.is_file():
            return candidate
    expected = " or ".join(dict.fromkeys(f"{prefix}{name.removesuffix('.gz')}[.gz]" for name in names))
    raise InputError(f"{what}: expected {expected} next to {matrix.name} in {matrix.parent}; there is none.")


def read_tsv(path: Path) -> pd.DataFrame:
    """A headerless tab-separated file (gzipped or not), every field kept as its string."""
    return pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)


def unique_gene_names(names) -> pd.Index:
    """Gene names as strings, duplicates suffixed ``-1``, ``-2``... (as scanpy's readers do)."""
    from anndata.utils import make_index_unique

    return make_index_unique(pd.Index(np.asarray(names).astype(str), dtype=object))


def mtx_var(features: pd.DataFrame) -> pd.DataFrame:
    """var of a features/genes table of 1 (name), 2 (id, name) or 3+ (id, name, type) columns."""
    n_columns = features.shape[1]
    var = pd.DataFrame(index=unique_gene_names(features[min(1, n_columns - 1)]))
    if n_columns >= 2:
        var["gene_ids"] = features[0].to_numpy()
    if n_columns >= 3:
        var["feature_types"] = features[2].to_numpy()
    return var


def cells_by_genes(matrix, files: tuple[Path, ...], *, n_cells: int, n_genes: int, what: str) -> sp.csr_matrix:
    """The Matrix Market matrix as cells x genes CSR.

    10x and GEO write genes x cells; a matrix that is cells x genes instead is taken as
    it is (and logged). InputError when neither fits the features and barcodes files.
    """
    if matrix.shape == (n_genes, n_cells):
        return sp.csr_matrix(matrix.T)
    if matrix.shape == (n_cells, n_genes):
        log.info("%s is cells x genes (%d x %d), not genes x cells: transposed", files[0].name, n_cells, n_genes)
        return sp.csr_matrix(matrix)
    raise InputError(
        f"{what}: {files[0].name} is {matrix.shape[0]} x {matrix.shape[1]}, but {files[1].name} lists "
        f"{n_genes} features and {files[2].name} {n_cells} barcodes; the matrix must be features x barcodes."
    )


def gene_expression_only(adata, *, what: str):
    """Keep the "Gene Expression" features where var has ``feature_types``; log what was dropped."""
    if "feature_types" not in adata.var:
        return adata
    types = adata.var["feature_types"]
    keep = (types == GENE_EXPRESSION).to_numpy()
    if not keep.any():
        raise InputError(f"{what}: no '{GENE_EXPRESSION}' features; the feature types are {sorted(set(types))}.")
    if not keep.all():
        dropped = ", ".join(f"{n} '{kind}'" for kind, n in types[~keep].value_counts().items())
        log.info("kept the %d '%s' features; dropped %s", keep.sum(), GENE_EXPRESSION, dropped)
        adata = adata[:, keep].copy()
    return adata


#: Loom attributes looked for, in order: gene names, gene IDs, cell names.
LOOM_GENE_NAMES = ("Gene", "gene_names", "var_names", "gene_symbols", "features")


LOOM_GENE_IDS = ("Accession", "gene_ids")


LOOM_CELL_NAMES = ("CellID", "obs_names", "cell_names", "barcodes")


#: Values of the dense loom matrix read at once: 2**25 (128 MB as float32) is about
#: 1,200 cells of 27,000 genes; larger blocks read no faster.
LOOM_BLOCK_VALUES = 1 << 25


def read_loom(path: Path, *, counts_layer: str | None, what: str):
    """AnnData of a loom file (spec 3.0): counts from /matrix or /layers/<counts_layer>.

    Genes are named by a row attribute of LOOM_GENE_NAMES, with IDs (LOOM_GENE_IDS) in
    ``var["gene_ids"]``; cells by a column attribute of LOOM_CELL_NAMES, and the other
    one-dimensional column attributes become obs columns. The genes x cells matrix is
    read in blocks of cells (``loom_csr``), so a large file is never dense in memory.
    """
    import anndata as ad
    import h5py

    with h5py.File(path, "r") as f:
        matrix = loom_matrix(f, counts_layer, what=what)
        var = loom_var(f.get("row_attrs", {}), what=what)
        obs = loom_obs(f.get("col_attrs", {}), what=what)
        if matrix.shape != (len(var), len(obs)):
            raise InputError(f"{what}: the loom matrix is {matrix.shape[0]} x {matrix.shape[1]}, but it has "
                             f"{len(var)} gene and {len(obs)} cell names.")
        return ad.AnnData(X=loom_csr(matrix), obs=obs, var=var)


def loom_matrix(f, counts_layer: str | None, *, what: str):
    """The loom dataset holding the counts: /matrix (None) or /layers/<counts_layer>."""
    if counts_layer is None:
        return f["matrix"]
    layers = f.get("layers", {})
    if counts_layer not in layers:
        raise InputError(f"{what}: counts_layer '{counts_layer}' is not a layer of the loom file; "
                         f"its layers are {sorted(layers) or 'none'} (null means /matrix).")
    log.info("counts from the loom layer '%s'", counts_layer)
    return layers[counts_layer]


def loom_values(dataset) -> np.ndarray:
    """A loom attribute's values; strings decoded as UTF-8, XML entities of fixed-length ones undone.

    Loom < 3 stores fixed-length ASCII with non-ASCII characters as XML entities (``&#228;``);
    loom 3 stores variable-length UTF-8.
    """
    import html

    import h5py

    string = h5py.check_string_dtype(dataset.dtype)
    if string is None:
        return dataset[()]
    values = dataset.asstr("utf-8")[()]
    return np.array([html.unescape(v) for v in values], dtype=object) if string.length else values


def loom_names(attrs, keys: tuple[str, ...], *, what: str, group: str, kind: str) -> tuple[str, np.ndarray]:
    """(attribute, names as strings) of the first of ``keys`` in the loom attribute group ``group``.

    Numbers stored as names become their strings; InputError says which attributes were looked for.
    """
    key = next((k for k in keys if k in attrs), None)
    if key is None:
        raise InputError(f"{what}: the loom file has no {kind} names; looked for "
                         f"{', '.join(f'/{group}/{k}' for k in keys)}.")
    return key, loom_values(attrs[key]).astype(str)


def loom_var(row_attrs, *, what: str) -> pd.DataFrame:
    """var of a loom file: genes named by LOOM_GENE_NAMES, IDs (LOOM_GENE_IDS) in ``gene_ids``."""
    _, names = loom_names(row_attrs, LOOM_GENE_NAMES, what=what, group="row_attrs", kind="gene")
    var = pd.DataFrame(index=unique_gene_names(names))
    id_key = next((k for k in LOOM_GENE_IDS if k in row_attrs), None)
    if id_key is not None:
        var["gene_ids"] = loom_values(row_attrs[id_key]).astype(str)
    return var


def loom_obs(col_attrs, *, what: str) -> pd.DataFrame:
    """obs of a loom file: cells named by LOOM_CELL_NAMES, every other 1-D column attribute a column."""
    import h5py

    key, names = loom_names(col_attrs, LOOM_CELL_NAMES, what=what, group="col_attrs", kind="cell")
    columns = {name: loom_values(ds) for name, ds in col_attrs.items()
               if name != key and isinstance(ds, h5py.Dataset) and ds.ndim == 1}
    return pd.DataFrame(columns, index=pd.Index(names, dtype=object))


def loom_csr(matrix) -> sp.csr_matrix:
    """cells x genes CSR of a genes x cells loom dataset, read LOOM_BLOCK_VALUES values at a time.

    Each block is all genes of a run of cells: at most LOOM_BLOCK_VALUES values are dense
    in memory at a time, however large the file.
    """
    n_genes, n_cells = matrix.shape
    step = max(1, LOOM_BLOCK_VALUES // max(n_genes, 1))
    return sp.vstack([sp.csr_matrix(matrix[:, lo:lo + step].T) for lo in range(0, n_cells, step)], format="csr")
