"""Run a sweep into a run directory: meta.json, resume, one fresh process per point, progress."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile

import torch
from tqdm import tqdm

from .config import Point, SweepConfig, expand_grid
from .point import identity_columns, run_point
from .results import (SCHEMA_VERSION, append_row, done_point_ids, environment_info, read_meta,
                      utc_now, write_meta)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but torch sees no CUDA device; use --device cpu")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return device if device != "cuda" else "cuda:0"


def prepare_run_dir(run_dir: str, config: SweepConfig, command: list[str], device: str) -> dict:
    """Create or reopen run_dir; refuse a run dir that another config made."""
    try:
        os.makedirs(run_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to run directory {run_dir!r} ({e.strerror}); choose another --out") from None
    meta = read_meta(run_dir)
    if meta is not None and meta.get("config_hash") != config.config_hash():
        raise ValueError(f"{run_dir!r} holds a run of a different config (hash {meta.get('config_hash')}, this one "
                         f"{config.config_hash()}); give a new --out to start a new run, or rerun its own command")
    if meta is None:
        meta = {"schema_version": SCHEMA_VERSION, "config": config.to_dict(), "config_hash": config.config_hash(),
                "command": command, "started_at": utc_now(), "environment": environment_info(device), "resumed": []}
    else:
        meta["resumed"].append({"at": utc_now(), "command": command, "environment": environment_info(device)})
    write_meta(run_dir, meta)
    return meta


def run_sweep(config: SweepConfig, run_dir: str, command: list[str], log=print) -> list[dict]:
    """Run every point not yet done; returns the rows written this time."""
    device = resolve_device(config.device)
    config.check_task_data()  # bad data or metric: one error before any point runs
    meta = prepare_run_dir(run_dir, config, command, device)
    points = expand_grid(config, device)
    done = done_point_ids(run_dir)
    todo = [p for p in points if p.point_id not in done]
    if done:
        log(f"resuming {run_dir}: {len(points) - len(todo)} of {len(points)} points already done")
    rows = []
    bar = tqdm(todo, unit="point", dynamic_ncols=True, file=sys.stderr)
    for point in bar:
        bar.set_description(point.label)
        row = run_isolated(point, run_dir, config.point_timeout_s) if config.isolate else run_point(point, run_dir)
        append_row(run_dir, row)
        rows.append(row)
        bar.write(summary_line(row))
    meta["ended_at"] = utc_now()
    write_meta(run_dir, meta)
    return rows


def summary_line(row: dict) -> str:
    label = f"{row['model']} {row['task']} {row['method']} r={row['rank']} seed={row['seed']}"
    if row["status"] != "ok":
        return f"{row['status']:7s} {label}: {row['error']}"
    parts = [f"trainable={row['trainable_params']:,}", f"init={row['init_total_s']:.2f}s",
             f"step={row['step_time_ms_p50']:.1f}ms", f"peak={row['peak_mem_bytes'] / 2**20:.0f}MiB"]
    if row.get("eval_score") is not None:
        parts.append(f"{row['eval_metric']}={row['eval_score_before']:.3f}->{row['eval_score']:.3f}")
    return f"ok      {label}: " + " ".join(parts)


def run_isolated(point: Point, run_dir: str, timeout_s: int) -> dict:
    """The point in a fresh Python process; a crash, kill or timeout becomes a failed row."""
    logs = os.path.join(run_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    point_file = os.path.join(logs, f"{point.point_id}.point.json")
    row_file = os.path.join(logs, f"{point.point_id}.row.json")
    log_file = os.path.join(logs, f"{point.point_id}.log")
    with open(point_file, "w") as f:
        json.dump(point.__dict__, f)
    if os.path.exists(row_file):
        os.remove(row_file)
    error = None
    with open(log_file, "w") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.point", point_file, row_file, run_dir],
                                  stdout=log, stderr=log, timeout=timeout_s, preexec_fn=_die_with_parent,
                                  cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            if proc.returncode < 0:
                name = signal.Signals(-proc.returncode).name
                error = f"point process killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
            elif proc.returncode != 0:
                error = f"point process exited with code {proc.returncode}; see {log_file}"
        except subprocess.TimeoutExpired:
            error = f"point ran past point_timeout_s={timeout_s}; raise it or shrink the point"
    if error is None and os.path.exists(row_file):
        with open(row_file) as f:
            return json.load(f)
    return {**identity_columns(point), "status": "failed", "error": error or f"no result written; see {log_file}"}


def _die_with_parent() -> None:
    """Linux: the point process gets SIGKILL when the sweep dies, so no orphan writes after a kill."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
