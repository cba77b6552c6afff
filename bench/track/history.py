"""The history of runs over commits: one row per run and ok point, with what change detection needs.

    append_history(["reports/runs/quick-abc1234"], "reports/history.csv")   # -> rows added
    history = read_history("reports/history.csv")                         # one typed frame

A row keeps the point's raw step times (step_times_ms), every exact count, the history metrics of
bench/columns.py, where it ran (host, device, executor; the machine that timed it: CPU, GPU, the points' torch
threads), the commit with its position in git's first-parent order (runs are ordered by it, not by date) and
dirty flag, and the machine's load while the run ran (meta.json "load": busy = the 1-minute load average exceeded
the cores; the rows' load columns where the run has them). A series is a point's identity less its seed, on one
machine (host + device) and one kind of run (measured or estimated): machines are never mixed in a series. Within
a series, timings and memory readings are judged only between runs of one processor, GPU and thread count
(`timed_on`: track/machine.py; a cloud VM may keep its host name on another processor), exact counts across all
(changes.py). A history file of another format is refused with one line that says how to rebuild it from the run
folders; appending checks every run first and writes nothing when one is refused.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os

import numpy as np
import pandas as pd

from ..columns import COUNTED_BY, HISTORY_METRICS, IDENTITY, column
from ..results.environment import commit_position
from ..results.read import Run, load_run
from .machine import Machine, device_name, run_machine

HISTORY_VERSION = 3  # 1: no version column, no raw step times, counts or load; ordered by date; 2: no gpu,
# torch_threads the driver's rather than the points', no operator-level counts nor the torch version that counted them
RUN_COLUMNS = ["history_version", "run_dir", "run_ended_at", "commit", "commit_position", "dirty", "host", "cpu",
               "gpu", "cpu_count", "torch_threads", "executor", "estimated", "busy", "run_load_avg_1m_max"]
# The machine's load per point, recorded by runs that have these columns (read where present, else empty).
LOAD_COLUMNS = ["load_avg_1m_start", "load_avg_1m_end", "cpu_steal_s", "ctx_switches_involuntary"]
POINT_COLUMNS = ["point_id", *IDENTITY, "peak_mem_source", "eval_metric", "step_times_ms", COUNTED_BY]
METRICS = HISTORY_METRICS  # the columns marked history=True in bench/columns.py: every exact count, the timings
HISTORY_COLUMNS = RUN_COLUMNS + LOAD_COLUMNS + POINT_COLUMNS + METRICS
# What makes rows one series over commits: the point less its seed (seeds are samples of the same series), on one
# machine (host; the device is in the identity), measured or estimated.
SERIES = [c for c in IDENTITY if c != "seed"] + ["host", "estimated"]
TEXT = ["run_dir", "run_ended_at", "commit", "host", "cpu", "gpu", "executor", "point_id", "peak_mem_source",
        "eval_metric", "step_times_ms", COUNTED_BY] + [c for c in IDENTITY if column(c).is_text]
REBUILD = "move it aside and rebuild it from the run folders: `run_bench.py history --append RUN_DIR ...`"


# --- appending ---------------------------------------------------------------------------------------------------


def append_history(run_dirs: list[str] | str, history_csv: str = "reports/history.csv") -> int:
    """Add one row per ok point of each run; a point of a run already in the file is not added again. Every run is
    checked before anything is written (a refused run writes nothing)."""
    run_dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    existing = read_history(history_csv) if os.path.exists(history_csv) else pd.DataFrame(columns=HISTORY_COLUMNS)
    seen = set(zip(existing["run_dir"], existing["point_id"]))
    new = []
    for run in [load_run(path) for path in run_dirs]:
        for row in history_rows(run):
            if (row["run_dir"], row["point_id"]) not in seen:
                seen.add((row["run_dir"], row["point_id"]))
                new.append(row)
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


def history_rows(run: Run) -> list[dict]:
    """The history rows of one run (its ok points); a run without a commit, or whose commit has no known position
    in first-parent order, is refused."""
    env = run.meta.get("environment") or {}
    commit = env.get("commit")
    if not commit:
        raise ValueError(f"{run.run_dir}: meta.json records no commit (environment.commit); the history orders runs "
                         "by commit: run the sweep again from a git checkout")
    position = env.get("commit_position") or commit_position(commit)
    if position is None:
        raise ValueError(f"{run.run_dir}: commit {commit[:12]} is not in this repository's history and meta.json "
                         "records no commit_position; fetch that commit (git fetch) or append from a checkout that "
                         "has it")
    load = run.meta.get("load") or {}
    machine = run_machine(run.meta)
    cpus = load.get("cpu_count") or env.get("cpu_count")
    ok = run.rows[run.rows["status"] == "ok"]
    rows = []
    for row in ok.to_dict("records"):
        point_load = pd.to_numeric(pd.Series([row.get(c) for c in ("load_avg_1m_start", "load_avg_1m_end")],
                                             dtype=object), errors="coerce").dropna().tolist()
        if point_load and cpus:  # the point's own readings where the run has them, else the run's
            busy = max(point_load) > cpus
        else:
            busy = load.get("busy")
        values = {
            "history_version": HISTORY_VERSION, "run_dir": run.run_dir,
            "run_ended_at": run.meta.get("ended_at") or run.meta.get("started_at") or "", "commit": commit,
            "commit_position": position, "dirty": int(bool(env.get("dirty"))), "host": row.get("host") or "",
            "cpu": machine.processor, "gpu": env.get("gpu") or "", "cpu_count": cpus, "torch_threads": machine.threads,
            "executor": row.get("executor") or "", "estimated": int(row.get("estimated") or 0),
            "busy": "" if busy is None else int(bool(busy)), "run_load_avg_1m_max": load.get("load_avg_1m_max"),
            **{c: row.get(c) for c in LOAD_COLUMNS + POINT_COLUMNS + METRICS}}
        rows.append({k: "" if v is None or (isinstance(v, float) and np.isnan(v)) else v for k, v in values.items()})
    return rows


# --- reading -----------------------------------------------------------------------------------------------------


def read_history(history_csv: str) -> pd.DataFrame:
    """The history as a frame (numbers typed, empty cells NaN), with `series`, `machine` (host/device) and `timed_on`
    (the machine that timed the row: processor, device, threads) columns added; a file of another format is a
    one-line error saying how to rebuild it."""
    if not os.path.exists(history_csv):
        raise FileNotFoundError(f"no history at {history_csv}; add runs with `run_bench.py history --append RUN_DIR`")
    if os.path.getsize(history_csv) == 0:
        return with_series(pd.DataFrame(columns=HISTORY_COLUMNS))
    with open(history_csv, newline="") as f:
        header = next(csv.reader(f), [])
    if not header or header[0] != "history_version":
        raise ValueError(f"{history_csv} is a history of an older format (no raw step times, counts, commit "
                         f"positions or load); {REBUILD}")
    if header != HISTORY_COLUMNS:
        with open(history_csv, newline="") as f:
            version = next(csv.DictReader(f), {}).get("history_version", "?")
        raise ValueError(f"{history_csv} is history version {version} with other columns than this code's "
                         f"(version {HISTORY_VERSION}); {REBUILD}")
    history = pd.read_csv(history_csv, dtype={c: str for c in TEXT}, keep_default_na=False, na_values=[""])
    for name in TEXT:
        history[name] = history[name].fillna("")
    for name in [c for c in HISTORY_COLUMNS if c not in TEXT]:
        history[name] = pd.to_numeric(history[name], errors="coerce")
    return with_series(history)


def with_series(history: pd.DataFrame) -> pd.DataFrame:
    history = history.copy()
    history["machine"] = [f"{h}/{d}" for h, d in zip(history["host"], history["device"])]
    history["timed_on"] = [str(Machine(cpu, device_name(gpu, device), None if pd.isna(threads) else int(threads)))
                           for cpu, gpu, device, threads in
                           zip(history["cpu"], history["gpu"], history["device"], history["torch_threads"])]
    history["series"] = [series_name(r) for r in history[SERIES].to_dict("records")]
    return history


def series_name(row: dict) -> str:
    """One series as people (and acknowledgements) name it: 'llama-2m profile lora r8 b4 T32 float32 {} @vm/cpu'."""
    options = json.dumps(json.loads(row["method_options"]), separators=(",", ":")) if row["method_options"] else "{}"
    name = (f"{row['model']} {row['task']} {row['method']} r{row['rank']:.0f} b{row['batch_size']:.0f} "
            f"T{row['seq_len']:.0f} {row['dtype']} {options} @{row['host']}/{row['device']}")
    return name + (" estimated" if row["estimated"] == 1 else "")


def select_series(history: pd.DataFrame, pattern: str | None = None, machine: str | None = None) -> pd.DataFrame:
    """The rows of the series whose name matches a glob pattern, on one machine (host/device); a pattern that
    matches the same point on two machines without --machine is refused: machines are never mixed in a series."""
    rows = history
    if machine:
        rows = rows[[fnmatch.fnmatchcase(m, machine) for m in rows["machine"]]]
        if rows.empty:
            raise ValueError(f"no run of machine {machine!r} in the history; its machines: "
                             f"{', '.join(sorted(history['machine'].unique()))}")
    if pattern:
        rows = rows[[fnmatch.fnmatchcase(s, pattern) or pattern in s for s in rows["series"]]]
        if rows.empty:
            raise ValueError(f"no series matches {pattern!r}; `run_bench.py history regressions` lists them")
        points = rows.groupby([c for c in SERIES if c != "host"])["machine"].nunique()
        if not machine and (points > 1).any():
            raise ValueError(f"{pattern!r} names runs of {rows['machine'].nunique()} machines "
                             f"({', '.join(sorted(rows['machine'].unique()))}) as one series; pick one with "
                             "--machine HOST/DEVICE")
    return rows


# --- plots of the raw history ------------------------------------------------------------------------------------


