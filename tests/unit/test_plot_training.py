"""plot_training.py: the training curves. Small synthetic inputs: files, resolution, content."""

import numpy as np
import pandas as pd

import plotstyle
from conftest import check_figure_files as check_files
from plot_training import _style as training_style
from plot_training import plot_training_curves


def fake_log(epochs=30, irecon=5.0, seed=0, kept=None):
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    recon = 700 + 500 * np.exp(-e / 3) + rng.normal(scale=3, size=epochs)
    ir = irecon * (recon + 20)
    kl = 15 + 40 * np.exp(-e / 2)
    zero = np.zeros(epochs)
    frame = pd.DataFrame({"epoch": e, "seconds": 0.2, "loss": recon + ir + kl, "recon": recon, "irecon": ir,
                          "kl": kl, "dip": zero, "tc": zero, "mmd": zero})
    for term in ("loss", "recon", "irecon", "kl"):
        frame[f"val_{term}"] = frame[term] * 1.02 + np.where(e > 20, e - 20, 0)  # held out: overfits late
    frame["selected"] = e == (kept or epochs)
    return frame


def test_training_curves_one_panel_per_objective(tmp_path):
    logs = {"iVAE": fake_log(kept=20), "VAE": fake_log(irecon=0.0, seed=1), "VAE-narrow": fake_log(irecon=0.0, seed=2)}
    titles = plot_training_curves(logs, dataset="toy", pdf=tmp_path / "t.pdf", png=tmp_path / "t.png",
                                  irecon={"iVAE": 5.0})
    assert titles == ["iVAE: its objective", "VAE: its objective", "VAE-narrow: its objective",
                      "Held-out reconstruction (all models)"]
    check_files(tmp_path / "t.pdf", tmp_path / "t.png", plotstyle.DOUBLE_COLUMN)


def test_training_epoch_ticks_are_whole_numbers():
    """An atlas trains for 2 epochs (epochs: auto): the epoch axis has no ticks at 1.25 or 1.5."""
    import matplotlib.pyplot as plt

    for epochs in (2, 3, 250):
        fig, ax = plt.subplots()
        ax.plot(np.arange(1, epochs + 1), np.linspace(1, 0, epochs))
        training_style(ax, "Loss per cell")
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (epochs, ticks)
        plt.close(fig)
