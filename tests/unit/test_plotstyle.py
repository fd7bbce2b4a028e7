"""plotstyle.py: palettes and method colours. Small synthetic inputs: files, resolution, content."""


import plotstyle


def test_categorical_colors_okabe_ito_then_distinct_fallback():
    assert plotstyle.categorical_colors(8) == plotstyle.OKABE_ITO
    many = plotstyle.categorical_colors(20)
    assert len(set(many)) == 20


def test_save_writes_a_pdf_and_a_small_palette_png_close_to_full_colour(tmp_path):
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from plotstyle import save

    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter(*rng.normal(size=(2, 500)), c=rng.uniform(size=500), cmap="viridis", s=4)
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # full colour, the same settings
    buffer.seek(0)
    full = np.asarray(Image.open(buffer).convert("RGB")).astype(int)
    save(fig, tmp_path / "f.pdf", tmp_path / "f.png")
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")
    image = Image.open(tmp_path / "f.png")
    assert image.mode == "P" and len(image.getcolors(257)) <= 256
    png = np.asarray(image.convert("RGB")).astype(int)
    assert png.shape == full.shape
    assert np.abs(png - full).mean() < 3  # of 255: what a reader sees is the full-colour figure
    assert (tmp_path / "f.png").stat().st_size < len(buffer.getvalue())
