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


def test_the_panel_across_models(tmp_path):
    """With correlation_models.py's tables, the figure gains a row per paired test below."""
    import pandas as pd
    from matplotlib.image import imread

    from correlation_models import paired_tests
    from test_correlation_models import _table

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 8))
    after = z[:, :2] @ rng.normal(size=(2, 8))
    rows, draws = correlation_nulls(z, after, 2, n_draws=30, seed=0)
    long = pd.DataFrame([{"panel": p, "draw": i, "value": v} for p, vs in draws.items() for i, v in enumerate(vs)])
    models = _table(rng)
    kwargs = dict(dataset="toy", pdf=tmp_path / "c.pdf", png=tmp_path / "c.png")
    plot_latent_correlation(z, after, pd.DataFrame(rows), long, **kwargs)
    height = imread(tmp_path / "c.png").shape[0]
    plot_latent_correlation(z, after, pd.DataFrame(rows), long, models=models, tests=paired_tests(models), **kwargs)
    check_files(tmp_path / "c.pdf", tmp_path / "c.png", plotstyle.DOUBLE_COLUMN)
    assert imread(tmp_path / "c.png").shape[0] > height * 1.5
