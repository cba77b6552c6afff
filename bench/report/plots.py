"""The report's figures. Each plot function takes the frame prepared by summary.prepare() (all runs' rows plus
label, colour, panel, LoRA-step and init-share columns) and a caption (where each run was measured), and returns a
list of matplotlib Figures, one per page, or raises NoData naming what is missing. A plot names the models it
draws: in its panels' titles, or in a caption line of its own.

What does not fit one page legibly goes on further pages, never squeezed: at most PAGE_PANELS panels (model ·
task) a page, rows of bars no denser than their labels allow. Long names wrap (layout.py) or, where a group of
bars is too narrow for its name, become a letter keyed in the caption; crowded tick labels are thinned; legends sit
under the panels and captions wrap inside the figure. tests/plot_geometry.py checks every plot for overlapping and
clipped text, at the sizes users run.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator

from ..columns import MIB, TENSOR_CATEGORIES
from .layout import (CAPTION_PT, STYLE, BarRow, Thinned, bar_pieces, finish, key_text, label_axes, new_figure,
                     page_caption, pages, stacked_bars, text_width_pt, wrap)
from .claims import AGAINST, claim_verdicts
from .steps import share_note
from .tables import format_number
from .transfer import transfer_cells

INIT_PHASES = (("init_grad_s", "gradient"), ("init_svd_s", "SVD"), ("init_inject_s", "injection"))
PHASE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#A0A0A0")  # gradient, SVD, injection, other
CATEGORY_COLORS = ("#4C72B0", "#8172B3", "#C44E52", "#DD8452", "#55A868", "#A0A0A0")  # TENSOR_CATEGORIES' order
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "//", "..", "xx")
PAGE_PANELS = 6  # panels (model · task) on one page, 3 x 2; more go on further pages
BAR_ROWS = 3  # rows of bars on one page (memory breakdown)
BAR_ROW_IN = 2.6  # height of one row of bars, its labels and group names included
INIT_AXES_PT = 120  # init_overhead's upper axes are at least this tall (its page is laid out for more)
SCORE_LABELS = {  # y-axis label per task metric (eval_metric)
    "accuracy": "eval accuracy (fraction correct)", "f1": "eval F1 (positive class)",
    "matthews": "eval Matthews correlation", "pearson": "eval Pearson correlation",
    "spearman": "eval Spearman correlation",
}


class NoData(Exception):
    """A plot whose data the runs lack; the message says what is missing."""


# --- files ----------------------------------------------------------------------


def save_figure(fig: Figure, stem: str) -> list[str]:
    paths = [stem + ".png", stem + ".svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"Date": None})
    return paths


def save_pages(figures: list[Figure], stem: str) -> list[str]:
    """Page 1 as STEM.png and .svg, page k as STEM-k.png and .svg; pages of an earlier, longer plot are removed."""
    written = []
    for page, fig in enumerate(figures, 1):
        written += save_figure(fig, stem if page == 1 else f"{stem}-{page}")
    remove_pages(stem, keep=len(figures))
    return written


def remove_pages(stem: str, keep: int = 0) -> None:
    """Delete STEM's page files after the first `keep` pages (all of them with keep=0)."""
    folder, name = os.path.split(stem)
    page_file = re.compile(rf"{re.escape(name)}(?:-(\d+))?\.(?:png|svg)")
    for entry in os.listdir(folder or "."):
        match = page_file.fullmatch(entry)
        if match and int(match.group(1) or 1) > keep:
            os.remove(os.path.join(folder, entry))


# --- panels -------------------------------------------------------------------------


def ok_rows(data: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    rows = data[data["status"] == "ok"].dropna(subset=columns)
    if rows.empty:
        raise NoData(f"no ok row has {' and '.join(columns)} ({what})")
    return rows


def panel_order(rows: pd.DataFrame, key: str) -> list[str]:
    sizes = rows.groupby(key)["model_params"].max()
    return sorted(rows[key].unique(), key=lambda p: (np.nan_to_num(sizes.get(p, np.inf), nan=np.inf), p))


def panel_figures(rows: pd.DataFrame, title: str, caption: str, draw, per_page: int = PAGE_PANELS,
                  one_column: bool = False) -> list[Figure]:
    """A panel per model (· task), per_page to a page (one_column: stacked): draw(ax, the panel's rows, its name)
    fills each."""
    panels = panel_order(rows, "panel")
    chunks = pages(panels, per_page)
    figures = []
    for page, chunk in enumerate(chunks):
        fig, body, axes = new_figure(title, page_caption(caption, page, len(chunks)), len(chunk),
                                     grid=(len(chunk), 1) if one_column else None)
        for ax, panel in zip(axes, chunk):
            draw(ax, rows[rows["panel"] == panel], panel)
        figures.append(finish(fig, body, axes))
    return figures


def short_count(n: float) -> str:
    """12345 -> 12.3k, 2.1e6 -> 2.1M: parameter counts that fit under a bar."""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:.0f}"


