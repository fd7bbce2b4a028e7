"""plot_spectrum.py: each latent's eigenvalue spectrum. Small synthetic inputs: files, resolution, content."""

import numpy as np

import plotstyle
from conftest import check_figure_files as check_files
from plot_spectrum import plot_spectrum


def test_spectrum_figure(tmp_path):
    rng = np.random.default_rng(5)
    latents = {"iVAE": [rng.normal(size=(300, 6)) * [5, 4, 0.3, 0.3, 0.3, 0.3] for _ in range(3)],
               "VAE": [rng.normal(size=(300, 6)) for _ in range(3)],
               "VAE-narrow": [rng.normal(size=(300, 2)) for _ in range(3)]}
    table = plot_spectrum(latents, dataset="toy", pdf=tmp_path / "s.pdf", png=tmp_path / "s.png")
    pr = table.groupby("method")["participation_ratio"].mean()
    assert pr["iVAE"] < 2.5 < 5 < pr["VAE"] and table.groupby(["method", "seed"])["fraction"].sum().round(6).eq(1).all()
    check_files(tmp_path / "s.pdf", tmp_path / "s.png", plotstyle.SINGLE_COLUMN * 1.25)
    assert plotstyle.method_colour("VAE") == "#0072B2"
    assert plotstyle.method_colour("VAE", {"VAE": "#123456"}) == "#123456"  # the rule's colours first
