"""plot_latent_correlation.py (and correlation_nulls.py): the before/after figure with its nulls. Small synthetic inputs: files, resolution, content."""

import numpy as np
import pytest

import plotstyle
from conftest import check_figure_files as check_files
from correlation_nulls import correlation_nulls
from plot_latent_correlation import plot_latent_correlation


def test_latent_correlation_with_nulls(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8))
    after = z[:, :2] @ rng.normal(size=(2, 8))  # rank 2: strongly correlated components
    rows, draws = correlation_nulls(z, after, 2, n_draws=50, seed=0)
    summary = pd.DataFrame(rows)
    assert list(summary["panel"]) == ["before", "after"] and (summary["n_draws"] == 50).all()
    before, after_row = summary.iloc[0], summary.iloc[1]
    assert before["null_high"] < 0.2 and after_row["null_mean"] > 0.4  # chance vs the architecture
    long = pd.DataFrame([{"panel": p, "draw": i, "value": v} for p, vs in draws.items() for i, v in enumerate(vs)])
    scores = plot_latent_correlation(z, after, summary, long, dataset="toy", pdf=tmp_path / "c.pdf",
                                     png=tmp_path / "c.png")
    assert scores["after"] > scores["before"] + 0.3
    assert scores["after"] == pytest.approx(after_row["observed"])
    check_files(tmp_path / "c.pdf", tmp_path / "c.png", plotstyle.DOUBLE_COLUMN)
