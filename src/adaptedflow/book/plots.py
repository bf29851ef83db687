r"""The book's single figure style: size, fonts, colour-blind-safe colours, references.

Chapters call `figure()` for a styled `(fig, ax)` (it applies the style to rcParams)
and never touch rcParams themselves.
Theory is dashed black (`THEORY`), measurements solid colour (`COLORS`, Okabe–Ito).
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt

#: Okabe–Ito colour-blind-safe palette (blue, vermilion, bluish green, orange, …).
COLORS = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442")
#: Style of a theoretical curve or reference line.
THEORY = dict(color="black", linestyle="--", linewidth=1.3)

_RC = {
    "figure.figsize": (6.4, 3.8),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 10.5,
    "axes.labelsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=COLORS),
}


def figure(ncols: int = 1, *, width: float | None = None, height: float | None = None, **kwargs):
    """A styled `(fig, ax)` (or `(fig, axes)` for `ncols > 1`), constrained layout."""
    w = width or (6.4 if ncols == 1 else 4.6 * ncols)
    h = height or 3.8
    matplotlib.rcParams.update(_RC)
    return plt.subplots(1, ncols, figsize=(w, h), layout="constrained", **kwargs)


def legend(ax, **kwargs):
    """A frameless legend."""
    return ax.legend(frameon=False, **kwargs)


def integer_ticks(axis) -> None:
    """Put ticks of `axis` (e.g. `ax.xaxis`) on integers only (indices, counts)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
