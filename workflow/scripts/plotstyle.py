"""One figure style for every plot of the workflow.

Journal-column sizes, editable text in vector output (TrueType in PDF, text in SVG),
colour-blind-safe palettes, the Agg backend, and one ``save`` for PDF + 300-dpi PNG.
"""


from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common_io import atomic_path  # noqa: E402

MM = 1 / 25.4
SINGLE_COLUMN = 89 * MM  # inches
DOUBLE_COLUMN = 183 * MM

#: Diverging map for correlations (ColorBrewer RdBu, colour-blind safe), fixed to [-1, 1].
DIVERGING = "RdBu_r"
#: Okabe-Ito qualitative palette.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]

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


def save(fig, pdf: str | Path, png: str | Path) -> None:
    """Write ``fig`` as vector PDF and 300-dpi PNG, each atomically, then close it."""
    for path in (pdf, png):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip("."))
    plt.close(fig)
