"""plot_metrics.py: the metrics figure and its caption. Small synthetic inputs: files, resolution, content."""

import numpy as np
import pandas as pd

import plotstyle
from conftest import check_figure_files as check_files
from plot_metrics import plot_metrics, seeds_caption


def fake_metrics(reference="labels"):
    rng = np.random.default_rng(0)
    rows = []
    for method, seeds in (("iVAE", 3), ("VAE", 3), ("VAE-narrow", 3), ("PCA", 1), ("ICA", 1), ("NMF", 1), ("FA", 1)):
        for seed in range(seeds):
            rows.append({"method": method, "seed": seed, "NMI": rng.uniform(0.5, 0.9), "ARI": rng.uniform(0.4, 0.8),
                         "ASW": rng.uniform(0.1, 0.4), "CH": rng.uniform(200, 2000), "DB": rng.uniform(0.9, 2.0),
                         "ASW_kmeans": rng.uniform(0.3, 0.6), "CH_kmeans": rng.uniform(500, 3000),
                         "DB_kmeans": rng.uniform(0.5, 1.0), "corr_score": rng.uniform(0, 3),
                         "participation_ratio": rng.uniform(1, 8),
                         "test_iwae_nll": rng.uniform(600, 700) if seeds > 1 else np.nan, "reference": reference})
    return pd.DataFrame(rows)


def test_metrics_panels(tmp_path):
    drawn = plot_metrics(fake_metrics(), dataset="toy", pdf=tmp_path / "m.pdf", png=tmp_path / "m.png")
    assert drawn == ["ARI", "NMI", "ASW", "CH", "DB", "ASW_kmeans", "CH_kmeans", "DB_kmeans", "corr_score",
                     "participation_ratio", "test_iwae_nll"]
    check_files(tmp_path / "m.pdf", tmp_path / "m.png", plotstyle.DOUBLE_COLUMN)


def test_metrics_caption_says_what_the_bars_are():
    table = fake_metrics()
    assert seeds_caption(table) == "Trained models: mean \u00b1 s.d. over 3 training seeds, dots = seeds"
    one = table[table["seed"] == 0]
    assert seeds_caption(one) == "Trained models: one training seed each (no s.d.; evaluation.seeds sets more)"
    uneven = table[(table["method"] != "VAE") | (table["seed"] == 0)]
    assert "over several training seeds" in seeds_caption(uneven)


def test_metrics_missing_column_and_nan(tmp_path):
    table = fake_metrics("clusters").drop(columns="CH")
    table.loc[2, "ASW"] = np.nan
    drawn = plot_metrics(table, dataset="toy", pdf=tmp_path / "m.pdf", png=tmp_path / "m.png")
    assert "CH" not in drawn and "ASW" in drawn
