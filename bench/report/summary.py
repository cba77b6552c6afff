"""summary.md and plots/ of one or more runs, from results.csv and meta.json alone (no torch, no method code).

    build_report(["reports/runs/quick-abc1234"])  ->  summary.md and plots/*.png|svg in that folder

Reading the runs is results/read.py's job, drawing the figures plots.py's, the claim check claims.py's (and
claims.csv), the transfer matrix transfer.py's; this module joins the runs into one frame, styles it, and writes the
summary. What it needs to know of a method (its name for
people, which method it is the same as, whether its init reads data) the sweep driver wrote into meta.json.
"""

from __future__ import annotations

import json
import math
import os

import matplotlib
import numpy as np
import pandas as pd

from ..columns import IDENTITY, MIB, TABLE, column
from ..results.environment import repo_relative
from ..results.read import STATUSES, Run, load_run
from .claims import CLAIMS_FILE, claim_verdicts, format_claim_check
from .plots import LINESTYLES, MARKERS, PLOTS, STYLE, NoData, remove_pages, save_pages
from .steps import LORA_STEPS_NOTE, init_shares, lora_step_ms, share_steps
from .tables import (BUSY_MARK, MISSING, NOISE_NOTE, busy_note, format_difference, format_number, format_ratio,
                     format_value, mark_busy, md_cell, noise_points, task_metric)
from .transfer import format_transfer, transfer_cells

# What can split a point's line besides its method options: the identity but what a plot or table already shows.
VARIANT_COLUMNS = [c for c in IDENTITY if c not in ("model", "task", "method", "rank", "seed", "method_options")]


# --- the report ---------------------------------------------------------------


def build_report(run_dirs: list[str], out_dir: str | None = None, assume_steps: int | None = None) -> list[str]:
    """Write summary.md and plots/ for the runs; returns the paths written (summary.md first). assume_steps: the
    fine-tuning length every init share is of (steps.share_steps: default, the rows' assumed one or SHARE_STEPS)."""
    if not run_dirs:
        raise ValueError("no run directory given; pass one or more run directories")
    if out_dir is None and len(run_dirs) > 1:
        raise ValueError("several runs need an output folder: pass out_dir (--out DIR)")
    runs = [load_run(d) for d in run_dirs]
    out_dir = out_dir or runs[0].run_dir
    labels = run_labels(runs)
    data = prepare(runs, labels, assume_steps)
    caption = make_caption(runs, labels)
    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    written, plotted, skipped = [], [], []
    with matplotlib.rc_context(STYLE):
        for name, title, plot in PLOTS:
            stem = os.path.join(out_dir, "plots", name)
            try:
                figures = plot(data, caption)
            except NoData as e:
                skipped.append((title, str(e)))
                remove_pages(stem)  # from an earlier report of other data
                continue
            paths = save_pages(figures if isinstance(figures, list) else [figures], stem)
            plotted.append((title, [os.path.relpath(p, out_dir) for p in paths]))
            written += paths
    verdicts = claim_verdicts(data[data["status"] == "ok"])
    claims_path = os.path.join(out_dir, CLAIMS_FILE)
    if not verdicts.empty:
        verdicts.to_csv(claims_path, index=False, float_format="%.6g")
        written.append(claims_path)
    elif os.path.exists(claims_path):  # from an earlier report of other data
        os.remove(claims_path)
    summary_path = os.path.join(out_dir, "summary.md")
    with open(summary_path, "w") as f:
        f.write(format_summary(runs, labels, data, verdicts, plotted, skipped))
    return [summary_path, *written]


def run_labels(runs: list[Run]) -> list[str]:
    """The run folder names; the commits where folder names repeat; positions as a last resort."""
    for labels in ([os.path.basename(r.run_dir) for r in runs], [r.commit[:8] for r in runs]):
        if len(set(labels)) == len(labels):
            return labels
    return [f"{os.path.basename(r.run_dir)}#{i + 1}" for i, r in enumerate(runs)]


