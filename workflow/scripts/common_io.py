"""I/O shared by the workflow's scripts: logging to the rule's log, atomic writes,
reading count matrices in the formats users bring, and checkpoints.

Everything here is at the edges; the maths lives in the scripts' core functions.
"""


import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

log = logging.getLogger("ivae")


class InputError(ValueError):
    """Bad user input: the message says which dataset, which file and what to fix."""


def setup_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send the ``ivae`` logger and uncaught exceptions to the rule's log file and stderr."""
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        log.addHandler(handler)

    def excepthook(exc_type, exc, tb):
        if issubclass(exc_type, InputError):  # the message is the whole story
            log.error("%s", exc)
        else:
            log.error("uncaught exception", exc_info=(exc_type, exc, tb))

    sys.excepthook = excepthook
    return log


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    An interrupted run therefore never leaves a truncated file under the final name.
    The temporary name keeps the suffix, so writers that dispatch on it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_h5ad(adata, path) -> None:
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


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


def read_counts(path: str | os.PathLike, *, counts_layer: str | None = None, dataset: str = "dataset"):
    """Read raw counts into an AnnData whose ``X`` is a CSR float32 count matrix.

    Formats: ``.h5ad`` (counts in ``X``, in ``layers[counts_layer]``, or in ``.raw.X``
    with ``counts_layer="raw.X"``), a 10x
    ``filtered_feature_bc_matrix`` directory, or a 10x ``.h5`` file. Gene names are
    made unique; Ensembl IDs are replaced by a symbol column where there is one. Raises
    InputError with the dataset, the file and what is wrong.
    """
    import anndata as ad
    import scanpy as sc

    path = Path(path)
    what = f"dataset '{dataset}' ({path})"
    if not path.exists():
        raise InputError(f"{what}: no such file or directory.")
    try:
        if path.is_dir():
            adata = sc.read_10x_mtx(path, var_names="gene_symbols", make_unique=True)
        elif path.suffix == ".h5ad":
            adata = ad.read_h5ad(path)
        elif path.suffix == ".h5":
            adata = sc.read_10x_h5(path)
        else:
            raise InputError(
                f"{what}: unsupported input; give an .h5ad file, a 10x .h5 file or a 10x "
                "matrix directory (matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz)."
            )
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an unreadable input
        raise InputError(f"{what}: could not be read ({type(exc).__name__}: {exc}).") from exc

    if counts_layer == RAW_COUNTS:
        if adata.raw is None:
            raise InputError(f"{what}: counts_layer '{RAW_COUNTS}' but the file has no .raw.")
        adata = adata.raw.to_adata()
    elif counts_layer is not None:
        if counts_layer not in adata.layers:
            raise InputError(
                f"{what}: counts_layer '{counts_layer}' is not a layer of the file; "
                f"its layers are {sorted(adata.layers) or 'none'} (null means X)."
            )
        adata.X = adata.layers[counts_layer]
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


def software_versions(packages) -> dict:
    """Python and the versions of the given packages, as installed where this runs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def read_counts_layer(path, with_obs: bool = False):
    """Only what training needs from preprocessed.h5ad: (counts CSR, gene names[, obs]).

    Reads ``layers/counts``, ``var`` (and ``obs``) alone, not X or .raw, so an atlas
    costs only its highly-variable-gene counts in memory.
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        counts = sp.csr_matrix(read_elem(f["layers/counts"]))
        genes = read_elem(f["var"]).index
        obs = read_elem(f["obs"]) if with_obs else None
    return (counts, genes, obs) if with_obs else (counts, genes)


def save_checkpoint(path, model, *, gene_names, model_params: dict, train_params: dict, extra: dict | None = None):
    """Write everything needed to rebuild the model and embed new cells."""
    import torch

    payload = {
        "format": "ivae-workflow/1",
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_params": {"n_genes": len(gene_names), **model_params},
        "train_params": dict(train_params),
        "gene_names": list(map(str, gene_names)),
        **(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, map_location="cpu"):
    """Return ``(model, payload)`` with the model rebuilt, weights loaded, in eval mode."""
    import torch

    from model import VAE

    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.get("format") != "ivae-workflow/1":
        raise InputError(f"{path}: not an ivae-workflow checkpoint.")
    model = VAE(**payload["model_params"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
