"""What a history shows people: `history plot`'s PNG/SVG plots, and `history --html DIR`'s one self-contained
index.html (inline SVG: no script, server, network or CDN).

    plot_history("reports/history.csv", ["step_time_ms_p50"], "reports/history")   # -> the files written
    write_page(detection, "reports/history-site")                                   # -> the path of index.html

The page opens with the verdict and the regressions table, then every change point, then one plot per metric:
each series' observations (one per commit) over the commits in first-parent order, relative to the series' first
segment, with the fitted segments drawn over them, dashed lines where an exact count of the series changed, busy
runs hollow, and each observation linked to its run's summary.md.
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedFormatter, FixedLocator

from ..columns import column
from ..report.layout import STYLE as PLOT_STYLE
from ..report.layout import Thinned, cut_groups, finish, grow, new_figure, page_caption
from ..report.plots import MARKERS, save_pages
from .changes import EXACT, NOISY, PER_GFLOP, Change, Detection
from .history import METRICS, SERIES, read_history
from .verdict import HEADER, change_cells, exit_code

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 960, 300, 56, 16, 14, 24
PAGE_SERIES = 12  # lines on one page (ten colours, then markers): more series go on further pages, a model's together
PLOTTED = 200  # the plots show the latest observations (the tables cover the whole history)
STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:12px;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}tr.now td{background:#fde8e8}tr.ack td{color:#777}
.verdict{font-size:16px;font-weight:600}.bad{color:#b00}.good{color:#070}svg{background:#fff;border:1px solid #ddd}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:18px;
height:3px;vertical-align:middle;margin-right:4px}"""
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def write_page(detection: Detection, out_dir: str, title: str = "Benchmark history") -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "index.html")
    commits = commit_axis(detection)
    now = detection.regressions
    verdict = (f'<p class="verdict bad">{len(now)} unacknowledged regression(s) in the latest segment</p>' if now
               else '<p class="verdict good">No unacknowledged regression in the latest segment</p>')
    runs = {r for s in detection.series.values() for o in s.observations for r in o.run_dirs}
    made = datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>",
             f"<p>{len(detection.series)} series, {len(runs)} runs, {len(commits)} commits; written {made} by "
             f"<code>run_bench.py history --html</code>; exit code {exit_code(detection)}.</p>", verdict,
             "<h2>Regressions</h2>", change_table(now, "now"),
             "<h2>All change points</h2>", change_table(detection.changes, ""),
             *(f"<p>note: {esc(w)}</p>" for w in detection.warnings)]
    for metric in page_metrics(detection):
        parts.append(f'<h2 id="{metric}">{metric}</h2>')
        parts.append(plot(detection, metric, commits, out_dir))
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def change_table(changes: list[Change], row_class: str) -> str:
    if not changes:
        return '<table class="changes"><tr><td>none</td></tr></table>'
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    rows = []
    for c in changes:
        cls = row_class or ("now" if c.current_regression else "ack" if c.acknowledged else "")
        rows.append(f'<tr class="{cls}">' + "".join(f"<td>{esc(cell)}</td>" for cell in change_cells(c)) + "</tr>")
    return f'<table class="changes"><tr>{head}</tr>{"".join(rows)}</table>'


def commit_axis(detection: Detection) -> dict[tuple, int]:
    """The latest PLOTTED observation keys (position, commit, runs) of all series -> their place on the x axis."""
    keys = sorted({key(o) for s in detection.series.values() for o in s.observations})[-PLOTTED:]
    return {k: i for i, k in enumerate(keys)}


def key(o) -> tuple:
    return o.position, o.ended_at, o.commit, tuple(o.run_dirs)


def page_metrics(detection: Detection) -> list[str]:
    """The noisy metrics any series has, the per-GFLOP series, and the exact counts that changed somewhere."""
    present = {m for s in detection.series.values() for m in s.metrics}
    changed = {c.metric for c in detection.changes if c.kind == "exact"}
    return [m for m in NOISY + [PER_GFLOP] if m in present] + [m for m in EXACT if m in changed]