def prepare(runs: list[Run], labels: list[str], assume_steps: int | None = None) -> pd.DataFrame:
    """All runs' rows in one frame, with run, variant, panel, label and plot style columns, LoRA's step time, and
    the init's share of a fine-tuning run of one length for every row (share_steps, share_flops, share_time)."""
    frames = []
    for run, label in zip(runs, labels):
        frame = run.rows.copy()
        frame["run"] = label
        frame["variant"] = variant_names(frame)
        frame["busy"] = run.busy()  # timed on a busy machine (results/environment.py is_busy)
        frame["cpu_count"] = run.cpu_count
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    from_accuracy = data["eval_score"].isna() & data["eval_accuracy"].notna()  # a CSV written without eval_score
    data.loc[from_accuracy, "eval_score"] = data.loc[from_accuracy, "eval_accuracy"]
    data.loc[from_accuracy, "eval_metric"] = "accuracy"
    data["label"] = data["variant"] if len(runs) == 1 else data["variant"] + " · " + data["run"]
    several_tasks = data.loc[data["status"] == "ok", "task"].nunique() > 1  # profile and planted: other workloads
    data["panel"] = data["model"] + (" · " + data["task"] if several_tasks else "")
    variants = sorted(data["variant"].unique())
    data["color"] = data["variant"].map({v: f"C{i % 10}" for i, v in enumerate(variants)})
    data["linestyle"] = data["run"].map({r: LINESTYLES[i % len(LINESTYLES)] for i, r in enumerate(labels)})
    data["marker"] = data["run"].map({r: MARKERS[i % len(MARKERS)] for i, r in enumerate(labels)})
    data["lora_step_ms"] = lora_step_ms(data, method_info(runs))
    data["share_steps"] = share_steps(data, assume_steps)
    return data.join(init_shares(data, data["share_steps"].iloc[0]))


def variant_names(frame: pd.DataFrame) -> pd.Series:
    """The method, plus the settings that differ between points of the same method and rank (e.g. basis=VrUr).

    LoRA's alpha follows the rank, so it does not split a line; a basis sweep does.
    """
    settings = pd.DataFrame([{k: show(v) for k, v in parse_options(text).items()} for text in frame["method_options"]],
                            index=frame.index)
    for name in VARIANT_COLUMNS:
        settings[name] = frame[name].map(show)
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
    """Where each run was measured: device and commit. The models are each plot's own to name (its panels, or a
    caption line of its own), for a plot draws only the models that have its data."""
    parts = []
    for run, label in zip(runs, labels):
        env = run.meta.get("environment") or {}
        device = env.get("device") or "/".join(sorted(set(run.rows["device"]) - {""})) or "device unknown"
        hardware = env.get("gpu") or env.get("cpu") or ""
        dirty = "+dirty" if env.get("dirty") else ""
        text = f"{device}{f' ({hardware})' if hardware else ''}; commit {run.commit[:8]}{dirty}"
        parts.append(text if len(runs) == 1 else f"{label}: {text}")
    return "\n".join(parts)  # each plot wraps it to its width



# --- summary.md ---------------------------------------------------------------

