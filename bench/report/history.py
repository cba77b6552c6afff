"""A history of runs over commits: one CSV row per ok point, and plots of a metric over time.

    append_history("reports/runs/quick-abc1234")               # -> rows added
    plot_history("reports/history.csv", ["step_time_ms_p50"], "reports/history")
"""

from __future__ import annotations

import csv
import os

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedFormatter, FixedLocator

from ..columns import HISTORY_METRICS, IDENTITY, column
from ..results.read import load_run
from .layout import STYLE, Thinned, cut_groups, finish, grow, new_figure, page_caption
from .plots import MARKERS, save_pages

KEY_COLUMNS = ["date", "commit", "dirty", "run_dir", "point_id", *IDENTITY]
# What makes two points the same series over commits: the point's identity but the seed (seeds are averaged) and
# the device as asked for.
SERIES = [c for c in IDENTITY if c not in ("seed", "device")]
METRICS = HISTORY_METRICS  # the columns marked history=True in bench/columns.py
PAGE_SERIES = 12  # lines on one page (ten colours, then markers): more series go on further pages, a model's together
HISTORY_COLUMNS = KEY_COLUMNS + METRICS


def append_history(run_dir: str, history_csv: str = "reports/history.csv") -> int:
    """Add one row per ok point of the run; a point of this run already in the file is not added again."""
    run = load_run(run_dir)
    existing = read_history(history_csv) if os.path.exists(history_csv) else pd.DataFrame(columns=HISTORY_COLUMNS)
    seen = set(zip(existing["run_dir"], existing["point_id"]))
    env = run.meta.get("environment") or {}
    ok = run.rows[run.rows["status"] == "ok"]
    date = run.meta.get("ended_at") or run.meta.get("started_at") or max(ok["started_at"], default="")
    new = []
    for row in ok.to_dict("records"):
        if (run.run_dir, row["point_id"]) in seen:
            continue
        values = {**{m: row.get(m) for m in METRICS}, **{c: row[c] for c in IDENTITY}, "date": date,
                  "commit": env.get("commit") or "unknown", "dirty": bool(env.get("dirty")), "run_dir": run.run_dir,
                  "point_id": row["point_id"]}
        new.append({k: "" if v is None or (isinstance(v, float) and np.isnan(v)) else v for k, v in values.items()})
    if not new:
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(history_csv)), exist_ok=True)
    write_header = not os.path.exists(history_csv) or os.path.getsize(history_csv) == 0
    with open(history_csv, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        if write_header:
            writer.writeheader()
        writer.writerows(new)
    return len(new)


def read_history(history_csv: str) -> pd.DataFrame:
    if not os.path.exists(history_csv):
        raise FileNotFoundError(f"no history at {history_csv}; add runs with `run_bench.py history --append RUN_DIR`")
    if os.path.getsize(history_csv) == 0:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    with open(history_csv, newline="") as f:
        header = next(csv.reader(f), [])
    if header != HISTORY_COLUMNS:
        raise ValueError(f"{history_csv} has columns {header[:5]}... not this code's history columns; "
                         "move it aside and append the runs again")
    history = pd.read_csv(history_csv, dtype={c: str for c in ("commit", "run_dir", "point_id", "date", "method_options")},
                          keep_default_na=False, na_values=[""])
    history["method_options"] = history["method_options"].fillna("")
    for name in METRICS + ["rank", "seed", "batch_size", "seq_len"]:
        history[name] = pd.to_numeric(history[name], errors="coerce")
    return history


def plot_history(history_csv: str, metrics: list[str], out_dir: str) -> list[str]:
    """One plot per metric: its value per run in time order (commit on the axis), a line per point identity (seeds averaged)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown history metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    history = read_history(history_csv)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with matplotlib.rc_context(STYLE):
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
    keys = rows[SERIES].drop_duplicates().sort_values(SERIES)
    groups = [len(g) for _, g in keys.groupby(["model", "task"], sort=True)]
    chunks = cut_groups(groups, PAGE_SERIES)
    if len(chunks) == 1:
        return [plot_metric(rows, metric)]
    offsets = np.cumsum([0, *groups])
    figures = []
    for page, chunk in enumerate(chunks):
        chosen = keys.iloc[np.concatenate([np.arange(offsets[g] + a, offsets[g] + b) for g, a, b in chunk])]
        on_page = rows.merge(chosen, on=SERIES)
        figures.append(plot_metric(on_page, metric, page=(page, len(chunks)), all_runs=rows))
    return figures


def plot_metric(rows: pd.DataFrame, metric: str, page: tuple[int, int] = (0, 1), all_runs: pd.DataFrame | None = None):
    """One figure: the metric per run in time order (commit on the axis), a line per series (seeds averaged).
    all_runs: the rows whose runs make the axis (every page of a split plot shows every run)."""
    runs = (rows if all_runs is None else all_runs).groupby(["date", "run_dir"], sort=True).agg(
        commit=("commit", "first"), dirty=("dirty", "first"))
    runs["x"] = np.arange(len(runs))
    rows = rows.join(runs["x"], on=["date", "run_dir"])
    caption = f"{len(runs)} runs, {rows['commit'].nunique()} commits, {rows['model'].nunique()} models; " \
              f"devices {', '.join(sorted(rows['device'].astype(str).unique()))}; mean over seeds"
    unit = column(metric).unit
    fig, body, (ax,) = new_figure(f"{metric} over commits", page_caption(caption, *page))
    varying = [c for c in SERIES if c not in ("model", "method", "rank") and rows[c].nunique() > 1]
    for i, (key, group) in enumerate(rows.groupby(SERIES, sort=True)):
        series = dict(zip(SERIES, key))
        values = group.groupby("x")[metric].mean()
        label = " ".join([f"{series['model']} {series['method']} r{series['rank']:.0f}",
                          *(series_part(c, series[c]) for c in varying)])
        ax.plot(values.index, values.to_numpy(), marker=MARKERS[i // 10 % len(MARKERS)], color=f"C{i % 10}",
                markersize=6 if len(runs) <= 30 else 3, label=label)
    few = len(runs) <= 6  # a few runs: commit over date, level; more: one line each, upright, thinned
    between = "\n" if few else " "
    ticks = [f"{c[:7]}{'*' if str(d) == 'True' else ''}{between}{str(date)[:10]}"
             for (date, _), c, d in zip(runs.index, runs["commit"], runs["dirty"])]
    ax.xaxis.set_major_locator(FixedLocator(runs["x"].to_numpy()))
    ax.xaxis.set_major_formatter(Thinned(FixedFormatter(ticks)))
    ax.tick_params(axis="x", labelrotation=0 if few else 90)
    ax.set_xlabel("run: commit (* dirty tree) and date, in time order" + ("" if few else "; every run a tick"))
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.grid(alpha=0.3)
    if not few:
        grow(fig, body, 1.2)  # the upright labels take that much of the body's height
    return finish(fig, body, [ax])


def series_part(column: str, value) -> str:
    """How a legend names a series' varying setting: b8, T64, float32, {"basis": "VrUr"}, a task name."""
    if column == "batch_size":
        return f"b{value:.0f}"
    if column == "seq_len":
        return f"T{value:.0f}"
    return str(value) or "{}"
