"""How a report figure is framed and its text fitted: the page (title, panels, legend, caption), measured text,
wrapping, thinned tick labels, pages, legend columns, and rows of labelled bars.

Sizes are in points (1/72 in), measured with the Agg renderer that draws the PNGs, so a label wrapped to a width
really fits it. tests/plot_geometry.py checks the result on every plot.
"""

from __future__ import annotations

import functools
import math
import re
import string

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import Formatter

# Printed small (7 x 4.5 in) the text stays legible: nothing under 9 pt.
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "figure.titlesize": 12, "svg.fonttype": "none", "svg.hashsalt": "giva-bench"}
FIGSIZE_IN = (7.0, 4.5)
MIN_FONT_PT = 9  # no text smaller (tests/plot_geometry.py checks it)
MAX_FIGURE_IN = (8.0, 11.0)  # no figure larger, a printed page: what does not fit is split into pages
PANEL_ROW_IN = 3.0  # height of one row of panels
CAPTION_PT = 9  # captions, bar labels, group names
EDGE_PT = 12  # the figure's text keeps this far from its left and right edges
BAR_LABEL_PT = 110  # a bar's label wraps at this length (it stands rotated under the bar)
LINE_SPACING = 1.2  # matplotlib's line height, in font sizes
MEASURE = RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point
BREAK_AFTER = re.compile(r"(?<=[\s/·_,;=-])")  # a long name breaks after a separator: meta-llama/ Llama-2-...


@functools.lru_cache(maxsize=4096)  # tick labels are measured at every draw
def text_width_pt(text: str, fontsize: float) -> float:
    """Width of the widest line of `text` in points."""
    font = FontProperties(size=fontsize)
    return max(MEASURE.get_text_width_height_descent(line, font, ismath=False)[0] if line else 0.0
               for line in text.split("\n"))


def text_height_pt(text: str, fontsize: float) -> float:
    """Height of `text` (all its lines) in points."""
    return (text.count("\n") + 1) * LINE_SPACING * fontsize


@functools.lru_cache(maxsize=256)
def drawn_height_pt(text: str, fontsize: float) -> float:
    """Height of `text` as matplotlib draws it, in points: a caption of many lines is taller than text_height_pt's
    estimate (its line pitch is about 1.33 font sizes, not LINE_SPACING)."""
    scratch = Figure(dpi=72)  # at 72 dpi one pixel is one point
    FigureCanvasAgg(scratch)
    return scratch.text(0, 0, text, fontsize=fontsize).get_window_extent(scratch.canvas.get_renderer()).height