def count_axis(ax, axis: str = "x") -> None:
    """Log axis of counts with ticks at 1, 2, 5 x 10^k labelled 2k, 5M, ... (thinned where they would touch)."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(subs=(1, 2, 5)))
    target.set_major_formatter(Thinned(FuncFormatter(lambda v, _: short_count(v))))
    target.set_minor_locator(NullLocator())  # 1, 2, 5 are grid enough


def rank_axis(ax, ranks) -> None:
    ranks = sorted({int(r) for r in ranks})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(ranks))
    ax.xaxis.set_major_formatter(Thinned(FixedFormatter([str(r) for r in ranks])))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("rank r (log2 scale)")


def series(rows: pd.DataFrame):
    """(style dict, group frame) per plotted line, in a stable order."""
    for (label, color, linestyle, marker), group in rows.groupby(["label", "color", "linestyle", "marker"], sort=True):
        yield dict(label=label, color=color, linestyle=linestyle, marker=marker), group


# --- the plots ----------------------------------------------------------------------


def score_rows(data: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows with a task score (and `columns`), a panel per model and task. Each task is scored by its own metric
    (eval_metric), named on its panel's y axis."""
    rows = ok_rows(data, ["eval_score", *columns], "a profiling-only run has no task score")
    return rows.assign(panel=rows["model"] + " · " + rows["task"])


def score_label(rows: pd.DataFrame) -> str:
    """The y-axis label of a panel: its task's metric (several metrics in one panel: all named)."""
    metrics = sorted(set(rows["eval_metric"]) - {""}) or ["accuracy"]
    return SCORE_LABELS.get(metrics[0], f"eval {metrics[0]}") if len(metrics) == 1 else "eval " + " / ".join(metrics)


def plot_rank_score(data: pd.DataFrame, caption: str) -> list[Figure]:
    def draw(ax, here, panel):
        for style, group in series(here):
            stats = group.groupby("rank")["eval_score"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], **style)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.2, linewidth=0)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, score_label(here))

    return panel_figures(score_rows(data, []), "Task metric vs rank (mean; band: min-max over seeds)", caption, draw)


