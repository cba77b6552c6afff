"""The report's figures. Each plot function takes the frame prepared by
summary.prepare() (all runs' rows plus label, colour and panel columns) and a
caption, and returns a matplotlib Figure, or raises NoData naming what is missing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from ..columns import MIB, TENSOR_CATEGORIES
from .claims import AGAINST, claim_verdicts
from .transfer import transfer_cells

INIT_PHASES = (("init_grad_s", "gradient"), ("init_svd_s", "SVD"), ("init_inject_s", "injection"))
PHASE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#A0A0A0")  # gradient, SVD, injection, other
CATEGORY_COLORS = ("#4C72B0", "#8172B3", "#C44E52", "#DD8452", "#55A868", "#A0A0A0")  # TENSOR_CATEGORIES' order
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "//", "..", "xx")
# Printed small (7 x 4.5 in) the text stays legible: nothing under 9 pt.
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "figure.titlesize": 12, "svg.fonttype": "none", "svg.hashsalt": "giva-bench"}
FIGSIZE_IN = (7.0, 4.5)
SCORE_LABELS = {  # y-axis label per task metric (eval_metric)
    "accuracy": "eval accuracy (fraction correct)", "f1": "eval F1 (positive class)",
    "matthews": "eval Matthews correlation", "pearson": "eval Pearson correlation",
    "spearman": "eval Spearman correlation",
}


class NoData(Exception):
    """A plot whose data the runs lack; the message says what is missing."""


def save_figure(fig: Figure, stem: str) -> list[str]:
    paths = [stem + ".png", stem + ".svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"Date": None})
    return paths


def ok_rows(data: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    rows = data[data["status"] == "ok"].dropna(subset=columns)
    if rows.empty:
        raise NoData(f"no ok row has {' and '.join(columns)} ({what})")
    return rows


def new_figure(title: str, caption: str, n_panels: int = 1, width_ratios=None) -> tuple[Figure, SubFigure, list]:
    """A figure whose body (a subfigure: title, panels, legend) sits above a strip holding the caption."""
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    height_in = FIGSIZE_IN[1] if nrows == 1 else 1.5 + 3.0 * nrows
    caption_in = 0.1 + 0.17 * (caption.count("\n") + 1)
    fig = Figure(figsize=(FIGSIZE_IN[0], height_in + caption_in), layout="constrained")
    FigureCanvasAgg(fig)
    body, strip = fig.subfigures(2, 1, height_ratios=[height_in, caption_in])
    strip.text(0.01, 0.5, caption, fontsize=9, color="0.3", ha="left", va="center")
    axes = list(body.subplots(nrows, ncols, squeeze=False, width_ratios=width_ratios).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    body.suptitle(title)
    return fig, body, axes[:n_panels]


def panel_order(rows: pd.DataFrame, key: str) -> list[str]:
    sizes = rows.groupby(key)["model_params"].max()
    return sorted(rows[key].unique(), key=lambda p: (np.nan_to_num(sizes.get(p, np.inf), nan=np.inf), p))


def finish(fig: Figure, body: SubFigure, axes: list) -> Figure:
    """One legend for all panels, under them."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    widest = max((len(label) for label in handles), default=1)
    ncols = max(1, min(len(handles), 4, 80 // (widest + 6)))  # ~80 characters fit across 7 inches at 9 pt
    body.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=ncols)
    return fig


def short_count(n: float) -> str:
    """12345 -> 12.3k, 2.1e6 -> 2.1M: parameter counts that fit under a bar."""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:.0f}"


def count_axis(ax) -> None:
    """Log x axis of counts with ticks at 1, 2, 5 x 10^k labelled 2k, 5M, ... (no overlapping minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short_count(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def rank_axis(ax, ranks) -> None:
    ranks = sorted({int(r) for r in ranks})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("rank r (log2 scale)")


def label_axes(ax, title: str, ylabel: str, xlabel: str | None = None) -> None:
    """The tail every panel shares: title, axis labels (x only where not set by rank_axis), light grid."""
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def series(rows: pd.DataFrame):
    """(style dict, group frame) per plotted line, in a stable order."""
    for (label, color, linestyle, marker), group in rows.groupby(["label", "color", "linestyle", "marker"], sort=True):
        yield dict(label=label, color=color, linestyle=linestyle, marker=marker), group


def score_figure(data: pd.DataFrame, columns: list[str], title: str, caption: str):
    """Rows with a task score (and `columns`), one panel per model and task, and the figure: (rows, panels, figure).
    Each task is scored by its own metric (eval_metric), named on its panel's y axis."""
    rows = ok_rows(data, ["eval_score", *columns], "a profiling-only run has no task score")
    rows = rows.assign(panel=rows["model"] + " · " + rows["task"])
    panels = panel_order(rows, "panel")
    return rows, panels, new_figure(title, caption, len(panels))