def wrap(text: str, width_pt: float, fontsize: float) -> str:
    """`text` broken into lines no wider than width_pt, after spaces or separators (/ · _ , ; = -); a word
    wider than the width alone stays whole. Existing line breaks are kept."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for token in BREAK_AFTER.split(paragraph):
            if line and text_width_pt((line + token).rstrip(), fontsize) > width_pt:
                lines.append(line.rstrip())
                line = token.lstrip()
            else:
                line += token
        lines.append(line.rstrip())
    return "\n".join(lines)


def fits(text: str, width_pt: float, fontsize: float, max_lines: int) -> bool:
    """Whether `text`, wrapped to width_pt, takes at most max_lines lines, none of them wider."""
    wrapped = wrap(text, width_pt, fontsize)
    return wrapped.count("\n") < max_lines and text_width_pt(wrapped, fontsize) <= width_pt


def pages(items: list, per_page: int) -> list[list]:
    """items in order, cut into the fewest pages of at most per_page, as even as can be (8 by 6: 4 and 4)."""
    n_pages = max(1, math.ceil(len(items) / per_page))
    size = math.ceil(len(items) / n_pages)
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


class Thinned(Formatter):
    """Another formatter's tick labels, leaving out each label that would touch the last one kept (the ticks stay):
    a narrow or crowded axis shows every second, third, ... label instead of a smear."""

    GAP_PT = 4.0

    def __init__(self, inner: Formatter):
        self.inner = inner

    def set_axis(self, axis):
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def __call__(self, x, pos=None):
        return self.inner(x, pos)

    def format_ticks(self, values):
        labels = list(self.inner.format_ticks(values))
        if len(labels) < 2 or self.axis is None:
            return labels
        ax = self.axis.axes
        is_x = self.axis is ax.xaxis
        label = self.axis.get_major_ticks(len(values))[0].label1
        fontsize = label.get_fontsize()
        skew = math.radians((label.get_rotation() - (0 if is_x else 90)) % 180)  # text direction against the axis
        transform = ax.get_xaxis_transform() if is_x else ax.get_yaxis_transform()
        along = transform.transform([(v, 0) if is_x else (0, v) for v in values])[:, 0 if is_x else 1]
        along = along * 72.0 / ax.figure.dpi
        low, high = sorted(self.axis.get_view_interval())
        widths = [text_width_pt(text, fontsize) for text in labels]
        height = max(text_height_pt(text, fontsize) for text in labels)
        keep, last = [True] * len(labels), None
        for i in np.argsort(along, kind="stable"):
            if not labels[i] or not low <= values[i] <= high:  # ticks out of view are not drawn
                continue
            if last is not None and abs(along[i] - along[last]) < self.spacing(widths[i], widths[last], height, skew):
                keep[i] = False
            else:
                last = i
        return [text if k else "" for text, k in zip(labels, keep)]

    @classmethod
    def spacing(cls, width_a: float, width_b: float, height: float, skew: float) -> float:
        """Distance along the axis two neighbouring labels need: side by side half of each width, stacked their
        height, slanted (rotated x labels) whichever of height and width the slant needs less of."""
        sin, cos = abs(math.sin(skew)), abs(math.cos(skew))
        if sin < 1e-6:
            return (width_a + width_b) / 2 + cls.GAP_PT
        return min(height / sin, max(width_a, width_b) / cos if cos > 1e-6 else math.inf) + cls.GAP_PT


def legend_columns(labels: list[str], width_pt: float, fontsize: float) -> tuple[int, list[str]]:
    """(columns, labels wrapped to fit) for a legend of `labels` across width_pt: as many columns as fit."""
    handle = fontsize * (2.0 + 0.8)  # matplotlib's handlelength + handletextpad, in font sizes
    spacing = fontsize * 2.0  # columnspacing
    border = fontsize * 2 * 0.4 + 2  # borderpad on both sides, and the frame
    labels = [wrap(label, width_pt - handle - border, fontsize) for label in labels]
    widths = np.array([handle + text_width_pt(label, fontsize) for label in labels])
    for ncols in range(min(len(labels), 8), 1, -1):
        columns = [chunk.max() for chunk in np.array_split(widths, ncols)]  # matplotlib fills column by column
        if sum(columns) + spacing * (ncols - 1) + border <= width_pt:
            return ncols, labels
    return 1, labels


def cut_groups(sizes: list[int], capacity: int) -> list[list[tuple[int, int, int]]]:
    """Groups of the given sizes, in order, cut into pieces of at most `capacity` items: a piece is a list of
    (group, start, stop); a group is split only when it alone is larger than a piece."""
    pieces, piece, used = [], [], 0
    for group, size in enumerate(sizes):
        if used + size > capacity and piece:
            pieces.append(piece)
            piece, used = [], 0
        for start in range(0, size, capacity):
            stop = min(start + capacity, size)
            if used + stop - start > capacity:
                pieces.append(piece)
                piece, used = [], 0
            piece.append((group, start, stop))
            used += stop - start
    return [*pieces, piece] if piece else pieces


# --- the page ------------------------------------------------------------------------


def panel_grid(n_panels: int) -> tuple[int, int]:
    """(rows, columns) for n panels: one row up to 3, then 2 x 2, then rows of 3."""
    if n_panels <= 3:
        return 1, max(n_panels, 1)
    return (2, 2) if n_panels == 4 else (math.ceil(n_panels / 3), 3)


def new_figure(title: str, caption: str, n_panels: int = 1, grid: tuple[int, int] | None = None,
               row_height_in: float = PANEL_ROW_IN, **subplots) -> tuple[Figure, SubFigure, list]:
    """A figure whose body (a subfigure: title, panels, legend) sits above a strip holding the caption, both
    wrapped to the figure's width. `grid` (rows, columns) defaults to panel_grid(n_panels); `subplots` go to
    SubFigure.subplots (sharex, width_ratios, height_ratios)."""
    nrows, ncols = grid or panel_grid(n_panels)
    text_width = FIGSIZE_IN[0] * 72 - 2 * EDGE_PT
    caption = wrap(caption, text_width, CAPTION_PT)
    caption_in = (drawn_height_pt(caption, CAPTION_PT) + 8) / 72
    height_in = FIGSIZE_IN[1] if nrows == 1 else 1.5 + row_height_in * nrows
    fig = Figure(figsize=(FIGSIZE_IN[0], height_in + caption_in), layout="constrained")
    FigureCanvasAgg(fig)
    body, strip = fig.subfigures(2, 1, height_ratios=[height_in, caption_in])
    strip.text(EDGE_PT / (FIGSIZE_IN[0] * 72), 0.5, caption, fontsize=CAPTION_PT, color="0.3", ha="left",
               va="center")
    axes = list(body.subplots(nrows, ncols, squeeze=False, **subplots).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    body.suptitle(wrap(title, text_width, STYLE["figure.titlesize"]))
    return fig, body, axes[:n_panels]


def grow(fig: Figure, body: SubFigure, extra_in: float) -> None:
    """Make the figure taller by extra_in, all of it for the body (the caption strip keeps its height)."""
    if extra_in <= 0:
        return
    grid = body._subplotspec.get_gridspec()  # body over caption strip (a SubFigure has no public getter for it)
    ratios = list(grid.get_height_ratios())
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + extra_in)
    grid.set_height_ratios([ratios[0] + extra_in, *ratios[1:]])


def page_caption(caption: str, page: int, n_pages: int) -> str:
    return caption if n_pages == 1 else f"page {page + 1} of {n_pages}; {caption}"


def finish(fig: Figure, body: SubFigure, axes: list) -> Figure:
    """One legend for all panels, under them, in as many columns as fit; the figure grows by the legend's rows
    beyond the two its height allows for."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if not handles:
        return fig
    fontsize = STYLE["legend.fontsize"]
    ncols, labels = legend_columns(list(handles), FIGSIZE_IN[0] * 72 - 2 * EDGE_PT, fontsize)
    body.legend(list(handles.values()), labels, loc="outside lower center", ncols=ncols)
    lines = max(sum(label.count("\n") + 1 for label in column) for column in np.array_split(labels, ncols))
    grow(fig, body, (lines - 2) * 1.7 * fontsize / 72)  # a line and its spacing: 1.2 + 0.5 font sizes
    return fig