def format_summary(runs: list[Run], labels: list[str], data: pd.DataFrame, verdicts: pd.DataFrame, plotted,
                   skipped) -> str:
    out = ["# Benchmark report", "", "Read from results.csv and meta.json alone (`run_bench.py report`).", ""]
    for run, label in zip(runs, labels):
        out += format_run_section(run, label)
    ok = data[data["status"] == "ok"].assign(eval_change=lambda d: d["eval_score"] - d["eval_score_before"])
    change_note = (" Change: the task's metric after minus before training, in points. " + NOISE_NOTE
                   if ok["eval_change"].notna().any() else "")
    if ok["busy"].any():
        change_note += " " + busy_note(set(ok.loc[ok["busy"], "cpu_count"]))
    out += ["## Results", "", "Mean over seeds; scores as mean ± std where there are several seeds. Each task is "
            "scored by its own metric (named in its heading and first score column); the other metrics that fit "
            "the task follow it." + change_note, ""]
    for (run, model, task), group in ok.groupby(["run", "model", "task"], sort=False):
        title = f"{model} · task {task}" + (f" · run {run}" if len(runs) > 1 else "")
        metric = task_metric(group)
        before = group["eval_score_before"].dropna()
        if not before.empty:  # the base model's, the same for every method of a seed
            shown = f"{before.iloc[0]:.3f}" if before.nunique() == 1 else format_value(before, column("eval_score_before"))
            examples = group["eval_examples"].mean()
            noise = noise_points(metric, before.mean(), examples)
            on = f" on {examples:,.0f} examples" if not math.isnan(examples) else ""
            on += f", noise ±{noise:.1f} points" if not math.isnan(noise) else ""
            title += f" ({metric} before training: {shown}{on})"
        # eval_score's heading names the task's metric; its change in training, then the task's other metrics
        # (eval_scores) follow it
        scores = group["eval_scores"].map(parse_options)
        others = sorted({name for s in scores for name in s} - {metric, "options"})
        table = [(c.name, f"eval {metric}" if c.name == "eval_score" else c.table, c) for c in TABLE]
        at = [name for name, _, _ in table].index("eval_score") + 1
        table[at:at] = [("eval_change", "change (pts)", None)] + [(name, f"eval {name}", column("eval_score"))
                                                                   for name in others]
        group = group.assign(**{name: scores.map(lambda s, name=name: s.get(name, np.nan)) for name in others})
        out += [f"### {title}", "", "| method | rank | seeds | " + " | ".join(h for _, h, _ in table) + " |",
                "|---|---:|---:|" + "---:|" * len(table)]
        for (variant, rank), point in group.groupby(["variant", "rank"]):
            middle = (point["eval_score"].mean() + point["eval_score_before"].mean()) / 2
            noise = noise_points(metric, middle, point["eval_examples"].mean())
            cells = [mark_busy(format_value(point[name].astype(float), col), col.is_timing and point["busy"].any())
                     if col is not None
                     else MISSING if point[name].isna().all() else format_difference(100 * point[name].mean(), noise)
                     for name, _, col in table]
            out.append(f"| {md_cell(variant)} | {rank} | {point['seed'].nunique()} | " + " | ".join(cells) + " |")
        out.append("")
    if ok.empty:
        out += ["No point finished ok.", ""]
    out += format_claim_check(ok, verdicts, several_runs=len(runs) > 1)
    out += format_transfer(transfer_cells(ok), several_runs=len(runs) > 1)
    out += format_peft_comparison(ok, method_info(runs), several_runs=len(runs) > 1)
    out += ["## Plots", ""]
    for title, paths in plotted:
        out += [f"### {title}", ""]
        for page, (png, svg) in enumerate(zip(paths[::2], paths[1::2]), 1):
            name = title if len(paths) == 2 else f"{title}, page {page} of {len(paths) // 2}"
            out += [f"![{name}]({png})", "", f"[SVG]({svg})", ""]
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


def method_info(runs: list[Run]) -> dict[str, dict]:
    """What the runs' drivers wrote about each method (meta.json "methods": display_name, same_as, init)."""
    info = {}
    for run in runs:
        info.update(run.meta.get("methods") or {})
    return info


def display_name(method: str, methods: dict) -> str:
    return (methods.get(method) or {}).get("display_name", method)