def plot(detection: Detection, metric: str, commits: dict[tuple, int], out_dir: str) -> str:
    fits = [(name, s) for name, s in detection.series.items() if metric in s.metrics]
    n = max(len(commits), 2)
    relative = {}
    for name, s in fits:
        fit = s.metrics[metric]
        relative[name] = fit.values / baseline(fit)
    shown = [r[[key(o) in commits for o in s.observations]] for (name, s), r in zip(fits, relative.values())]
    finite = np.concatenate([r[np.isfinite(r)] for r in shown] or [np.array([1.0])])
    low, high = (float(np.min(finite)), float(np.max(finite))) if len(finite) else (0.9, 1.1)
    pad = max((high - low) * 0.08, 0.01)
    low, high = low - pad, high + pad

    def xy(i, v):
        return (LEFT + (WIDTH - LEFT - RIGHT) * i / (n - 1), TOP + (HEIGHT - TOP - BOTTOM) * (high - v) / (high - low))

    out = [f'<p>{len(commits)} latest commits in first-parent order, a mark per commit and series (hollow: every run '
           f'on a busy machine; a click opens the run\'s summary.md); y: {metric} over the series\' first segment; '
           'thick: the fitted segments; dashed: an exact count of the series changed.</p>',
           f'<svg class="plot" data-metric="{metric}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
           f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-size="11">']
    for frac in np.linspace(0, 1, 5):  # y grid and labels
        v = low + (high - low) * frac
        _, y = xy(0, v)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    legend = []
    for k, (name, s) in enumerate(fits):
        color, fit, values = COLORS[k % len(COLORS)], s.metrics[metric], relative[name]
        places = [commits.get(key(o)) for o in s.observations]
        legend.append(f'<span><i style="background:{color}"></i>{esc(name)}</span>')
        out.append(f'<g fill="{color}" stroke="{color}">')
        for c in detection.changes:  # exact count changes of this series
            if c.series == name and c.kind == "exact" and places[c.index] is not None:
                x, _ = xy(places[c.index], low)
                out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke-dasharray="4 3">'
                           f'<title>{esc(c.explanation)} at {c.commit_after[:8]}</title></line>')
        points = " ".join("%.1f,%.1f" % xy(p, v) for p, v in zip(places, values) if p is not None and np.isfinite(v))
        out.append(f'<polyline points="{points}" fill="none" stroke-opacity="0.45"/>')
        for seg in fit.segments:  # the fitted levels, where shown
            inside = [p for p in places[seg.start:seg.end] if p is not None]
            if inside:
                (x0, y0), (x1, _) = xy(inside[0], seg.value / baseline(fit)), xy(inside[-1], 0)
                out.append(f'<line x1="{x0:.1f}" x2="{max(x1, x0 + 2):.1f}" y1="{y0:.1f}" y2="{y0:.1f}" '
                           'stroke-width="3"/>')
        for obs, p, v in zip(s.observations, places, values):
            if p is None or not np.isfinite(v):
                continue
            x, y = xy(p, v)
            link = os.path.relpath(os.path.join(obs.run_dirs[0], "summary.md"), out_dir)
            hollow = ' fill="#fff"' if obs.busy else ""
            out.append(f'<a href="{esc(link)}"><circle cx="{x:.1f}" cy="{y:.1f}" r="3"{hollow}><title>'
                       f'{obs.commit[:8]}{"+dirty" if obs.dirty else ""} {v:.3f}</title></circle></a>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + f'<div class="legend">{"".join(legend)}</div>'


def baseline(fit) -> float:
    """What a series' values are shown relative to: its first segment's level."""
    base = fit.segments[0].value if fit.segments else float(np.nanmedian(fit.values))
    return base if base and np.isfinite(base) else 1.0


# --- the PNG/SVG plots of `history plot` ----------------------------------------------------------------------


def plot_history(history_csv: str, metrics: list[str], out_dir: str) -> list[str]:
    """One plot per metric: its value per run in commit order, a line per series (seeds averaged)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown history metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    history = read_history(history_csv)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with matplotlib.rc_context(PLOT_STYLE):
        for metric in metrics:
            rows = history.dropna(subset=[metric])
            if rows.empty:
                raise ValueError(f"{history_csv} holds no value of {metric} (profiling-only runs have no accuracy); "
                                 "choose another metric")
            written += save_pages(plot_pages(rows, metric), os.path.join(out_dir, f"history_{metric}"))
    return written


def plot_pages(rows: pd.DataFrame, metric: str) -> list:
    """plot_metric's figures, PAGE_SERIES lines to a page; the series of one model and task share a page where
    they fit on one."""
    keys = rows[["model", "task", "series"]].drop_duplicates().sort_values(["model", "task", "series"])
    groups = [len(g) for _, g in keys.groupby(["model", "task"], sort=True)]
    chunks = cut_groups(groups, PAGE_SERIES)
    if len(chunks) == 1:
        return [plot_metric(rows, metric)]
    offsets = np.cumsum([0, *groups])
    figures = []
    for page, chunk in enumerate(chunks):
        chosen = keys.iloc[np.concatenate([np.arange(offsets[g] + a, offsets[g] + b) for g, a, b in chunk])]
        on_page = rows[rows["series"].isin(chosen["series"])]
        figures.append(plot_metric(on_page, metric, page=(page, len(chunks)), all_runs=rows))
    return figures


def plot_metric(rows: pd.DataFrame, metric: str, page: tuple[int, int] = (0, 1), all_runs: pd.DataFrame | None = None):
    """One figure: the metric per run in first-parent order of the commits, a line per series (seeds averaged).
    all_runs: the rows whose runs make the axis (every page of a split plot shows every run)."""
    order = ["commit_position", "run_ended_at", "run_dir"]
    runs = (rows if all_runs is None else all_runs).groupby(order, sort=True).agg(
        commit=("commit", "first"), dirty=("dirty", "first"))
    runs["x"] = np.arange(len(runs))
    rows = rows.join(runs["x"], on=order)
    caption = f"{len(runs)} runs, {rows['commit'].nunique()} commits, {rows['model'].nunique()} models; " \
              f"machines {', '.join(sorted(rows['machine'].unique()))}; mean over seeds"
    unit = column(metric).unit
    fig, body, (ax,) = new_figure(f"{metric} over commits", page_caption(caption, *page))
    shown = [c for c in SERIES if c not in ("model", "method", "rank")]
    varying = [c for c in shown if rows[c].nunique() > 1]  # the legend names only what tells the lines apart
    for i, (_, group) in enumerate(rows.groupby("series", sort=True)):
        first = group.iloc[0]
        values = group.groupby("x")[metric].mean()
        label = " ".join([f"{first['model']} {first['method']} r{first['rank']:.0f}",
                          *(series_part(c, first[c]) for c in varying)])
        ax.plot(values.index, values.to_numpy(), marker=MARKERS[i // 10 % len(MARKERS)], color=f"C{i % 10}",
                markersize=6 if len(runs) <= 30 else 3, label=label)
    few = len(runs) <= 6  # a few runs: commit over date, level; more: one line each, upright, thinned
    between = "\n" if few else " "
    ticks = [f"{c[:7]}{'*' if d == 1 else ''}{between}{str(date)[:10]}"
             for (_, date, _), c, d in zip(runs.index, runs["commit"], runs["dirty"])]
    ax.xaxis.set_major_locator(FixedLocator(runs["x"].to_numpy()))
    ax.xaxis.set_major_formatter(Thinned(FixedFormatter(ticks)))
    ax.tick_params(axis="x", labelrotation=0 if few else 90)
    ax.set_xlabel("run: commit (* dirty tree) and date, in first-parent order" + ("" if few else "; every run a tick"))
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.grid(alpha=0.3)
    if not few:
        grow(fig, body, 1.2)  # the upright labels take that much of the body's height
    return finish(fig, body, [ax])


def series_part(column: str, value) -> str:
    """How a legend names a series' varying setting: b8, T64, float32, {"basis": "VrUr"}, a host, a task name."""
    if column == "batch_size":
        return f"b{value:.0f}"
    if column == "seq_len":
        return f"T{value:.0f}"
    if column == "estimated":
        return "estimated" if value == 1 else "measured"
    return str(value) or "{}"
