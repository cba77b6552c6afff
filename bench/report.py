"""Plots and summary.md of one or more runs, from results.csv and meta.json alone.

    build_report(["reports/runs/quick-abc1234"])  ->  summary.md and plots/*.png|svg in that folder

load_run() is also what compare.py and history.py read runs with: it refuses
damaged files, foreign CSVs and other schema versions with a one-line error.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import textwrap
from dataclasses import dataclass, field

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from .results import COLUMN_NAMES, META_FILE, RESULTS_FILE, SCHEMA_VERSION, latest_rows

MAKE_RUN = "run_bench.py run --preset quick --out DIR"
REQUIRED_COLUMNS = ("schema_version", "point_id", "status", "model", "method", "rank")
STATUSES = ("ok", "failed", "skipped")
TEXT_COLUMNS = {"point_id", "status", "error", "model", "task", "method", "method_options", "dtype", "device",
                "effective_ranks", "step_times_ms", "peak_mem_source", "started_at"}
NUMERIC_COLUMNS = [c for c in COLUMN_NAMES if c not in TEXT_COLUMNS]
VARIANT_COLUMNS = ("batch_size", "seq_len", "dtype", "device")  # besides method options: what can split a line
INIT_PHASES = (("init_grad_s", "gradient"), ("init_svd_s", "SVD"), ("init_inject_s", "injection"))
PHASE_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#A0A0A0")  # gradient, SVD, injection, other
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
HATCHES = ("", "//", "..", "xx")
MIB = 2**20
# Printed small (7 x 4.5 in) the text stays legible: nothing under 9 pt.
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "figure.titlesize": 12, "svg.fonttype": "none", "svg.hashsalt": "giva-bench"}
FIGSIZE_IN = (7.0, 4.5)


@dataclass
class Run:
    """One run as read from disk: its latest row per point (typed) and its metadata."""

    csv_path: str
    run_dir: str
    meta: dict
    rows: pd.DataFrame  # one row per point_id; numeric columns as floats, empty cells NaN
    warnings: list[str] = field(default_factory=list)

    @property
    def commit(self) -> str:
        return (self.meta.get("environment") or {}).get("commit") or "unknown"


class NoData(Exception):
    """A plot whose data the runs lack; the message says what is missing."""


# --- reading ------------------------------------------------------------------


def load_run(path: str) -> Run:
    """A run directory or a results.csv path -> Run; errors name the file and what to do."""
    csv_path = path if os.path.isfile(path) or path.endswith(".csv") else os.path.join(path, RESULTS_FILE)
    if not os.path.exists(csv_path):
        raise FileNotFoundError(f"no results at {csv_path}; make a run with `{MAKE_RUN}`")
    run_dir = os.path.dirname(os.path.realpath(csv_path))
    header, rows, warnings = read_checked_rows(csv_path)
    frame = pd.DataFrame(latest_rows(rows), columns=header).astype(object)
    for column in COLUMN_NAMES:
        if column not in frame:
            frame[column] = np.nan if column in NUMERIC_COLUMNS else ""
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    frame["rank"] = frame["rank"].astype(int)
    meta = read_checked_meta(run_dir, csv_path)
    if not meta:
        warnings.append(f"no {META_FILE} beside {csv_path}: command, environment and commit unknown")
    return Run(csv_path, run_dir, meta, frame, warnings)


def read_checked_rows(csv_path: str) -> tuple[list[str], list[dict], list[str]]:
    """Header, rows (strings) and warnings of a results.csv, refusing anything that is not one."""
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{csv_path} is not UTF-8 text; is it a results.csv? re-run the sweep: `{MAKE_RUN}`") from None
    if not text.strip():
        raise ValueError(f"{csv_path} is empty (no header, no rows); re-run the sweep: `{MAKE_RUN}`")
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        lines = [(reader.line_num, cells) for cells in reader]
    except csv.Error as e:
        raise ValueError(f"{csv_path} line {reader.line_num} does not parse as CSV ({e}); delete that line "
                         "(the point runs again on resume) or re-run the sweep") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{csv_path} lacks the columns {', '.join(missing)}: not a results.csv written by "
                         f"run_bench.py; give a run directory or re-run the sweep: `{MAKE_RUN}`")
    warnings, rows = [], []
    for i, (line_num, cells) in enumerate(lines):
        if not cells:
            continue
        if len(cells) != len(header):
            if i == len(lines) - 1 and not text.endswith("\n") and len(cells) < len(header):
                warnings.append(f"{csv_path}: ignored a torn last line {line_num} (a sweep killed mid-write)")
                continue
            raise ValueError(f"{csv_path} line {line_num} has {len(cells)} cells where the header has {len(header)}; "
                             "the file is damaged: delete that line (the point runs again on resume) or re-run")
        row = dict(zip(header, cells))
        if row["schema_version"] != str(SCHEMA_VERSION):
            raise ValueError(f"{csv_path} has schema_version {row['schema_version']!r} (line {line_num}) but this code "
                             f"reads version {SCHEMA_VERSION}: not comparable; re-run the sweep with this code")
        if row["status"] not in STATUSES:
            raise ValueError(f"{csv_path} line {line_num}: status {row['status']!r} is not one of "
                             f"{', '.join(STATUSES)}; the file is damaged: delete that line or re-run")
        if not row["rank"].strip().isdigit() or not row["point_id"] or not row["method"]:
            raise ValueError(f"{csv_path} line {line_num}: rank {row['rank']!r}, point_id {row['point_id']!r}, "
                             f"method {row['method']!r}; the file is damaged: delete that line or re-run")
        rows.append(row)
    if not rows:
        raise ValueError(f"{csv_path} has a header but no rows: the sweep wrote no point; run it: `{MAKE_RUN}`")
    return header, rows, warnings


def read_checked_meta(run_dir: str, csv_path: str) -> dict:
    path = os.path.join(run_dir, META_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it or re-run the sweep: `{MAKE_RUN}`") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} holds no JSON object; restore it or re-run the sweep: `{MAKE_RUN}`")
    if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(f"{path} has schema_version {meta.get('schema_version')!r} but this code reads version "
                         f"{SCHEMA_VERSION}: not comparable; re-run the sweep with this code")
    return meta


# --- the report ---------------------------------------------------------------


def build_report(run_dirs: list[str], out_dir: str | None = None) -> list[str]:
    """Write summary.md and plots/ for the runs; returns the paths written (summary.md first)."""
    if not run_dirs:
        raise ValueError("no run directory given; pass one or more run directories")
    if out_dir is None and len(run_dirs) > 1:
        raise ValueError("several runs need an output folder: pass out_dir (--out DIR)")
    runs = [load_run(d) for d in run_dirs]
    out_dir = out_dir or runs[0].run_dir
    labels = run_labels(runs)
    data = prepare(runs, labels)
    caption = make_caption(runs, labels)
    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    written, plotted, skipped = [], [], []
    with matplotlib.rc_context(STYLE):
        for name, title, plot in PLOTS:
            try:
                fig = plot(data, caption)
            except NoData as e:
                skipped.append((title, str(e)))
                for stale in (os.path.join(out_dir, "plots", f"{name}.{ext}") for ext in ("png", "svg")):
                    if os.path.exists(stale):  # from an earlier report of other data
                        os.remove(stale)
                continue
            paths = save_figure(fig, os.path.join(out_dir, "plots", name))
            plotted.append((title, [os.path.relpath(p, out_dir) for p in paths]))
            written += paths
    summary_path = os.path.join(out_dir, "summary.md")
    with open(summary_path, "w") as f:
        f.write(format_summary(runs, labels, data, plotted, skipped))
    return [summary_path, *written]


def run_labels(runs: list[Run]) -> list[str]:
    """The run folder names; the commits where folder names repeat; positions as a last resort."""
    for labels in ([os.path.basename(r.run_dir) for r in runs], [r.commit[:8] for r in runs]):
        if len(set(labels)) == len(labels):
            return labels
    return [f"{os.path.basename(r.run_dir)}#{i + 1}" for i, r in enumerate(runs)]


def prepare(runs: list[Run], labels: list[str]) -> pd.DataFrame:
    """All runs' rows in one frame, with run, variant, panel, label and plot style columns."""
    frames = []
    for run, label in zip(runs, labels):
        frame = run.rows.copy()
        frame["run"] = label
        frame["variant"] = variant_names(frame)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    data["label"] = data["variant"] if len(runs) == 1 else data["variant"] + " · " + data["run"]
    several_tasks = data.loc[data["status"] == "ok", "task"].nunique() > 1  # profile and planted: other workloads
    data["panel"] = data["model"] + (" · " + data["task"] if several_tasks else "")
    variants = sorted(data["variant"].unique())
    data["color"] = data["variant"].map({v: f"C{i % 10}" for i, v in enumerate(variants)})
    data["linestyle"] = data["run"].map({r: LINESTYLES[i % len(LINESTYLES)] for i, r in enumerate(labels)})
    data["marker"] = data["run"].map({r: MARKERS[i % len(MARKERS)] for i, r in enumerate(labels)})
    return data