def score_label(rows: pd.DataFrame) -> str:
    """The y-axis label of a panel: its task's metric (several metrics in one panel: all named)."""
    metrics = sorted(set(rows["eval_metric"]) - {""}) or ["accuracy"]
    return SCORE_LABELS.get(metrics[0], f"eval {metrics[0]}") if len(metrics) == 1 else "eval " + " / ".join(metrics)


def plot_rank_score(data: pd.DataFrame, caption: str) -> Figure:
    rows, panels, (fig, body, axes) = score_figure(
        data, [], "Task metric vs rank (mean; band: min-max over seeds)", caption)
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        for style, group in series(here):
            stats = group.groupby("rank")["eval_score"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], **style)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.2, linewidth=0)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, score_label(here))
    return finish(fig, body, axes)


def pareto_front(params: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (fewer parameters, higher score), by params."""
    order = np.lexsort((-accuracy, params))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def plot_params_score(data: pd.DataFrame, caption: str) -> Figure:
    rows, panels, (fig, body, axes) = score_figure(
        data, ["trainable_params"], "Task metric vs trainable parameters (mean over seeds)", caption)
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
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
    return finish(fig, body, axes)


def plot_time_score(data: pd.DataFrame, caption: str) -> Figure:
    rows, panels, (fig, body, axes) = score_figure(
        data, ["train_time_s"], "Task metric vs training wall time (mean over seeds)", caption)
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        for style, group in series(here):
            stats = group.groupby("rank")[["train_time_s", "eval_score"]].mean()
            ax.plot(stats["train_time_s"], stats["eval_score"], **style)
        label_axes(ax, panel, score_label(here), "training wall time, evaluation excluded (s)")
    return finish(fig, body, axes)


def plot_step_time(data: pd.DataFrame, caption: str) -> Figure:
    rows = ok_rows(data, ["step_time_ms_p50"], "no timed training steps")
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Training step time vs rank (median; bar up to p90)", caption, len(panels))
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
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
    return finish(fig, body, axes)


def plot_memory(data: pd.DataFrame, caption: str) -> Figure:
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
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Peak memory of a training step vs rank (mean over seeds)", caption, len(panels))
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        for style, group in series(here):
            stats = group.groupby("rank")["memory"].mean() / MIB
            ax.plot(stats.index, stats.to_numpy(), **style)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, f"peak memory (MiB, {'/'.join(sources)})")
    return finish(fig, body, axes)


def plot_memory_breakdown(data: pd.DataFrame, caption: str) -> Figure:
    """Stacked bars: the tensor bytes of each category at the training step's peak, per method and rank."""
    rows = ok_rows(data, ["tensor_peak_bytes"], "no traced training step (bench/measure/counters.py)")
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Tensor memory at the training step's peak, by category (mean over seeds)", caption,
                                 len(panels))
    columns = [column for column, _ in TENSOR_CATEGORIES]
    for ax, panel in zip(axes, panels):
        bars = rows[rows["panel"] == panel].groupby(["label", "rank"])[columns].mean().reset_index()
        x, bottom = np.arange(len(bars)), np.zeros(len(bars))
        for (column, name), color in zip(TENSOR_CATEGORIES, CATEGORY_COLORS):
            values = bars[column].fillna(0).to_numpy() / MIB
            ax.bar(x, values, bottom=bottom, color=color, label=name, width=0.7)
            bottom += values
        ax.set_xticks(x, bars["label"] + " r" + bars["rank"].astype(str), rotation=60, ha="right",
                      rotation_mode="anchor")
        label_axes(ax, panel, "tensor memory (MiB)")
        ax.grid(axis="x", visible=False)
    return finish(fig, body, axes)