def pareto_front(params: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (fewer parameters, higher score), by params."""
    order = np.lexsort((-accuracy, params))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def plot_params_score(data: pd.DataFrame, caption: str) -> list[Figure]:
    def draw(ax, here, panel):
        points = []
        for style, group in series(here):
            stats = group.groupby("rank")[["trainable_params", "eval_score"]].mean()
            ax.plot(stats["trainable_params"], stats["eval_score"], **{**style, "linestyle": "none"})
            points.append(stats)
        points = pd.concat(points)
        front = pareto_front(points["trainable_params"].to_numpy(), points["eval_score"].to_numpy())
        front_points = points.iloc[front]
        ax.plot(front_points["trainable_params"], front_points["eval_score"], color="black", linewidth=1,
                drawstyle="steps-post", marker="o", markersize=11, markerfacecolor="none", label="Pareto front")
        count_axis(ax)
        label_axes(ax, panel, score_label(here), "trainable parameters (count, log scale)")

    return panel_figures(score_rows(data, ["trainable_params"]),
                         "Task metric vs trainable parameters (mean over seeds)", caption, draw)


def plot_time_score(data: pd.DataFrame, caption: str) -> list[Figure]:
    def draw(ax, here, panel):
        for style, group in series(here):
            stats = group.groupby("rank")[["train_time_s", "eval_score"]].mean()
            ax.plot(stats["train_time_s"], stats["eval_score"], **style)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(Thinned(FuncFormatter(lambda v, _: f"{v:g}")))  # labels that would touch: dropped
        label_axes(ax, panel, score_label(here), "training wall time, evaluation excluded (s)")

    return panel_figures(score_rows(data, ["train_time_s"]), "Task metric vs training wall time (mean over seeds)",
                         caption, draw)


def plot_step_time(data: pd.DataFrame, caption: str) -> list[Figure]:
    def draw(ax, here, panel):
        lines = list(series(here))
        for i, (style, group) in enumerate(lines):
            stats = group.groupby("rank")[["step_time_ms_p50", "step_time_ms_p90"]].mean()
            upper = (stats["step_time_ms_p90"] - stats["step_time_ms_p50"]).clip(lower=0).fillna(0)
            dodge = 2.0 ** (0.08 * (i - (len(lines) - 1) / 2))  # bars of one rank side by side, not on top
            ax.errorbar(stats.index * dodge, stats["step_time_ms_p50"], yerr=[np.zeros(len(stats)), upper],
                        capsize=3, **style)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, "step time (ms)")
        ax.set_ylim(bottom=0)

    return panel_figures(ok_rows(data, ["step_time_ms_p50"], "no timed training steps"),
                         "Training step time vs rank (median; bar up to p90)", caption, draw)


def plot_memory(data: pd.DataFrame, caption: str) -> list[Figure]:
    """CUDA max allocated where a GPU measured it; elsewhere the tracked tensor peak (process RSS is mostly Python
    and torch themselves: about the same for every point on CPU)."""
    rows = data[data["status"] == "ok"]
    on_cuda = rows["peak_mem_source"] == "cuda_max_allocated"
    rows = rows.assign(memory=rows["peak_mem_bytes"].where(on_cuda, rows["tensor_peak_bytes"])).dropna(subset=["memory"])
    on_cuda = on_cuda[rows.index]
    if rows.empty:
        raise NoData("no ok row has peak_mem_bytes read from CUDA, or tensor_peak_bytes (a traced training step)")
    sources = [name for name, present in (("CUDA max allocated", on_cuda.any()), ("tracked tensors", (~on_cuda).any()))
               if present]

    def draw(ax, here, panel):
        for style, group in series(here):
            stats = group.groupby("rank")["memory"].mean() / MIB
            ax.plot(stats.index, stats.to_numpy(), **style)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, f"peak memory (MiB, {'/'.join(sources)})")

    return panel_figures(rows, "Peak memory of a training step vs rank (mean over seeds)", caption, draw)


def plot_flops_overhead(data: pd.DataFrame, caption: str) -> list[Figure]:
    """The adapters' own FLOPs per training step as a share of the rest of the step (the frozen base's)."""
    rows = ok_rows(data, ["flops_per_step", "adapter_flops_per_step"], "no traced training step (bench/measure/counters.py)")
    base = rows["flops_per_step"] - rows["adapter_flops_per_step"]
    rows = rows.assign(overhead=100.0 * rows["adapter_flops_per_step"] / base.where(base > 0))

    def draw(ax, here, panel):
        for style, group in series(here):
            stats = group.groupby("rank")["overhead"].mean()
            ax.plot(stats.index, stats.to_numpy(), **style)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, "adapter FLOPs (% of the base's, per step)")
        ax.set_ylim(bottom=0)

    return panel_figures(rows, "Adapter FLOPs per training step over the frozen base's", caption, draw)


def plot_memory_breakdown(data: pd.DataFrame, caption: str) -> list[Figure]:
    """Stacked bars: the tensor bytes of each category at the training step's peak, per method and rank; a row of
    bars per model (· task), cut into several rows where its bars are too many for one."""
    rows = ok_rows(data, ["tensor_peak_bytes"], "no traced training step (bench/measure/counters.py)")
    columns = [column for column, _ in TENSOR_CATEGORIES]
    bar_rows = []  # (title, bars, top of the y axis) of each row of bars; the rows of one panel share the y scale
    for panel in panel_order(rows, "panel"):
        bars = rows[rows["panel"] == panel].groupby(["label", "rank"])[columns].mean().reset_index()
        bars["tick"] = "r" + bars["rank"].astype(str)
        pieces = bar_pieces(bars, "label", bars["tick"])
        top = 1.05 * max(bars[columns].fillna(0).sum(axis=1).max() / MIB, 1e-9)
        bar_rows += [(panel if len(pieces) == 1 else f"{panel} ({k + 1} of {len(pieces)})", piece, top)
                     for k, piece in enumerate(pieces)]
    chunks = pages(bar_rows, BAR_ROWS)
    figures = []
    for page, chunk in enumerate(chunks):
        key = {}
        layouts = [BarRow(list(bars["tick"]), list(bars["label"]), {v: v for v in bars["label"]}, key)
                   for _, bars, _ in chunk]
        text = page_caption(caption + (f"\nMethods: {key_text(key)}" if key else ""), page, len(chunks))
        fig, body, axes = new_figure("Tensor memory at the training step's peak, by category (mean over seeds)", text,
                                     len(chunk), grid=(len(chunk), 1), row_height_in=BAR_ROW_IN)
        for ax, (title, bars, top), layout in zip(axes, chunk, layouts):
            stacked_bars(ax, [(name, color, bars[column].fillna(0).to_numpy() / MIB)
                              for (column, name), color in zip(TENSOR_CATEGORIES, CATEGORY_COLORS)])
            layout.draw_axis(ax)
            ax.set_ylim(0, top)
            label_axes(ax, title, "tensor memory (MiB)")
            ax.grid(axis="x", visible=False)
        figures.append(finish(fig, body, axes))
    return figures


GPU_MEMORY_GIB = (24, 40, 80, 141)  # common cards: 24 GiB (L4, RTX 4090), A100 40/80 GiB, H100 80 GiB, H200 141 GiB


def plot_memory_vs_size(data: pd.DataFrame, caption: str) -> list[Figure]:
    """Tensor peak of a training step vs model parameters against GPU memory sizes: a line per method at its largest
    rank, a band down to its smallest."""
    rows = ok_rows(data, ["tensor_peak_bytes", "model_params"], "no traced training step (bench/measure/counters.py)")
    if rows["model_params"].nunique() < 2:
        raise NoData("one model size only; it needs two or more models (e.g. `run_bench.py estimate --preset "
                     "sizes-estimate`)")
    kind = " and ".join(name for name, present in (("tracked", (rows["estimated"] != 1).any()),
                                                   ("estimated", (rows["estimated"] == 1).any())) if present)
    fig, body, (ax,) = new_figure(f"Tensor peak of a training step vs model size ({kind}; line: largest rank, "
                                  "band: down to the smallest)", f"{caption}\n{sizes_note(rows)}")
    for style, group in series(rows):
        peaks = group.groupby(["model_params", "rank"])["tensor_peak_bytes"].mean().unstack("rank") / 2**30
        ranks = sorted(peaks.columns)
        largest = peaks.ffill(axis=1).iloc[:, -1]  # at each size, the largest rank measured there
        smallest = peaks.bfill(axis=1).iloc[:, 0]
        name = f"{style['label']} r{ranks[0]}" + (f"-r{ranks[-1]}" if len(ranks) > 1 else "")
        ax.plot(largest.index, largest.to_numpy(), **{**style, "label": name})
        if len(ranks) > 1:
            ax.fill_between(largest.index, smallest.to_numpy(), largest.to_numpy(), color=style["color"], alpha=0.2,
                            linewidth=0)
    for i, gib in enumerate(GPU_MEMORY_GIB):  # names alternate sides: neighbouring sizes are close on a log axis
        ax.axhline(gib, color="0.5", linewidth=0.8, linestyle="--")
        ax.annotate(f"{gib} GiB", (0.01 if i % 2 == 0 else 0.99, gib), xycoords=("axes fraction", "data"),
                    fontsize=CAPTION_PT, color="0.3", va="bottom", ha="left" if i % 2 == 0 else "right")
    count_axis(ax)
    count_axis(ax, "y")
    ax.yaxis.set_major_formatter(Thinned(FuncFormatter(lambda v, _: f"{v:g}")))
    label_axes(ax, "", "tensor peak of one step (GiB, log scale)", "model parameters (count, log scale)")
    return [finish(fig, body, [ax])]


def plot_init_overhead(data: pd.DataFrame, caption: str) -> list[Figure]:
    """The init's cost: its time by phase for the points that timed it (init_bars), then, where points have init
    FLOPs but no init time (estimated), init FLOPs vs model size on a page of its own (init_flops_page)."""
    timed = data[(data["status"] == "ok") & data["init_total_s"].notna() & data["model_params"].notna()]
    flops = data[(data["status"] == "ok") & (data["init_flops"] > 0) & data["model_params"].notna()]
    with_flops_page = bool((flops["estimated"] == 1).any())
    if timed.empty and not with_flops_page:
        raise NoData("no ok row has init_total_s and model_params (an adapter init timing), nor init_flops of an "
                     "estimated point")
    n_pages = (len(init_bar_pieces(timed)) if not timed.empty else 0) + with_flops_page
    figures = init_bars(data, timed, caption, n_pages) if not timed.empty else []
    if with_flops_page:
        figures.append(init_flops_page(data, flops, caption, len(figures), n_pages))
    return figures


def init_bar_pieces(timed: pd.DataFrame) -> list[pd.DataFrame]:
    """The bars of init_bars, a page's worth each: per model (· task), run and method at the method's largest rank."""
    largest = timed.groupby(["run", "panel", "variant"])["rank"].transform("max")
    rows = timed[timed["rank"] == largest]
    bars = (rows.groupby(["panel", "run", "variant", "rank"], sort=False)
            .agg(model=("model", "first"), model_params=("model_params", "max"), init_total_s=("init_total_s", "mean"),
                 step_time_ms_p50=("step_time_ms_p50", "mean"), lora_step_ms=("lora_step_ms", "mean"),
                 **{p: (p, "mean") for p, _ in INIT_PHASES}).reset_index())
    bars = bars.sort_values(["model_params", "panel", "run", "variant"]).reset_index(drop=True)
    bars["tick"] = bars["variant"] + " r" + bars["rank"].astype(str)
    return bar_pieces(bars, "panel", bars["tick"])


def init_bars(data: pd.DataFrame, timed: pd.DataFrame, caption: str, n_pages: int) -> list[Figure]:
    """Stacked init phases per (model, method) at the method's largest rank, with the same time in LoRA training
    steps over each bar; the training step itself under it for scale. A page holds as many bars as their labels
    leave legible. Title and caption name the models timed, and the models of the runs that were not."""
    pieces = init_bar_pieces(timed)
    bars = pd.concat(pieces)
    runs = list(dict.fromkeys(data["run"]))
    hatch_of = {r: HATCHES[i % len(HATCHES)] for i, r in enumerate(runs)}
    names = {p: f"{p}\n({short_count(g['model_params'].iloc[0])} params)" for p, g in bars.groupby("panel")}
    counted = bool(np.isfinite(bars["init_total_s"] / (bars["lora_step_ms"] / 1000.0)).any())
    models = list(dict.fromkeys(bars["model"]))
    title = ("Adapter init time by phase vs model size (largest rank per method)" if len(models) > 1 else
             f"Adapter init time by phase, {models[0]} only: the one model with init timings (largest rank per "
             "method)")
    untimed = [m for m in models_by_size(data[data["status"] == "ok"]) if m not in models]
    note = (f"\n{', '.join(untimed)}: estimated, no init timing" + (f"; their init FLOPs on page {n_pages}"
                                                                      if len(pieces) < n_pages else "")
            if untimed else "")
    figures = []
    for page, piece in enumerate(pieces):
        key = {}
        layout = BarRow(list(piece["tick"]), list(piece["panel"]), names, key)
        text = page_caption(caption + note + (f"\nModels: {key_text(key)}" if key else ""), page, n_pages)
        fig, body, (ax_init, ax_step) = new_figure(title, text, 2, grid=(2, 1), row_height_in=2.9, sharex=True,
                                                   height_ratios=[3, 2])
        x, hatches = np.arange(len(piece)), piece["run"].map(hatch_of).tolist()
        bottom = np.zeros(len(piece))
        phases = [(label, piece[column].fillna(0).to_numpy()) for column, label in INIT_PHASES]
        phases.append(("other", np.clip(piece["init_total_s"].to_numpy() - sum(v for _, v in phases), 0, None)))
        for (label, values), color in zip(phases, PHASE_COLORS):
            ax_init.bar(x, values, bottom=bottom, color=color, label=label, width=0.7, hatch=hatches,
                        edgecolor="white")
            bottom += values
        in_steps = piece["init_total_s"] / (piece["lora_step_ms"] / 1000.0)
        labels = [(xi, top, f"={n:.2g}" if n < 10 else f"={n:.0f}")
                  for xi, top, n in zip(x, bottom, in_steps) if np.isfinite(n)]
        for xi, top, label in labels:
            ax_init.annotate(label, (xi, top), ha="center", va="bottom", fontsize=CAPTION_PT, rotation=90,
                             xytext=(0, 2), textcoords="offset points")
        # room over each bar for its label, in axes at least INIT_AXES_PT tall: top / ymax + label share <= 1
        share = [(text_width_pt(label, CAPTION_PT) + 8) / INIT_AXES_PT for _, _, label in labels]
        ymax = max([bottom.max(), *(top / max(1 - f, 0.3) for (_, top, _), f in zip(labels, share))])
        ax_init.set_ylim(0, 1.05 * max(ymax, 1e-9))
        ax_init.set_ylabel("init time (s)")
        ax_init.set_title(wrap("init by phase; over each bar (=N) the same time in LoRA training steps" if counted
                               else "init by phase (no LoRA step time in the runs to count it in steps)",
                               BarRow.WIDTH_PT, STYLE["axes.titlesize"]))
        ax_step.bar(x, piece["step_time_ms_p50"].fillna(0), color="0.55", width=0.7, hatch=hatches,
                    edgecolor="white")  # grey: the phases' colours above mean phases
        step_max = piece["step_time_ms_p50"].max()
        ax_step.set_ylim(0, 1.1 * step_max if step_max > 0 else 1.0)
        ax_step.set_ylabel(wrap("training step time, median (ms)", 110, STYLE["axes.labelsize"]))
        ax_step.set_title("one training step of each, for scale")
        layout.draw_axis(ax_init, with_names=False)
        layout.draw_axis(ax_step)
        ax_init.tick_params(axis="x", labelbottom=False)
        for ax in (ax_init, ax_step):
            ax.grid(axis="y", alpha=0.3)
        if len(runs) > 1:  # runs told apart by hatching
            for run in runs:
                ax_init.bar([0], [0], color="0.85", hatch=hatch_of[run], edgecolor="white", label=f"run {run}")
        figures.append(finish(fig, body, [ax_init]))
    return figures


def init_flops_page(data: pd.DataFrame, rows: pd.DataFrame, caption: str, page: int, n_pages: int) -> Figure:
    """Init FLOPs vs model size, a line per method and rank whose init does work: traced in a measured point
    filled, estimated hollow."""
    idle = sorted(set(data.loc[(data["status"] == "ok") & (data["init_flops"] == 0), "variant"]) - set(rows["variant"]))
    text = (caption + "\n" + sizes_note(rows)
            + (f"\nNot drawn: {', '.join(idle)}, whose init does no work (0 FLOPs)" if idle else ""))
    fig, body, (ax,) = new_figure("Adapter init FLOPs vs model size (filled: traced in a measured point; hollow: "
                                  "estimated)", page_caption(text, page, n_pages))
    size_lines(ax, rows, "init_flops")
    kind_legend(ax, (("traced, measured point", "o", "0.3"), ("estimated", "o", "white")))
    count_axis(ax)
    count_axis(ax, "y")
    ax.yaxis.set_major_formatter(Thinned(FuncFormatter(lambda v, _: short_flops(v))))
    label_axes(ax, "", "init FLOPs (log scale)", "model parameters (count, log scale)")
    return finish(fig, body, [ax])


def short_flops(n: float) -> str:
    """2.3e12 -> 2.3T: FLOP counts on an axis."""
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:.0f}"


def models_by_size(rows: pd.DataFrame) -> list[str]:
    return list(rows.sort_values(["model_params", "model"])["model"].drop_duplicates())


def sizes_note(rows: pd.DataFrame) -> str:
    """The models a plot against model size draws: each with its size and whether it was measured or estimated."""
    parts = []
    for model in models_by_size(rows):
        here = rows[rows["model"] == model]
        kinds = [kind for kind, present in (("measured", (here["estimated"] != 1).any()),
                                            ("estimated", (here["estimated"] == 1).any())) if present]
        parts.append(f"{model} ({short_count(here['model_params'].max())}, {' and '.join(kinds)})")
    return "Models: " + ", ".join(parts)


def size_lines(ax, rows: pd.DataFrame, column: str, scale: float = 1.0) -> dict[tuple, str]:
    """A line per method and rank through the mean of `column` (x scale) at each model size; markers filled where
    measured, hollow where estimated. Returns each (variant, rank)'s colour."""
    colors = {}
    for i, ((variant, rank), group) in enumerate(rows.groupby(["variant", "rank"])):
        color = colors[variant, rank] = f"C{i % 10}"  # a colour per line: the ranks of one method are lines of their own
        by_size = group.groupby(["model_params", "estimated"])[column].mean().reset_index()
        ax.plot(by_size["model_params"], scale * by_size[column], color=color, label=f"{variant} r{rank}")
        for estimated, fill in ((0, color), (1, "white")):
            points = by_size[by_size["estimated"] == estimated]
            ax.plot(points["model_params"], scale * points[column], linestyle="none", marker="o", color=color,
                    markerfacecolor=fill)
    return colors