def variant_names(frame: pd.DataFrame) -> pd.Series:
    """The method, plus the settings that differ between points of the same method and rank (e.g. basis=VrUr).

    LoRA's alpha follows the rank, so it does not split a line; a basis sweep does.
    """
    settings = pd.DataFrame([{k: show(v) for k, v in parse_options(text).items()} for text in frame["method_options"]],
                            index=frame.index)
    for column in VARIANT_COLUMNS:
        settings[column] = frame[column].map(show)
    settings = settings.fillna("-")
    names = frame["method"].copy()
    ok = frame["status"] == "ok"  # a skipped cuda point must not split the cpu line
    for method, rows in settings[ok].groupby(frame.loc[ok, "method"]):
        keys = frame.loc[rows.index, ["rank", "model", "task"]]
        counts = rows.groupby([keys[c] for c in keys]).nunique().max()
        varying = sorted(counts[counts > 1].index)
        if varying:
            of_method = frame.index[frame["method"] == method]
            names[of_method] = method + " (" + settings.loc[of_method, varying].apply(
                lambda r: ", ".join(f"{k}={r[k]}" for k in varying), axis=1) + ")"
    return names


def show(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def parse_options(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"options": text}
    return value if isinstance(value, dict) else {"options": value}


def make_caption(runs: list[Run], labels: list[str]) -> str:
    parts = []
    for run, label in zip(runs, labels):
        env = run.meta.get("environment") or {}
        device = env.get("device") or "/".join(sorted(set(run.rows["device"]) - {""})) or "device unknown"
        hardware = env.get("gpu") or env.get("cpu") or ""
        dirty = "+dirty" if env.get("dirty") else ""
        text = (f"models {', '.join(sorted(set(run.rows['model'])))}; {device}{f' ({hardware})' if hardware else ''}; "
                f"commit {run.commit[:8]}{dirty}")
        parts.append(text if len(runs) == 1 else f"{label}: {text}")
    return "\n".join(textwrap.fill(p, 105) for p in parts)


def save_figure(fig: Figure, stem: str) -> list[str]:
    paths = [stem + ".png", stem + ".svg"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"Date": None})
    return paths