def panel_size_pt(ax) -> tuple[float, float]:
    """Room for a panel's title and x label (width) and its y label (height), before layout: its share of the
    figure body less the tick labels, titles and legend around it."""
    grid = ax.get_subplotspec().get_gridspec()
    body = ax.get_figure(root=False)
    dpi = ax.get_figure(root=True).dpi
    width = body.bbox.width * 72 / dpi / grid.ncols - 50
    height = (body.bbox.height * 72 / dpi - 110) / grid.nrows - 45
    return width, height


def label_axes(ax, title: str, ylabel: str, xlabel: str | None = None) -> None:
    """The tail every panel shares: title, axis labels (x only where not set by rank_axis), light grid, all
    wrapped to the panel."""
    width, height = panel_size_pt(ax)
    ax.set_title(wrap(title, width, STYLE["axes.titlesize"]))
    ax.set_ylabel(wrap(ylabel, height, STYLE["axes.labelsize"]))
    if xlabel is not None:
        ax.set_xlabel(wrap(xlabel, width, STYLE["axes.labelsize"]))
    ax.grid(alpha=0.3)


# --- rows of bars -----------------------------------------------------------------


class BarRow:
    """One axes' worth of bars in groups (one group per model, or per method): how far apart the bars stand, each
    bar's label (rotated when side by side they do not fit) and each group's name, under the labels, wrapped to the
    group's width or, where even wrapped it does not fit, a letter keyed in the caption."""

    WIDTH_PT = FIGSIZE_IN[0] * 72 - 2 * EDGE_PT - 60  # the axes' width: the figure's less the y axis' labels
    GAP_PT = 4

    def __init__(self, labels: list[str], groups: list[str], names: dict[str, str], key: dict[str, str]):
        """labels and groups: per bar, in order (a group's bars together); names: per group, the name to show;
        key: the page's letters so far (name -> letter), added to where a name does not fit."""
        self.labels = [wrap(label, BAR_LABEL_PT, CAPTION_PT) for label in labels]
        self.groups = groups
        self.pitch = self.WIDTH_PT / max(len(labels), 1)
        widest = max(text_width_pt(label, CAPTION_PT) for label in self.labels)
        self.rotation = 0 if widest + self.GAP_PT <= self.pitch else 90
        self.label_depth = max(text_height_pt(label, CAPTION_PT) if self.rotation == 0 else
                               text_width_pt(label, CAPTION_PT) for label in self.labels)
        self.names = {}
        for group in dict.fromkeys(groups):
            width = groups.count(group) * self.pitch - self.GAP_PT
            name = names[group]
            if not fits(name, width, CAPTION_PT, max_lines=3):
                key.setdefault(name, string.ascii_uppercase[len(key) % 26] * (1 + len(key) // 26))  # A ... Z, AA ...
                name = key[name]
            self.names[group] = wrap(name, width, CAPTION_PT)

    @staticmethod
    def pitch_needed(labels: list[str]) -> float:
        """The least distance between bars whose labels stand rotated: their lines' height and a gap."""
        lines = max(wrap(label, BAR_LABEL_PT, CAPTION_PT).count("\n") + 1 for label in labels)
        return lines * LINE_SPACING * CAPTION_PT + BarRow.GAP_PT

    def draw_axis(self, ax, with_names: bool = True) -> None:
        x = np.arange(len(self.labels))
        ax.set_xlim(-0.5, len(self.labels) - 0.5)
        if self.rotation:
            ax.set_xticks(x, self.labels, rotation=90, ha="center", va="top", fontsize=CAPTION_PT)
        else:
            ax.set_xticks(x, self.labels, fontsize=CAPTION_PT)
        starts = [i for i, group in enumerate(self.groups) if i == 0 or group != self.groups[i - 1]]
        for i in starts[1:]:
            ax.axvline(i - 0.5, color="0.7", linewidth=0.8)
        if not with_names:
            return
        below = self.label_depth + 3.5 + 3.5 + 4  # tick length and pad, then a gap
        for start, stop in zip(starts, [*starts[1:], len(self.groups)]):
            ax.annotate(self.names[self.groups[start]], ((start + stop - 1) / 2, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, -below), textcoords="offset points", ha="center", va="top", fontsize=CAPTION_PT,
                        annotation_clip=False)


def bar_pieces(bars: pd.DataFrame, group: str, labels: pd.Series) -> list[pd.DataFrame]:
    """bars (in order, `group` contiguous) cut into rows that their rotated labels leave legible."""
    capacity = max(1, int(BarRow.WIDTH_PT // BarRow.pitch_needed(list(labels))))
    names = list(dict.fromkeys(bars[group]))
    sizes = [int((bars[group] == name).sum()) for name in names]
    offsets = np.cumsum([0, *sizes])
    return [bars.iloc[np.concatenate([np.arange(offsets[g] + a, offsets[g] + b) for g, a, b in piece])]
            for piece in cut_groups(sizes, capacity)]


def stacked_bars(ax, layers: list[tuple[str, str, np.ndarray]], width: float = 0.7) -> None:
    """Bars at 0, 1, 2, ... stacked from layers (label, colour, heights), one PolyCollection per layer: hundreds of
    bars draw in a blink where a Rectangle each takes seconds. The caller sets the axes' limits."""
    x = np.arange(len(layers[0][2]))
    bottom = np.zeros(len(x))
    for label, color, heights in layers:
        top = bottom + heights
        corners = [(x - width / 2, bottom), (x + width / 2, bottom), (x + width / 2, top), (x - width / 2, top)]
        verts = np.stack([np.column_stack(corner) for corner in corners], axis=1)  # (bars, 4 corners, xy)
        ax.add_collection(PolyCollection(verts, facecolors=color, edgecolors="none", label=label), autolim=False)
        bottom = top


def key_text(key: dict[str, str]) -> str:
    return "; ".join(f"{letter}: {' '.join(name.split())}" for name, letter in key.items())
