"""Finding the point processes that a test's sweep started, by the point they run: a point process writes its output
to point.log in its scratch folder (giva-point-*, beside point.json; bench/run/executors/worker.py), and each test
gives its points a sequence length of its own, so that tests do not see each other's points."""

from __future__ import annotations

import json
import os

import psutil


def point_of(proc: psutil.Process) -> dict | None:
    """The point a process runs (its point.json), or None if it is not a point process (or ended meanwhile)."""
    try:
        if not any("forkserver" in part for part in proc.cmdline()):  # forked from bench/run/point_fork.py's server
            return None
        logs = [f.path for f in proc.open_files() if os.path.basename(f.path) == "point.log"]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for log in logs:
        if os.path.basename(os.path.dirname(log)).startswith("giva-point-"):
            try:
                with open(os.path.join(os.path.dirname(log), "point.json")) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None
    return None


def point_processes(seq_len: int) -> list[psutil.Process]:
    """Point processes alive now whose point is llama-2m at batch 2 with this seq_len."""
    found = []
    for proc in psutil.process_iter():
        point = point_of(proc)
        if point and point.get("seq_len") == seq_len and point.get("model") == "llama-2m" and point.get("batch_size") == 2:
            found.append(proc)
    return found
