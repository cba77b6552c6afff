"""The workers an executor runs for one point, wherever it runs: plain data in (the point as a dict), plain data out.

    payload = run_point_payload(dataclasses.asdict(point), timeout_s=3600)
    payload  ->  {"row": the results row, "log": the point process's output, "curve_csv": its eval curve or ""}

run_point_payload runs the point in a fresh Python process (`python -m bench.run.point`; run_point_forked: forked
from a server that has made its imports, forkserver.py) inside a scratch folder on the machine that runs it, so
peak memory is the point's own, a crash loses that point only, and nothing is written into the run directory: the
sweep driver writes the row, the log and the curve it gets back. run_point_here runs it in this process
(--in-process). Every worker takes (point, timeout_s, env=None).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import torch

from ...config.sweep import Point
from ..point import run_point
from ..rows import failed_row, one_line
from .forkserver import REPO_ROOT, ForkedProcess, ForkServer, point_process_setup

LOG_TAIL_BYTES = 1 << 20  # keep the last MiB of a point's output

_running: set[subprocess.Popen | ForkedProcess] = set()  # point processes started here and not yet ended
_running_lock = threading.Lock()


def run_point_payload(point: dict, timeout_s: int, env: dict | None = None, forked: bool = False) -> dict:
    """Run one point in a fresh process here and return its payload; a failing point gives a failed row, never an
    exception. forked: a CPU point's process is forked from this thread's fork server (forkserver.py), which has
    made the imports already; where it cannot be, a fresh process runs it."""
    on_cpu = _runs_on_cpu(point["device"])
    if on_cpu:
        env = {**malloc_env(point.get("malloc_mmap_threshold", 0)), **(env or {})}
    return _in_scratch(point, lambda scratch: _run_in_subprocess(point, scratch, timeout_s, env, forked and on_cpu))


def run_point_forked(point: dict, timeout_s: int, env: dict | None = None) -> dict:
    """run_point_payload with forked=True: the worker of the executors whose points run on this machine."""
    return run_point_payload(point, timeout_s, env, forked=True)


_servers: dict[tuple, ForkServer] = {}  # (thread, environment) -> its fork server
_servers_lock = threading.Lock()


def _start_forked(argv: list[str], log_path: str, model: str, env: dict | None) -> ForkedProcess | None:
    """A point process forked by this thread's server for `env` (started on first use), or None if none can fork."""
    key = (threading.get_ident(), tuple(sorted((env or {}).items())))
    with _servers_lock:
        server = _servers.get(key)
        if server is None or not server.alive():
            server = _servers[key] = ForkServer(env or {})
    return server.start(argv, log_path, model)


def stop_fork_servers() -> None:
    """End every fork server this process started (its sweep is over); the next point starts one again."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


def malloc_env(threshold: int) -> dict:
    """The environment that makes glibc map blocks of `threshold` bytes and more one by one (0: glibc's own), so that a
    CPU point's RSS follows its live tensors (config/sweep.py malloc_mmap_threshold)."""
    return {"MALLOC_MMAP_THRESHOLD_": str(threshold)} if threshold else {}


def _runs_on_cpu(device: str) -> bool:
    return device == "cpu" or (device == "auto" and not torch.cuda.is_available())


def run_point_here(point: dict, timeout_s: int = 0, env: dict | None = None) -> dict:
    """Run one point in this process (no timeout, memory readings shared with what ran before)."""
    return _in_scratch(point, lambda scratch: (run_point(Point(**point), scratch), ""))


def _in_scratch(point: dict, run) -> dict:
    host = socket.gethostname()
    try:
        with tempfile.TemporaryDirectory(prefix="giva-point-") as scratch:
            row, log = run(scratch)
            curve_path = os.path.join(scratch, "curves", f"{row['point_id']}.csv")
            curve = open(curve_path).read() if os.path.exists(curve_path) else ""
    except OSError as e:  # no scratch space on this machine
        return failed_payload(point, f"cannot run the point in a scratch folder on {host}: {one_line(e)}")
    return {"row": {**row, "host": row.get("host") or host}, "log": log, "curve_csv": curve}


def _run_in_subprocess(point: dict, scratch: str, timeout_s: int, env: dict | None, forked: bool) -> tuple[dict, str]:
    point_file, row_file, log_file = (os.path.join(scratch, name) for name in ("point.json", "row.json", "point.log"))
    with open(point_file, "w") as f:
        json.dump(point, f)
    error = None
    with open(log_file, "w") as log:
        argv = [point_file, row_file, scratch]
        proc = _start_forked(argv, log_file, point["model"], env) if forked else None
        if proc is None:
            proc = subprocess.Popen([sys.executable, "-m", "bench.run.point", *argv], stdout=log, stderr=log,
                                    cwd=REPO_ROOT, preexec_fn=point_process_setup,
                                    env={**os.environ, **env} if env else None)
        with _running_lock:
            _running.add(proc)
        try:
            returncode = proc.wait(timeout=timeout_s)
            if returncode < 0:
                name = signal.Signals(-returncode).name
                error = f"point process killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
            elif returncode != 0:
                error = f"point process exited with code {returncode}; see its log"
        except subprocess.TimeoutExpired:
            error = f"point ran past point_timeout_s={timeout_s}; raise it or shrink the point"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with _running_lock:
                _running.discard(proc)
    with open(log_file, errors="replace") as f:
        f.seek(max(0, os.path.getsize(log_file) - LOG_TAIL_BYTES))
        log_text = f.read()
    if error is None and os.path.exists(row_file):
        with open(row_file) as f:
            return json.load(f), log_text
    return failed_payload(point, error or "the point process wrote no result; see its log")["row"], log_text


def failed_payload(point: dict, error: str) -> dict:
    """The payload of a point that produced no row of its own."""
    return {"row": failed_row(Point(**point), error, host=socket.gethostname()), "log": "", "curve_csv": ""}


def kill_running_points() -> None:
    """SIGKILL every point process this process started (the driver or a worker is stopping)."""
    with _running_lock:
        for proc in list(_running):
            if proc.poll() is None:
                proc.kill()
