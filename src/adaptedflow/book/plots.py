r"""The book's single figure style: size, fonts, colour-blind-safe colours, references.

Chapters call `figure()` for a styled `(fig, ax)` (it applies the style to rcParams)
and never touch rcParams themselves, then `show(fig, name)`: the figure is glued under
`name` and placed by a ``{glue:figure}`` directive in the chapter's text, with a numbered
caption, alt text and the label `name` that the text cross-references with ``{numref}``.
Theory is dashed black (`THEORY`), measurements solid colour (`COLORS`, Okabe–Ito); each
flow or method has one colour across the whole book (`flow_color`).
"""

from __future__ import annotations

import re

import matplotlib
import matplotlib.pyplot as plt

#: Okabe–Ito colour-blind-safe palette (blue, vermilion, bluish green, orange, …).
COLORS = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442")
#: One colour per flow or method, the same in every chapter.
FLOW_COLORS = {
    "adapted": COLORS[0],            # the adapted flow (2.4) / (1.30) and adapted descent: blue
    "standard": COLORS[1],           # the standard gradient flow (1.9) and gradient descent: vermilion
    "gauss-newton": COLORS[2],       # the under-parametrized adapted flow (5.2): bluish green
    "adam": COLORS[3],               # Adam: orange
    "pseudo-inverse": COLORS[4],     # the pseudo-inverse flow across rank loss (4.6): reddish purple
    "comparison": COLORS[5],         # the comparison model (1.11) when drawn as data: sky blue
}
FLOW_COLORS["gradient-descent"] = FLOW_COLORS["standard"]
FLOW_COLORS["adapted-descent"] = FLOW_COLORS["adapted"]

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


def flow_color(name: str) -> str:
    """The colour of flow or method `name` (a key of `FLOW_COLORS`), the same in every chapter."""
    try:
        return FLOW_COLORS[name]
    except KeyError:
        raise KeyError(f"no colour for {name!r}; known flows and methods: {sorted(FLOW_COLORS)}") from None


_NAME = re.compile(r"^fig-[a-z0-9][a-z0-9\-]*$")


def show(fig, name: str) -> None:
    """Glue `fig` under `name` (e.g. ``"fig-02-rate"``) for a ``{glue:figure}`` directive in
    the chapter's text, and close it.

    The chapter places the figure where its text discusses it::

        ```{glue:figure} fig-02-rate
        :name: fig-02-rate
        :alt: One sentence saying what the figure shows.

        The caption.
        ```

    and refers to it as ``{numref}`fig-02-rate` ``. Outside IPython (a plain script) the
    figure is only closed.
    """
    if not _NAME.match(name):
        raise ValueError(f"figure names look like 'fig-02-rate' (lower case, digits, '-'); got {name!r}.")
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        from myst_nb import glue

        glue(name, fig, display=False)
    plt.close(fig)


def legend(ax, **kwargs):
    """A frameless legend."""
    return ax.legend(frameon=False, **kwargs)


def integer_ticks(axis) -> None:
    """Put ticks of `axis` (e.g. `ax.xaxis`) on integers only (indices, counts)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
