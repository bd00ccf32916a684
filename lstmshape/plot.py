"""``inspect --plot FILE.png``: the length histogram and what each maxlen costs, as one picture.

matplotlib (the ``plot`` extra) is imported only here and only when a plot is asked for;
:func:`import_matplotlib` says how to install it when it is missing. The figure is drawn on a
``Figure`` of its own with the Agg canvas -- never through pyplot, so a notebook's backend and
open figures are left alone -- in matplotlib's default style with fixed fonts and sizes (a
user's ``matplotlibrc`` does not change it), and saved without the ``Software`` version stamp:
the same lengths give the same bytes, so a Makefile rule on the PNG does not re-run needlessly.
The PNG goes through a temp file beside it and is renamed into place only when complete.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import LstmshapeError
from .io.output import OutputSet, check_writable_folder
from .ops.tradeoffs import MaxlenTradeoff, share_curves

INSTALL_HINT = "pip install 'lstmshape[plot]'"
#: Inches at a fixed resolution: the same pixel size everywhere (README, CI artefacts).
FIGURE_SIZE = (8.0, 6.0)
DPI = 100
FONT_SIZE = 9
#: At most this many histogram bars and curve points: a picture, not a data dump.
HISTOGRAM_BINS = 60
CURVE_POINTS = 600


class MatplotlibMissing(LstmshapeError):
    """matplotlib (the ``plot`` extra) is not installed but ``--plot`` was asked for."""


def import_matplotlib(purpose: str) -> Any:
    """The ``matplotlib`` module, imported now; :class:`MatplotlibMissing` if it is absent.

    Example:
        >>> import_matplotlib("--plot x.png").__name__
        'matplotlib'
    """
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibMissing(f"{purpose} needs matplotlib, which is not installed: "
                                f"{INSTALL_HINT}") from None
    return matplotlib


def curve_maxlens(longest: int) -> np.ndarray:
    """The maxlens the curves are drawn at: every one up to ``longest`` while that is few.

    Example:
        >>> curve_maxlens(5).tolist(), len(curve_maxlens(10**6))
        ([0, 1, 2, 3, 4, 5], 600)
    """
    if longest < CURVE_POINTS:
        return np.arange(longest + 1, dtype=np.int64)
    return np.unique(np.linspace(0, longest, CURVE_POINTS).round().astype(np.int64))


def histogram_edges(lengths: np.ndarray) -> np.ndarray:
    """Bin edges from the shortest to the longest length, at most 60 bins, each bin centred on
    whole lengths (a bar of sequences of length L stands over L on the maxlen axis below).

    Example:
        >>> histogram_edges(np.array([3, 7])).tolist()
        [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    """
    low, high = int(lengths.min()), int(lengths.max())
    width = max(1, math.ceil((high - low + 1) / HISTOGRAM_BINS))
    return np.arange(low, high + width + 1, width, dtype=np.int64) - 0.5


def candidate_marks(rows: Sequence[MaxlenTradeoff]) -> list[tuple[int, str, bool]]:
    """One ``(maxlen, label, marked)`` per distinct maxlen; tied candidates share one label.

    Example:
        >>> from lstmshape.ops.tradeoffs import maxlen_tradeoffs
        >>> candidate_marks(maxlen_tradeoffs([2, 4, 4, 10], features=1, itemsize=4))
        [(4, 'p50=p75', False), (10, 'p90=p95=p99=max', True)]
    """
    marks: dict[int, tuple[list[str], bool]] = {}
    for row in rows:
        labels, marked = marks.get(row.maxlen, ([], False))
        marks[row.maxlen] = ([*labels, row.candidate], marked or row.pad_p95)
    return [(maxlen, "=".join(labels), marked) for maxlen, (labels, marked) in marks.items()]


def write_length_plot(path: str, lengths: npt.ArrayLike, rows: Sequence[MaxlenTradeoff],
                      title: str) -> None:
    """Draw the length histogram and the padded/dropped share curves to the PNG ``path``.

    ``rows`` (from :func:`~lstmshape.ops.tradeoffs.maxlen_tradeoffs`) give the candidate
    maxlens, drawn as vertical lines (the ``pad --maxlen p95`` one solid), and the padded share
    left after bucketing at each of them, drawn as points.

    Example:
        >>> import os, tempfile
        >>> from lstmshape.ops.tradeoffs import maxlen_tradeoffs
        >>> lengths = [3, 5, 5, 8, 20]
        >>> path = os.path.join(tempfile.mkdtemp(), "lengths.png")
        >>> write_length_plot(path, lengths, maxlen_tradeoffs(lengths, features=2, itemsize=4),
        ...                   "example")
        >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    import_matplotlib(f"--plot {path}")
    from matplotlib import rc_context
    from matplotlib import style as matplotlib_style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_writable_folder(path)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    # matplotlib's own defaults, not the user's matplotlibrc; a font matplotlib ships
    # text.parse_math off: a file name like "run$1.h5" is text, not TeX math
    with matplotlib_style.context("default"), warnings.catch_warnings(), rc_context(
            {"font.family": "DejaVu Sans", "font.size": FONT_SIZE, "text.parse_math": False}):
        # a name in a script DejaVu lacks draws as boxes; matplotlib's warning per glyph would
        # add lines to stderr for a picture that is otherwise fine
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        lengths_axes, shares_axes = figure.subplots(2, 1, sharex=True)
        draw(lengths_axes, shares_axes, lengths, rows)
        figure.suptitle(title)
        with OutputSet() as outputs, outputs.writing(path) as temp:
            figure.savefig(temp, format="png", dpi=DPI, metadata={"Software": None})


def draw(lengths_axes: Any, shares_axes: Any, lengths: np.ndarray,
         rows: Sequence[MaxlenTradeoff]) -> None:
    """The two panels: lengths above, the shares against maxlen below, candidates on both."""
    if lengths.size:
        edges = histogram_edges(lengths)
        counts, _ = np.histogram(lengths, bins=edges)
        lengths_axes.stairs(counts, edges, fill=True, color="#4c72b0")
    lengths_axes.set_ylabel("sequences")
    lengths_axes.yaxis.get_major_locator().set_params(integer=True)  # counts: no 0.2 ticks
    lengths_axes.set_title(f"{lengths.size:,} sequences by length", loc="left")
    longest = int(lengths.max()) if lengths.size else 0
    maxlens = curve_maxlens(longest)
    padded, dropped = share_curves(lengths, maxlens)
    shares_axes.plot(maxlens, padded * 100, color="#c44e52", label="padded share of the tensor")
    shares_axes.plot(maxlens, dropped * 100, color="#55a868",
                     label="real timesteps dropped (truncated)")
    if rows:
        shares_axes.plot([row.maxlen for row in rows],
                         [row.bucketed_padded_share * 100 for row in rows], "o", color="#8172b3",
                         label=f"padded share after batch --bucket-by-length "
                               f"--size {rows[0].batch_size}")
    shares_axes.set_ylim(-2, 102)
    shares_axes.set_ylabel("share (%)")
    shares_axes.set_xlabel("maxlen (timesteps)")
    shares_axes.set_title("what each maxlen costs", loc="left")
    right_edge = max(longest, 1)
    for index, (maxlen, label, marked) in enumerate(candidate_marks(rows)):
        for axes in (lengths_axes, shares_axes):
            axes.axvline(maxlen, color="black", linewidth=1.4 if marked else 0.8,
                         linestyle="-" if marked else ":")
        # neighbouring candidates (p99 and max are often a step apart) get labels at different
        # heights; labels near the right edge go left of their line, to stay inside the axes
        to_left = maxlen > 0.8 * right_edge
        lengths_axes.annotate(
            f"{label} = {maxlen}" + ("  (pad --maxlen p95)" if marked else ""),
            (maxlen, 0.95 - 0.09 * (index % 6)), xycoords=("data", "axes fraction"),
            xytext=(-3 if to_left else 3, 0), textcoords="offset points", va="top",
            ha="right" if to_left else "left", fontsize=FONT_SIZE - 1,
            fontweight="bold" if marked else "normal",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                  "alpha": 0.8})
    shares_axes.legend(loc="upper right", frameon=False)