def format_peft_comparison(ok: pd.DataFrame, methods: dict, several_runs: bool) -> list[str]:
    """Each method against another implementation of the same method (ours against PEFT's) at the same rank; the
    data-driven inits (GiVA's gradient, PiSSA's weights, EVA's activations, ...) side by side."""
    present = set(ok["method"])
    pairs = sorted((info["same_as"], method) for method, info in methods.items()
                   if info.get("same_as") not in (None, method) and {info["same_as"], method} <= present)
    data_driven = sorted(m for m in present if (methods.get(m) or {}).get("init", "none") != "none")
    if not pairs and len(data_driven) < 2:
        return []
    out = []
    for (run, model, task), group in ok.groupby(["run", "model", "task"], sort=False):
        stats = group.groupby(["method", "rank"]).agg(
            accuracy=("eval_accuracy", "mean"), step_ms=("step_time_ms_p50", "mean"), init_s=("init_total_s", "mean"),
            init_data_s=("init_grad_s", "mean"), init_svd_s=("init_svd_s", "mean"),
            init_peak=("init_peak_mem_bytes", "mean"), init_growth=("init_mem_growth_bytes", "mean"),
            peak=("peak_mem_bytes", "mean"), trainable=("trainable_params", "mean"),
            lora_step_ms=("lora_step_ms", "mean"))
        title = f"### {model} · task {task}" + (f" · run {run}" if several_runs else "")
        rows = [(ours, theirs, rank) for ours, theirs in pairs for (method, rank) in stats.index
                if method == ours and (theirs, rank) in stats.index]
        if rows:
            out += [title + ": ours against PEFT", "",
                    "| method | r | trainable (ours / PEFT) | step time | init time | init peak mem | train peak mem | "
                    "accuracy, ours - PEFT (points) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for ours, theirs, rank in rows:
                mine, other = stats.loc[(ours, rank)], stats.loc[(theirs, rank)]
                accuracy = format_number(100 * (mine["accuracy"] - other["accuracy"]), "+.1f")
                out.append(f"| {display_name(ours, methods)} | {rank} | {format_number(mine['trainable'], ',.0f')} / "
                           f"{format_number(other['trainable'], ',.0f')} | "
                           + " | ".join(format_ratio(mine[k], other[k]) for k in ("step_ms", "init_s", "init_peak", "peak"))
                           + f" | {accuracy} |")
            out += ["", "Ratios are ours over PEFT's (below 1: ours is faster or smaller).", ""]
        inits = [(m, rank) for (m, rank) in stats.index if m in data_driven]
        if len({m for m, _ in inits}) > 1:
            out += [title + ": data-driven inits", "",
                    "| method | r | init total (s) | data passes (s) | SVD / decompositions (s) | init peak mem (MiB) | "
                    "init mem growth (MiB) | init in LoRA steps |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for method, rank in sorted(inits, key=lambda k: (k[1], k[0])):
                row = stats.loc[(method, rank)]
                cells = [format_number(row[k], ".3g") for k in ("init_s", "init_data_s", "init_svd_s")]
                cells += [format_number(row[k] / MIB, ",.0f") for k in ("init_peak", "init_growth")]
                cells.append(format_number(row["init_s"] / (row["lora_step_ms"] / 1000.0), ".2g"))
                out.append(f"| {display_name(method, methods)} | {rank} | " + " | ".join(cells) + " |")
            out += ["", "Data passes: GiVA's gradient batches, EVA's and CorDA's forward passes (with EVA's incremental "
                    "SVD and CorDA's eigendecomposition, which run inside them), LoRA-GA's gradients. Decompositions: "
                    "GiVA's gradient SVD, PiSSA's weight SVD, OLoRA's QR, CorDA's and LoRA-GA's per-layer bases. "
                    f"{LORA_STEPS_NOTE}. On CPU, memory is process RSS.", ""]
    return ["## Ours against PEFT, and data-driven inits", "", *out] if out else []


def format_load(run: Run) -> str:
    """How busy the machine was: the highest 1-minute load average against its cores, and the points it marks."""
    load = run.meta.get("load")
    if not load:
        return "not recorded"
    timed = run.rows["estimated"] != 1  # estimated rows have no timings
    busy = int(run.busy()[timed].sum())
    text = f"1-minute load average up to {load['load_avg_1m_max']:g} on {load['cpu_count']} cores"
    if load.get("busy"):
        text += (f": busy; {busy} of {int(timed.sum())} measured points ran above the core count (their timings "
                 f"marked {BUSY_MARK})")
    return text


def format_run_section(run: Run, label: str) -> list[str]:
    meta, env = run.meta, run.meta.get("environment") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v)
    counts = run.rows["status"].value_counts()
    command = " ".join(meta.get("command") or []) or "unknown"
    device = env.get("device", "unknown") + (f" ({env['gpu']})" if env.get("gpu") else "")
    facts = [
        ("folder", f"`{repo_relative(run.run_dir)}`"),
        ("command", f"`{command}`"),
        ("started / ended", f"{meta.get('started_at', '?')} / {meta.get('ended_at', 'not ended (killed or running)')}"),
        ("commit", f"`{run.commit}`" + (" (dirty working tree)" if env.get("dirty") else "")),
        ("device", device),
        ("cpu", f"{env.get('cpu', '?')}, {env.get('cpu_count', '?')} cores, "
                f"torch threads {env.get('torch_threads', '?')}"),
        ("python / platform", f"{env.get('python', '?')} / {env.get('platform', '?')}"),
        ("versions", versions or "unknown"),
        ("points", ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)
         + (" (estimated: FakeTensorMode, shapes only, no timings)" if meta.get("estimated") else
            f" ({estimated} of them estimated: the size ladder, FakeTensorMode, shapes only, no timings)"
            if (estimated := int((run.rows["estimated"] == 1).sum())) else "")),
        ("config hash", f"`{meta.get('config_hash', '?')}`"),
        ("load", format_load(run)),
    ]
    out = [f"## Run {label}", "", "| | |", "|---|---|"] + [f"| {k} | {md_cell(v)} |" for k, v in facts] + [""]
    if meta.get("config"):
        lines = [f"{k} = {json.dumps(v, sort_keys=True)}" for k, v in sorted(meta["config"].items())]
        out += ["<details><summary>resolved config</summary>", "", "```", *lines, "```", "", "</details>", ""]
    return out