def plot_flops_overhead(data: pd.DataFrame, caption: str) -> Figure:
    """The adapters' own FLOPs per training step as a share of the rest of the step (the frozen base's)."""
    rows = ok_rows(data, ["flops_per_step", "adapter_flops_per_step"], "no traced training step (bench/measure/counters.py)")
    base = rows["flops_per_step"] - rows["adapter_flops_per_step"]
    rows = rows.assign(overhead=100.0 * rows["adapter_flops_per_step"] / base.where(base > 0))
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Adapter FLOPs per training step over the frozen base's", caption, len(panels))
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        for style, group in series(here):
            stats = group.groupby("rank")["overhead"].mean()
            ax.plot(stats.index, stats.to_numpy(), **style)
        rank_axis(ax, here["rank"])
        label_axes(ax, panel, "adapter FLOPs (% of the base's, per step)")
        ax.set_ylim(bottom=0)
    return finish(fig, body, axes)


GPU_MEMORY_GIB = (24, 40, 80, 141)  # common cards: 24 GiB (L4, RTX 4090), A100 40/80 GiB, H100 80 GiB, H200 141 GiB


def plot_memory_vs_size(data: pd.DataFrame, caption: str) -> Figure:
    """Tensor peak of a training step vs model parameters, a line per method and rank, against GPU memory sizes."""
    rows = ok_rows(data, ["tensor_peak_bytes", "model_params"], "no traced training step (bench/measure/counters.py)")
    if rows["model_params"].nunique() < 2:
        raise NoData("one model size only; it needs two or more models (e.g. `run_bench.py estimate --preset "
                     "sizes-estimate`)")
    kind = "estimated" if (rows["estimated"] == 1).all() else "tracked"
    fig, body, (ax,) = new_figure(f"Tensor peak of a training step vs model size ({kind})", caption)
    lines = list(series(rows))
    for style, group in lines:
        for i, (rank, by_rank) in enumerate(group.groupby("rank")):
            stats = by_rank.groupby("model_params")["tensor_peak_bytes"].mean() / 2**30
            ax.plot(stats.index, stats.to_numpy(), **{**style, "marker": MARKERS[i % len(MARKERS)],
                                                      "label": f"{style['label']} r{rank}"})
    for gib in GPU_MEMORY_GIB:
        ax.axhline(gib, color="0.5", linewidth=0.8, linestyle="--")
        ax.annotate(f"{gib} GiB", (0.01, gib), xycoords=("axes fraction", "data"), fontsize=9, color="0.3",
                    va="bottom")
    count_axis(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    label_axes(ax, "", "tensor peak of one step (GiB, log scale)", "model parameters (count, log scale)")
    return finish(fig, body, [ax])


def plot_init_overhead(data: pd.DataFrame, caption: str) -> Figure:
    """Stacked init phases per (model, method) at the method's largest rank; step time beside it for scale."""
    rows = ok_rows(data, ["init_total_s", "model_params"], "no adapter init timing")
    largest = rows.groupby(["run", "panel", "variant"])["rank"].transform("max")
    rows = rows[rows["rank"] == largest]
    bars = (rows.groupby(["panel", "run", "variant", "rank"], sort=False)
            .agg(model_params=("model_params", "max"), init_total_s=("init_total_s", "mean"),
                 step_time_ms_p50=("step_time_ms_p50", "mean"), color=("color", "first"),
                 **{p: (p, "mean") for p, _ in INIT_PHASES}).reset_index())
    bars = bars.sort_values(["model_params", "panel", "run", "variant"]).reset_index(drop=True)
    fig, body, (ax_init, ax_step) = new_figure("Adapter init time by phase vs model size (largest rank per method)",
                                               caption, 2, width_ratios=[2, 1])
    x = np.arange(len(bars))
    runs = list(dict.fromkeys(data["run"]))
    hatches = bars["run"].map({r: HATCHES[i % len(HATCHES)] for i, r in enumerate(runs)}).tolist()
    bottom = np.zeros(len(bars))
    phases = [(label, bars[column].fillna(0).to_numpy()) for column, label in INIT_PHASES]
    phases.append(("other", np.clip(bars["init_total_s"].to_numpy() - sum(v for _, v in phases), 0, None)))
    for (label, values), color in zip(phases, PHASE_COLORS):
        ax_init.bar(x, values, bottom=bottom, color=color, label=label, width=0.7, hatch=hatches, edgecolor="white")
        bottom += values
    steps_equivalent = bars["init_total_s"] / (bars["step_time_ms_p50"] / 1000.0)
    for xi, top, n in zip(x, bottom, steps_equivalent):
        if np.isfinite(n):
            ax_init.annotate(f"={n:.2g} step{'' if n == 1 else 's'}" if n < 10 else f"={n:.0f} steps", (xi, top),
                             ha="center", va="bottom",
                             fontsize=9, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax_init.set_ylim(0, 1.8 * max(bottom.max(), 1e-9))  # room above the bars for the labels
    ax_init.set_ylabel("init time (s)")
    ax_init.set_title("init by phase (= the same time in training steps)")
    ax_step.bar(x, bars["step_time_ms_p50"].fillna(0), color=bars["color"], width=0.7, hatch=hatches, edgecolor="white")
    step_max = bars["step_time_ms_p50"].max()
    ax_step.set_ylim(0, 1.4 * step_max if step_max > 0 else 1.0)
    ax_step.set_ylabel("training step time, median (ms)")
    ax_step.set_title("one training step, for scale")
    names = bars["variant"] + " r" + bars["rank"].astype(str)
    for ax, with_size in ((ax_init, True), (ax_step, False)):
        ax.set_xticks(x, names, rotation=60, ha="right", rotation_mode="anchor")
        ax.grid(axis="y", alpha=0.3)
        for panel, group in bars.groupby("panel", sort=False):  # model name (and size) inside the top of each group
            size = short_count(group["model_params"].iloc[0])
            label = f"{panel}\n{size} params" if with_size else panel.replace(" · ", "\n")  # narrow panel
            ax.annotate(label, (group.index.to_numpy().mean(), 1.0), xycoords=("data", "axes fraction"), ha="center",
                        va="top", fontsize=9, xytext=(0, -3), textcoords="offset points")
            if group.index.min() > 0:
                ax.axvline(group.index.min() - 0.5, color="0.7", linewidth=0.8)
    if len(runs) > 1:  # runs told apart by hatching
        for run, hatch in zip(runs, HATCHES):
            ax_init.bar([0], [0], color="0.85", hatch=hatch, edgecolor="white", label=f"run {run}")
    return finish(fig, body, [ax_init])


TRANSFER_COLOR_POINTS = 5.0
AGAINST_COLORS = ("#C44E52", "#4C72B0", "#55A868")  # claims.AGAINST's order: VeRA at 8r, LoRA at 8r, LoRA at r


def plot_claims(data: pd.DataFrame, caption: str) -> Figure:
    """GiVA minus each comparison per rank, with its 95% interval (claims.py); hollow: undecided. The band is
    'matches'."""
    verdicts = claim_verdicts(data[data["status"] == "ok"])
    if verdicts.empty:
        raise NoData("no GiVA point with a task score beside VeRA or LoRA at 8r or LoRA at r (claims.py)")
    several_runs = verdicts["run"].nunique() > 1
    verdicts = verdicts.assign(panel=verdicts["model"] + " · " + verdicts["task"]
                               + (" · " + verdicts["run"] if several_runs else ""))
    panels = list(dict.fromkeys(verdicts["panel"]))
    fig, body, axes = new_figure("GiVA at r minus VeRA and LoRA (95% interval; hollow: undecided)", caption,
                                 len(panels))
    headings = [heading for _, _, heading in AGAINST]
    variants = sorted(verdicts["giva"].unique())
    margin = verdicts["margin_points"].iloc[0]
    for ax, panel in zip(axes, panels):
        here = verdicts[verdicts["panel"] == panel]
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
    return finish(fig, body, axes)


def plot_init_share_size(data: pd.DataFrame, caption: str) -> Figure:
    """The init's share of a fine-tuning run's FLOPs vs model size, a line per method (and rank) whose init does
    work; measured points filled, `estimate`'s hollow; squares: the measured share of wall time."""
    rows = ok_rows(data, ["init_flops_share", "model_params"], "no traced init and training step")
    rows = rows[rows["init_flops"] > 0]
    if rows.empty:
        raise NoData("no method whose init does work (GiVA, PiSSA, EVA, ...: init_flops > 0)")
    if rows["model_params"].nunique() < 2:
        raise NoData("one model size only; it needs two or more (e.g. `run_bench.py estimate --preset "
                     "sizes-estimate` reported together with a run)")
    steps = sorted(rows["init_share_steps"].dropna().unique())
    of = f"{steps[0]:,.0f} steps" if len(steps) == 1 else "each point's steps"
    fig, body, (ax,) = new_figure(f"Init share of a fine-tuning run of {of} vs model size", caption)
    for i, ((variant, rank), group) in enumerate(rows.groupby(["variant", "rank"])):
        color = f"C{i % 10}"  # a colour per line: the ranks of one method are lines of their own
        by_size = group.groupby(["model_params", "estimated"])[["init_flops_share", "init_share"]].mean().reset_index()
        ax.plot(by_size["model_params"], 100 * by_size["init_flops_share"], color=color, label=f"{variant} r{rank}")
        for estimated, fill in ((0, color), (1, "white")):
            points = by_size[by_size["estimated"] == estimated]
            ax.plot(points["model_params"], 100 * points["init_flops_share"], linestyle="none", marker="o",
                    color=color, markerfacecolor=fill)
        timed = by_size.dropna(subset=["init_share"])
        ax.plot(timed["model_params"], 100 * timed["init_share"], linestyle="none", marker="s", color=color)
    for label, marker, fill in (("FLOPs, measured", "o", "0.3"), ("FLOPs, estimated", "o", "white"),
                                ("wall time, measured", "s", "0.3")):
        ax.plot([], [], linestyle="none", marker=marker, color="0.3", markerfacecolor=fill, label=label)
    ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle="--")
    ax.annotate("1%", (0.01, 1.0), xycoords=("axes fraction", "data"), fontsize=9, color="0.3", va="bottom")
    count_axis(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    label_axes(ax, "", "init share of the run (%, log scale)", "model parameters (count, log scale)")
    return finish(fig, body, [ax])


def plot_transfer(data: pd.DataFrame, caption: str) -> Figure:
    """Transfer matrices (transfer.py): the task the init read against the task trained; colour and lower number:
    the change against the init on the train task itself, in points."""
    cells = transfer_cells(data[data["status"] == "ok"])
    if cells.empty:
        raise NoData("no point names an init_task (method option init_task)")
    several_runs = cells["run"].nunique() > 1
    cells = cells.assign(panel=cells["model"] + " · " + cells["matrix"] + (" · " + cells["run"] if several_runs else ""))
    panels = list(dict.fromkeys(cells["panel"]))
    fig, body, axes = new_figure("Init from another task: score, and change vs its own (points)", caption,
                                 len(panels))
    # colours saturate at the largest change, and at 5 points at least: changes of a point or two stay pale
    limit = max(TRANSFER_COLOR_POINTS, np.nanmax(np.abs(cells["change_points"].to_numpy(dtype=float))))
    for ax, panel in zip(axes, panels):
        here = cells[cells["panel"] == panel]
        sources = list(dict.fromkeys(zip(here["source"], here["reference"])))
        tasks = list(dict.fromkeys(here["task"]))
        change = np.full((len(sources), len(tasks)), np.nan)
        for _, cell in here.iterrows():
            i, j = sources.index((cell["source"], cell["reference"])), tasks.index(cell["task"])
            change[i, j] = cell["change_points"]
            own = cell["source"] == cell["task"] and not cell["reference"]
            dark = abs(np.nan_to_num(cell["change_points"])) > 0.6 * limit  # white text on the deep colours
            ax.annotate(f"{cell['score']:.3f}\n" + ("own" if own else f"{cell['change_points']:+.1f}"), (j, i),
                        ha="center", va="center", fontsize=9, color="white" if dark else "black")
        image = ax.imshow(change, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(tasks)), [f"{t}\n({here.loc[here['task'] == t, 'metric'].iloc[0]})" for t in tasks])
        ax.set_yticks(range(len(sources)), [f"{s} (ref.)" if reference else s for s, reference in sources])
        label_axes(ax, panel, "init read", "trained on")
        ax.grid(False)
        body.colorbar(image, ax=ax, label="change vs own init (points)")
    return fig


PLOTS = [  # (file name, title in summary.md, function)
    ("rank_score", "Task metric vs rank", plot_rank_score),
    ("params_score", "Task metric vs trainable parameters (Pareto front)", plot_params_score),
    ("time_score", "Task metric vs training wall time", plot_time_score),
    ("step_time_rank", "Step time vs rank", plot_step_time),
    ("memory_rank", "Peak memory vs rank", plot_memory),
    ("init_overhead", "Init overhead by phase vs model size", plot_init_overhead),
    ("memory_breakdown", "Tensor memory by category per method and rank", plot_memory_breakdown),
    ("flops_overhead", "Adapter FLOPs over the frozen base vs rank", plot_flops_overhead),
    ("memory_size", "Tensor memory peak vs model size, against GPU memory", plot_memory_vs_size),
    ("claims", "Claim check: GiVA at r minus VeRA and LoRA, with 95% intervals", plot_claims),
    ("init_share_size", "Init share of a fine-tuning run vs model size", plot_init_share_size),
    ("transfer", "Bases from another task: transfer matrix", plot_transfer),
]