def kind_legend(ax, kinds) -> None:
    """Legend entries for the markers' meaning: (label, marker, face colour) each."""
    for label, marker, fill in kinds:
        ax.plot([], [], linestyle="none", marker=marker, color="0.3", markerfacecolor=fill, label=label)


TRANSFER_COLOR_POINTS = 5.0
TRANSFER_PANELS = 2  # transfer matrices on one page
AGAINST_COLORS = ("#C44E52", "#4C72B0", "#55A868")  # claims.AGAINST's order: VeRA at 8r, LoRA at 8r, LoRA at r


def plot_claims(data: pd.DataFrame, caption: str) -> list[Figure]:
    """GiVA minus each comparison per rank, with its 95% interval (claims.py); hollow: undecided. The band is
    'matches'. A panel per model · task (· run), PAGE_PANELS to a page."""
    verdicts = claim_verdicts(data[data["status"] == "ok"])
    if verdicts.empty:
        raise NoData("no GiVA point with a task score beside VeRA or LoRA at 8r or LoRA at r (claims.py)")
    several_runs = verdicts["run"].nunique() > 1
    sizes = data.groupby("model")["model_params"].max()
    verdicts = verdicts.assign(panel=verdicts["model"] + " · " + verdicts["task"]
                               + (" · " + verdicts["run"] if several_runs else ""),
                               model_params=verdicts["model"].map(sizes))
    headings = [heading for _, _, heading in AGAINST]
    variants = sorted(verdicts["giva"].unique())
    margin = verdicts["margin_points"].iloc[0]

    def draw(ax, here, panel):
        ax.axhspan(-margin, margin, color="0.88", label=f"matches (±{margin:g} pt)")
        ax.axhline(0, color="0.4", linewidth=0.8)
        lines = [(h, v) for h in headings for v in variants]
        for i, (heading, variant) in enumerate(lines):
            rows = here[(here["against"] == heading) & (here["giva"] == variant)].sort_values("rank")
            if rows.empty:
                continue
            color = AGAINST_COLORS[headings.index(heading) % len(AGAINST_COLORS)]
            dodge = 2.0 ** (0.1 * (i - (len(lines) - 1) / 2))  # intervals of one rank side by side
            x = rows["rank"].to_numpy() * dodge
            label = heading if len(variants) == 1 else f"{heading} · {variant}"
            marker = MARKERS[variants.index(variant) % len(MARKERS)]
            y = rows["diff_points"].to_numpy()
            ax.errorbar(x, y, yerr=[y - rows["diff_lo_points"], rows["diff_hi_points"] - y], color=color,
                        marker="none", linestyle="none", capsize=3)
            undecided = rows["verdict"].to_numpy() == "undecided"
            ax.plot(x[~undecided], y[~undecided], linestyle="none", marker=marker, color=color, label=label)
            ax.plot(x[undecided], y[undecided], linestyle="none", marker=marker, color=color,
                    markerfacecolor="white", label=label)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, f"GiVA minus other ({here['metric'].iloc[0]}, points)")

    return panel_figures(verdicts, "GiVA at r minus VeRA and LoRA (95% interval; hollow: undecided)", caption, draw)


