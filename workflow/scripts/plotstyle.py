"""One figure style for every plot of the workflow.

Journal-column sizes, editable text in vector output (TrueType in PDF, text in SVG),
colour-blind-safe palettes, the Agg backend, and one ``save`` for PDF + 300-dpi PNG.
"""


from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import methods  # noqa: E402
from rule_io import atomic_path  # noqa: E402

MM = 1 / 25.4
SINGLE_COLUMN = 89 * MM  # inches
DOUBLE_COLUMN = 183 * MM

#: Diverging map for correlations (ColorBrewer RdBu, colour-blind safe), fixed to [-1, 1].
DIVERGING = "RdBu_r"
#: Okabe-Ito qualitative palette.
OKABE_ITO = methods.OKABE_ITO
#: Sequential map for continuous values (perceptually uniform, colour-blind safe).
SEQUENTIAL = "viridis"
#: "Before" / "after" the interpretative module (Okabe-Ito blue and vermillion).
BEFORE_AFTER = ("#0072B2", "#D55E00")

RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["Arial", "Helvetica", "DejaVu Sans"],
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "axes.linewidth": 0.5,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
}


def apply() -> None:
    plt.rcParams.update(RC)


def categorical_colors(n: int) -> list:
    """``n`` distinguishable colours for categories (e.g. cell types).

    Okabe-Ito (colour-blind safe) for up to 8 categories. More than 8 cannot all be told
    apart by colour-blind readers with any palette; the documented fallback is
    matplotlib's "tab20" with its dark shades first (the first 10 categories get distinct
    hues, the light partners follow), then "tab20b" and "tab20c", cycling beyond 60.
    Figures with that many groups should not rely on colour alone (labels on the data).
    """
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    from matplotlib.colors import to_hex

    tab20 = list(plt.get_cmap("tab20").colors)
    pool = [to_hex(c) for c in tab20[0::2] + tab20[1::2]]
    pool += [to_hex(c) for name in ("tab20b", "tab20c") for c in plt.get_cmap(name).colors]
    return [pool[i % len(pool)] for i in range(n)]


def method_colour(method: str, colours: dict | None = None) -> str:
    """A method's colour in every figure: ``colours`` (method -> colour, as the rules pass
    them from the method registry, config ``compare`` included), else methods.colour."""
    if colours and method in colours:
        return colours[method]
    return methods.colour(method)


def save(fig, pdf: str | Path, png: str | Path) -> None:
    """Write ``fig`` as vector PDF and 300-dpi PNG, each atomically, then close it. The PNG
    is stored with a palette of at most 256 colours (no dithering): a third of the size of
    full colour for these plots' flat colours, so the docs' copies stay small; the PDF keeps
    every colour."""
    import io

    from PIL import Image

    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    with atomic_path(png) as tmp:
        image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            tmp, format="png", optimize=True)
