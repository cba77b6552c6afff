"""Is a figure's text legible? A geometry check from matplotlib's own text extents, not a visual judgement.

    problems = text_problems(fig)     # [] when every drawn text is clear of the others and inside the figure
    assert_legible(fig)               # the same, as an assertion that lists every problem

The figure is drawn once (Agg); every text artist that the draw really puts on the canvas is collected (tick
labels of ticks out of view, texts of hidden axes, empty strings and annotations outside their axes are not
drawn, so not checked): titles, axis labels, tick labels, annotations, legend entries and titles, captions.
Each text is its rotated rectangle (its extent at rotation 0, turned about the centre of its drawn box), and
problems are:
- two rectangles that overlap by more than `tolerance_px` (separating-axis test, so 60-degree tick labels side by
  side are not mistaken for overlapping boxes); a legend is also one box, its frame, against every text outside
  it (a legend drawn over a title hides it even where no two glyphs touch),
- a rectangle or legend that reaches past the figure's edge by more than `tolerance_px`,
- a font smaller than `min_font_pt` (legibility is not bought by shrinking the text),
- a figure larger than `max_size_in` (nor by growing the page without bound: split it into pages instead).
Use it on any figure: `for fig in figures: assert_legible(fig)`.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.legend import Legend
from matplotlib.text import Text

from bench.report.layout import MAX_FIGURE_IN, MIN_FONT_PT


@contextlib.contextmanager
def drawn_artists():
    """Collects the texts and legends drawn while the block runs (their draw methods wrapped for the duration)."""
    drawn, originals = [], {kind: kind.draw for kind in (Text, Legend)}

    def recording(original):
        def draw(self, renderer):
            original(self, renderer)
            drawn.append(self)
        return draw

    for kind, original in originals.items():
        kind.draw = recording(original)
    try:
        yield drawn
    finally:
        for kind, original in originals.items():
            kind.draw = original


def text_corners(text: Text, renderer) -> np.ndarray:
    """The 4 corners (pixels) of the text's rectangle as drawn: its unrotated extent, turned by its rotation about
    the centre of its drawn (axis-aligned) box, which is the rotated rectangle's centre."""
    drawn = Text.get_window_extent(text, renderer)  # Text's own: an annotation's arrow is not text
    rotation = text.get_rotation()
    if rotation % 180 == 0:
        return box_corners(drawn)
    text.set_rotation(0)
    try:
        flat = Text.get_window_extent(text, renderer)
    finally:
        text.set_rotation(rotation)
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [flat.width / 2, flat.height / 2]
    angle = math.radians(rotation)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return half @ turn.T + [(drawn.x0 + drawn.x1) / 2, (drawn.y0 + drawn.y1) / 2]


def shrink(corners: np.ndarray, by: float) -> np.ndarray:
    """The rectangle with each side moved `by` pixels inwards (a side shorter than 2 `by` shrinks to its middle)."""
    centre = corners.mean(axis=0)
    u, v = ((w / 2) * max(0.0, 1 - 2 * by / max(float(np.linalg.norm(w)), 1e-12))
            for w in (corners[1] - corners[0], corners[3] - corners[0]))
    return centre + np.array([-u - v, u - v, u + v, v - u])


def rectangles_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two rectangles given by their corners in order."""
    for corners in (a, b):
        for edge in (corners[1] - corners[0], corners[3] - corners[0]):
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def box_corners(bbox) -> np.ndarray:
    return np.array([[bbox.x0, bbox.y0], [bbox.x1, bbox.y0], [bbox.x1, bbox.y1], [bbox.x0, bbox.y1]])


def describe(artist) -> str:
    if isinstance(artist, Legend):
        entries = [t.get_text() for t in artist.get_texts()]
        return f"the legend ({entries[0]!r}, ...)" if entries else "a legend"
    words = " ".join(artist.get_text().split())
    return repr(words if len(words) <= 40 else words[:37] + "...")


def text_problems(fig, tolerance_px: float = 1.0, min_font_pt: float = MIN_FONT_PT,
                  max_size_in: tuple[float, float] = MAX_FIGURE_IN) -> list[str]:
    """Every overlap, clipped text, too small font and oversized figure of `fig`, drawn with Agg; [] if none.
    A legend counts as one box (its frame) against the texts outside it, so a legend drawn over a title is found
    even where no two glyphs touch."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    with drawn_artists() as drawn:
        fig.draw_without_rendering()  # the whole layout and every draw call, no pixels
    renderer = fig.canvas.get_renderer()
    problems = []
    width_in, height_in = fig.get_size_inches()
    if width_in > max_size_in[0] + 1e-6 or height_in > max_size_in[1] + 1e-6:
        problems.append(f"the figure is {width_in:.1f} x {height_in:.1f} in, over {max_size_in[0]} x "
                        f"{max_size_in[1]} in: split it into pages")
    drawn = list(dict.fromkeys(drawn))  # an artist drawn twice counts once
    legends = [a for a in drawn if isinstance(a, Legend)]
    owner = {id(t): legend for legend in legends for t in (*legend.get_texts(), legend.get_title())}
    texts = [a for a in drawn if isinstance(a, Text) and a.get_text().strip()]
    for text in texts:
        if text.get_fontsize() < min_font_pt:
            problems.append(f"{describe(text)} is set in {text.get_fontsize():g} pt, under {min_font_pt:g} pt")
    artists = texts + legends
    boxes = [text_corners(t, renderer) for t in texts] + [box_corners(g.get_window_extent(renderer)) for g in legends]
    for artist, corners in zip(artists, boxes):
        out = max(-corners[:, 0].min(), corners[:, 0].max() - fig.bbox.width, -corners[:, 1].min(),
                  corners[:, 1].max() - fig.bbox.height)
        if out > tolerance_px:
            problems.append(f"{describe(artist)} reaches {out:.0f} px past the figure's edge")
    inner = [shrink(c, tolerance_px) for c in boxes]
    low, high = np.array([c.min(axis=0) for c in inner]), np.array([c.max(axis=0) for c in inner])
    for i, a in enumerate(artists):
        near = np.nonzero((low[i + 1:] < high[i]).all(axis=1) & (high[i + 1:] > low[i]).all(axis=1))[0] + i + 1
        for j in near:  # boxes that touch: test the rotated rectangles themselves
            b = artists[j]
            if owner.get(id(a)) is b or owner.get(id(b)) is a:
                continue  # a legend's own entries are inside its frame
            if rectangles_overlap(inner[i], inner[j]):
                problems.append(f"{describe(a)} overlaps {describe(b)}")
    return problems


def assert_legible(fig, what: str = "figure", **limits) -> None:
    problems = text_problems(fig, **limits)
    assert not problems, f"{what}: {len(problems)} legibility problems:\n  " + "\n  ".join(problems)