def plot_init_share_size(data: pd.DataFrame, caption: str) -> Figure:
    """The init's share of a fine-tuning run of one length (steps.share_steps) vs model size, in FLOPs: a line per
    method (and rank) whose init does work, measured points filled, estimated hollow; squares: wall time."""
    rows = ok_rows(data, ["share_flops", "model_params"], "no traced init and training step")
    rows = rows[rows["init_flops"] > 0]
    if rows.empty:
        raise NoData("no method whose init does work (GiVA, PiSSA, EVA, ...: init_flops > 0)")
    if rows["model_params"].nunique() < 2:
        raise NoData("one model size only; it needs two or more (e.g. `run_bench.py estimate --preset "
                     "sizes-estimate` reported together with a run)")
    steps = int(data["share_steps"].iloc[0])
    fig, body, (ax,) = new_figure(f"Init share of a {steps:,}-step fine-tuning vs model size (FLOPs; squares: wall "
                                  "time)", f"{caption}\n{share_note(data)}.\n{sizes_note(rows)}")
    colors = size_lines(ax, rows, "share_flops", 100)
    for key, group in rows.groupby(["variant", "rank"]):
        timed = group.groupby("model_params")["share_time"].mean().dropna()
        ax.plot(timed.index, 100 * timed.to_numpy(), linestyle="none", marker="s", color=colors[key])
    kind_legend(ax, (("FLOPs, measured", "o", "0.3"), ("FLOPs, estimated", "o", "white"),
                     ("wall time, measured", "s", "0.3")))
    ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle="--")
    ax.annotate("1%", (0.01, 1.0), xycoords=("axes fraction", "data"), fontsize=CAPTION_PT, color="0.3", va="bottom")
    count_axis(ax)
    shares = 100 * pd.concat([rows["share_flops"], rows["share_time"]]).dropna()
    percent_axis(ax, shares.min(), shares.max())
    label_axes(ax, "", f"init share of a {steps:,}-step run (%, log scale)", "model parameters (count, log scale)")
    return finish(fig, body, [ax])