# --- plots: each takes the prepared frame, returns a Figure or raises NoData ---


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


def series(rows: pd.DataFrame):
    """(style dict, group frame) per plotted line, in a stable order."""
    for (label, color, linestyle, marker), group in rows.groupby(["label", "color", "linestyle", "marker"], sort=True):
        yield dict(label=label, color=color, linestyle=linestyle, marker=marker), group


def plot_rank_accuracy(data: pd.DataFrame, caption: str) -> Figure:
    rows = ok_rows(data, ["eval_accuracy"], "a profiling-only run has no accuracy")
    rows = rows.assign(panel=rows["model"] + " · " + rows["task"])
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Eval accuracy vs rank (mean; band: min-max over seeds)", caption, len(panels))
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        for style, group in series(here):
            stats = group.groupby("rank")["eval_accuracy"].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], **style)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=style["color"], alpha=0.2, linewidth=0)
        rank_axis(ax, here["rank"])
        ax.set_title(panel)
        ax.set_ylabel("eval accuracy (fraction correct)")
        ax.grid(alpha=0.3)
    return finish(fig, body, axes)


def pareto_front(params: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (fewer parameters, higher accuracy), by params."""
    order = np.lexsort((-accuracy, params))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def plot_params_accuracy(data: pd.DataFrame, caption: str) -> Figure:
    rows = ok_rows(data, ["eval_accuracy", "trainable_params"], "a profiling-only run has no accuracy")
    rows = rows.assign(panel=rows["model"] + " · " + rows["task"])
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Eval accuracy vs trainable parameters (mean over seeds)", caption, len(panels))
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        points = []
        for style, group in series(here):
            stats = group.groupby("rank")[["trainable_params", "eval_accuracy"]].mean()
            ax.plot(stats["trainable_params"], stats["eval_accuracy"], **{**style, "linestyle": "none"})
            points.append(stats)
        points = pd.concat(points)
        front = pareto_front(points["trainable_params"].to_numpy(), points["eval_accuracy"].to_numpy())
        front_points = points.iloc[front]
        ax.plot(front_points["trainable_params"], front_points["eval_accuracy"], color="black", linewidth=1,
                drawstyle="steps-post", marker="o", markersize=11, markerfacecolor="none", label="Pareto front")
        count_axis(ax)
        ax.set_title(panel)
        ax.set_xlabel("trainable parameters (count, log scale)")
        ax.set_ylabel("eval accuracy (fraction correct)")
        ax.grid(alpha=0.3)
    return finish(fig, body, axes)


def plot_time_accuracy(data: pd.DataFrame, caption: str) -> Figure:
    rows = ok_rows(data, ["eval_accuracy", "train_time_s"], "a profiling-only run has no accuracy")
    rows = rows.assign(panel=rows["model"] + " · " + rows["task"])
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Eval accuracy vs training wall time (mean over seeds)", caption, len(panels))
    for ax, panel in zip(axes, panels):
        for style, group in series(rows[rows["panel"] == panel]):
            stats = group.groupby("rank")[["train_time_s", "eval_accuracy"]].mean()
            ax.plot(stats["train_time_s"], stats["eval_accuracy"], **style)
        ax.set_title(panel)
        ax.set_xlabel("training wall time, evaluation excluded (s)")
        ax.set_ylabel("eval accuracy (fraction correct)")
        ax.grid(alpha=0.3)
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
        ax.set_title(panel)
        ax.set_ylabel("step time (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    return finish(fig, body, axes)


def plot_memory(data: pd.DataFrame, caption: str) -> Figure:
    rows = ok_rows(data, ["peak_mem_bytes"], "no memory reading of the training steps")
    names = {"rss": "process RSS", "cuda_max_allocated": "CUDA max allocated"}
    sources = sorted(names.get(s, s) for s in set(rows["peak_mem_source"]) - {""})
    panels = panel_order(rows, "panel")
    fig, body, axes = new_figure("Peak memory during training vs rank (mean over seeds)", caption, len(panels))
    for ax, panel in zip(axes, panels):
        here = rows[rows["panel"] == panel]
        for style, group in series(here):
            stats = group.groupby("rank")["peak_mem_bytes"].mean() / MIB
            ax.plot(stats.index, stats.to_numpy(), **style)
        rank_axis(ax, here["rank"])
        ax.set_title(panel)
        ax.set_ylabel(f"peak memory (MiB{', ' + '/'.join(sources) if sources else ''})")
        ax.grid(alpha=0.3)
    return finish(fig, body, axes)


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


PLOTS = [  # (file name, title in summary.md, function)
    ("rank_accuracy", "Eval accuracy vs rank", plot_rank_accuracy),
    ("params_accuracy", "Eval accuracy vs trainable parameters (Pareto front)", plot_params_accuracy),
    ("time_accuracy", "Eval accuracy vs training wall time", plot_time_accuracy),
    ("step_time_rank", "Step time vs rank", plot_step_time),
    ("memory_rank", "Peak memory vs rank", plot_memory),
    ("init_overhead", "Init overhead by phase vs model size", plot_init_overhead),
]


# --- summary.md ---------------------------------------------------------------

TABLE = [  # (column, heading, format)
    ("trainable_params", "trainable params", "count"),
    ("eval_accuracy", "eval accuracy", "accuracy"),
    ("init_total_s", "init total (s)", "seconds"),
    ("step_time_ms_p50", "step p50 (ms)", "ms"),
    ("peak_mem_bytes", "peak mem (MiB)", "mib"),
    ("adapter_file_bytes", "adapter file (bytes)", "count"),
]


def format_value(values: pd.Series, kind: str) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    mean = values.mean()
    if kind == "count":
        return f"{mean:,.0f}"
    if kind == "accuracy":
        return f"{mean:.3f}" + (f" ± {values.std():.3f}" if len(values) > 1 else "")
    if kind == "mib":
        return f"{mean / MIB:,.1f}"
    return f"{mean:.3g}" if kind == "seconds" else f"{mean:.2f}"


def md_cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def format_summary(runs: list[Run], labels: list[str], data: pd.DataFrame, plotted, skipped) -> str:
    out = ["# Benchmark report", "", "Read from results.csv and meta.json alone (`run_bench.py report`).", ""]
    for run, label in zip(runs, labels):
        out += format_run_section(run, label)
    out += ["## Results", "", "Mean over seeds; accuracy as mean ± std where there are several seeds.", ""]
    ok = data[data["status"] == "ok"]
    for (run, model, task), group in ok.groupby(["run", "model", "task"], sort=False):
        title = f"{model} · task {task}" + (f" · run {run}" if len(runs) > 1 else "")
        out += [f"### {title}", "", "| method | rank | seeds | " + " | ".join(h for _, h, _ in TABLE) + " |",
                "|---|---:|---:|" + "---:|" * len(TABLE)]
        for (variant, rank), point in group.groupby(["variant", "rank"]):
            cells = [format_value(point[c], kind) for c, _, kind in TABLE]
            out.append(f"| {md_cell(variant)} | {rank} | {point['seed'].nunique()} | " + " | ".join(cells) + " |")
        out.append("")
    if ok.empty:
        out += ["No point finished ok.", ""]
    out += ["## Plots", ""]
    for title, paths in plotted:
        png, svg = paths
        out += [f"### {title}", "", f"![{title}]({png})", "", f"[SVG]({svg})", ""]
    if not plotted:
        out += ["None: the runs hold no data any plot needs.", ""]
    out += ["## Plots skipped", ""]
    out += [f"- **{title}**: {reason}" for title, reason in skipped] or ["None."]
    out += ["", "## Failed and skipped points", ""]
    bad = data[data["status"] != "ok"]
    if bad.empty:
        out.append("None.")
    else:
        out += ["| run | status | model | task | method | rank | seed | error |", "|---|---|---|---|---|---:|---:|---|"]
        for _, row in bad.iterrows():
            seed = "" if pd.isna(row["seed"]) else f"{row['seed']:.0f}"
            out.append(f"| {row['run']} | {row['status']} | {md_cell(row['model'])} | {md_cell(row['task'])} | "
                       f"{md_cell(row['method'])} | {row['rank']} | {seed} | {md_cell(row['error'])} |")
    warnings = [w for run in runs for w in run.warnings]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return "\n".join(out) + "\n"


def format_run_section(run: Run, label: str) -> list[str]:
    meta, env = run.meta, run.meta.get("environment") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v)
    counts = run.rows["status"].value_counts()
    command = " ".join(meta.get("command") or []) or "unknown"
    device = env.get("device", "unknown") + (f" ({env['gpu']})" if env.get("gpu") else "")
    facts = [
        ("folder", f"`{run.run_dir}`"),
        ("command", f"`{command}`"),
        ("started / ended", f"{meta.get('started_at', '?')} / {meta.get('ended_at', 'not ended (killed or running)')}"),
        ("commit", f"`{run.commit}`" + (" (dirty working tree)" if env.get("dirty") else "")),
        ("device", device),
        ("cpu", f"{env.get('cpu', '?')}, {env.get('cpu_count', '?')} cores, "
                f"torch threads {env.get('torch_threads', '?')}"),
        ("python / platform", f"{env.get('python', '?')} / {env.get('platform', '?')}"),
        ("versions", versions or "unknown"),
        ("points", ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)),
        ("config hash", f"`{meta.get('config_hash', '?')}`"),
    ]
    out = [f"## Run {label}", "", "| | |", "|---|---|"] + [f"| {k} | {md_cell(v)} |" for k, v in facts] + [""]
    if meta.get("config"):
        lines = [f"{k} = {json.dumps(v, sort_keys=True)}" for k, v in sorted(meta["config"].items())]
        out += ["<details><summary>resolved config</summary>", "", "```", *lines, "```", "", "</details>", ""]
    return out