def percent_axis(ax, low: float, high: float) -> None:
    """Log y axis of percentages with ticks at 1, 2, 5 x 10^k labelled 0.2%, 1%, 5%, ..., spanning low..high and
    the 1% line."""
    ax.set_yscale("log")
    ax.set_ylim(min(low, 1.0) / 1.6, max(high, 1.0) * 1.6)
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(Thinned(FuncFormatter(lambda v, _: percent(v))))
    ax.yaxis.set_minor_locator(NullLocator())


def percent(value: float) -> str:
    """0.05 -> 0.05%, 2 -> 2%: as many decimals as the value's first digit needs."""
    return f"{value:.{max(0, -math.floor(math.log10(value) + 1e-9))}f}%" if value > 0 else "0%"


def plot_transfer(data: pd.DataFrame, caption: str) -> list[Figure]:
    """Transfer matrices (transfer.py), PAGE_PANELS to a page: the task the init read against the task trained;
    colour and lower number: the change against the init on the train task itself, in points."""
    cells = transfer_cells(data[data["status"] == "ok"])
    if cells.empty:
        raise NoData("no point names an init_task (method option init_task)")
    several_runs = cells["run"].nunique() > 1
    sizes = data.groupby("model")["model_params"].max()
    cells = cells.assign(panel=cells["model"] + " · " + cells["matrix"] + (" · " + cells["run"] if several_runs else ""),
                         model_params=cells["model"].map(sizes))
    # colours saturate at the largest change, and at 5 points at least: changes of a point or two stay pale
    limit = max(TRANSFER_COLOR_POINTS, np.nanmax(np.abs(cells["change_points"].to_numpy(dtype=float))))

    def draw(ax, here, panel):
        sources = list(dict.fromkeys(zip(here["source"], here["reference"])))
        tasks = list(dict.fromkeys(here["task"]))
        change = np.full((len(sources), len(tasks)), np.nan)
        for _, cell in here.iterrows():
            i, j = sources.index((cell["source"], cell["reference"])), tasks.index(cell["task"])
            change[i, j] = cell["change_points"]
            own = cell["source"] == cell["task"] and not cell["reference"]
            dark = abs(np.nan_to_num(cell["change_points"])) > 0.6 * limit  # white text on the deep colours
            against_own = "own" if own else format_number(cell["change_points"], "+.1f")
            ax.annotate(f"{cell['score']:.3f}\n{against_own}", (j, i), ha="center", va="center", fontsize=CAPTION_PT, color="white" if dark else "black")
        image = ax.imshow(change, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(tasks)), [f"{t}\n({here.loc[here['task'] == t, 'metric'].iloc[0]})" for t in tasks])
        ax.set_yticks(range(len(sources)), [f"{s} (ref.)" if reference else s for s, reference in sources])
        label_axes(ax, panel, "init read", "trained on")
        ax.grid(False)
        ax.figure.colorbar(image, ax=ax, label="change vs own (points)")

    # a matrix needs the page's width for its row names and cells: TRANSFER_PANELS to a page, one above the other
    return panel_figures(cells, "Init from another task: score, and change vs its own (points)", caption, draw,
                         per_page=TRANSFER_PANELS, one_column=True)


PLOTS = [  # (file name, title in summary.md, function); each function returns its pages
    ("rank_score", "Task metric vs rank", plot_rank_score),
    ("params_score", "Task metric vs trainable parameters (Pareto front)", plot_params_score),
    ("time_score", "Task metric vs training wall time", plot_time_score),
    ("step_time_rank", "Step time vs rank", plot_step_time),
    ("memory_rank", "Peak memory vs rank", plot_memory),
    ("init_overhead", "Adapter init overhead", plot_init_overhead),
    ("memory_breakdown", "Tensor memory by category per method and rank", plot_memory_breakdown),
    ("flops_overhead", "Adapter FLOPs over the frozen base vs rank", plot_flops_overhead),
    ("memory_size", "Tensor memory peak vs model size, against GPU memory", plot_memory_vs_size),
    ("claims", "Claim check: GiVA at r minus VeRA and LoRA, with 95% intervals", plot_claims),
    ("init_share_size", "Init share of a fine-tuning run of one length vs model size", plot_init_share_size),
    ("transfer", "Bases from another task: transfer matrix", plot_transfer),
]
