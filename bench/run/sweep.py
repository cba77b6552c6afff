"""The sweep driver: check the inputs, lock the run directory, resume, hand points and a worker to an executor, and
write every row itself.

    rows = run_sweep(config, run_dir, command)                  # config.executor names the executor (executors/)
    rows = run_sweep(config, run_dir, command, estimated=True)  # `run_bench.py estimate`: the trace worker
    rows = collect(run_dir)                                     # rows of jobs submitted earlier with --no-wait

The driver is the only writer of results.csv (append + fsync per row), of logs/ and curves/. A write that the
run directory refuses (full disk, read-only) stops the sweep with one line; the rows already written stay,
and the points not recorded run on the next plain rerun.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace

from tqdm import tqdm

from .. import adapters
from ..columns import PROGRESS
from ..config.grid import expand_grid
from ..config.sweep import Point, SweepConfig
from ..models import get_entry, num_layers
from ..results.environment import machine_load, utc_now
from ..results.read import done_point_ids, read_meta
from ..results.rundir import RunDirUnwritable, ensure_writable, lock_run_dir, open_run_dir
from ..results.write import append_row, write_meta
from . import executors
from .checks import check_inputs
from .validate import check_config
from .estimate import estimate_payload
from .executors.pool import run_in_slots
from .executors.worker import malloc_env, run_point_forked, run_point_here, run_point_payload, stop_fork_servers
from .point import resolve_device

# Traces run in processes of their own once their points' layers add up to this many: below it, starting the fork
# servers (about 5 s each) costs what the second core saves (measured: 6 traces of 2- and 4-layer models, 18 layers
# in all, took 12.4-13.2 s in processes against 10.7-13.0 s in the driver; the quick preset's ladder, 144 layers,
# 25-28 s against 61 s).
PARALLEL_TRACE_LAYERS = 32


def run_sweep(config: SweepConfig, run_dir: str, command: list[str], log=print, retry_failed: bool = False,
              estimated: bool = False) -> list[dict]:
    """Run every point not yet done (failed ones too with retry_failed); returns the rows written this time.

    estimated: trace each point under FakeTensorMode instead of running it (run/estimate.py, `run_bench.py
    estimate`); a "cuda" device needs no GPU then. The size ladder's points are traced so in any case, after the
    measured ones (trace_points: on every core of this machine).
    """
    check_config(config)  # names and options against the registries, the executor's settings
    kind, settings = executors.executor_settings({} if estimated else config.executor)
    if config.assume_steps and not estimated:
        raise ValueError(f"assume_steps={config.assume_steps} is for `run_bench.py estimate`; a measured point states "
                         "its own training steps: drop it, or set the train steps")
    check_inputs(config)  # models, ranks, targets, data: one error before any point runs
    # the device meta.json records: this machine's where the points run here, else as asked (resolved where they run)
    runs_here = executors.EXECUTORS[kind].runs_here and not estimated
    # points in processes of their own: here forked from a server that has made their imports (executors/forkserver.py)
    worker = (run_point_forked if runs_here else run_point_payload) if config.isolate else run_point_here
    driver_device = resolve_device(config.device) if runs_here else config.device
    with lock_run_dir(run_dir):
        _refuse_pending_jobs(run_dir, kind, settings)
        meta, done = open_run_dir(run_dir, config, command, driver_device, log, retry_failed, estimated)
        meta["executor"] = {**config.executor, "kind": "estimate" if estimated else kind}
        meta["methods"] = {method: adapters.describe(method) for method in config.methods}  # for the report
        meta["cpu_point_env"] = malloc_env(config.malloc_mmap_threshold) if config.isolate and not estimated else {}
        load_avgs = [os.getloadavg()[0]]  # this machine's, at the start and end and around each point run here
        meta["load"] = machine_load(load_avgs, meta.get("load"))
        points = expand_grid(config)
        todo = [p for p in points if p.point_id not in done]
        if done:
            log(f"resuming {run_dir}: {len(points) - len(todo)} of {len(points)} points already done")
        # the executor runs the measured points; then trace_points traces the rest on this machine (all of `estimate`'s,
        # the size ladder's)
        measured = [] if estimated else [p for p in todo if not p.estimated]
        traced = [replace(p, estimated=True) for p in todo if estimated or p.estimated]
        # bad executor input stops here, nothing written
        executor = executors.make_executor(kind, settings, config, run_dir, check_paths=not estimated)
        rows = []
        bar = tqdm(total=len(todo), unit="point", dynamic_ncols=True, file=sys.stderr)
        try:
            _write_or_stop(run_dir, lambda: write_meta(run_dir, meta), len(done))
            with _sigterm_as_interrupt():
                for payload in itertools.chain(executor.run(measured, worker), trace_points(traced, config)):
                    row = record(run_dir, payload, "estimate" if payload["row"]["estimated"] else executor.name, done)
                    if row is not None:
                        rows.append(row)
                        if row.get("host") in (None, socket.gethostname()):
                            load_avgs += [row[c] for c in ("load_avg_1m_start", "load_avg_1m_end") if row.get(c) is not None]
                        bar.update()
                        bar.write(summary_line(row))
        finally:
            executor.close()
            stop_fork_servers()
            bar.close()
        if getattr(settings, "no_wait", False):  # slurm's: the jobs run on without the driver
            log(f"{len(todo)} points submitted as jobs; gather their rows with `run_bench.py collect {run_dir}`")
        meta["ended_at"] = utc_now()
        meta["load"] = machine_load([*load_avgs, os.getloadavg()[0]], meta["load"])
        _write_or_stop(run_dir, lambda: write_meta(run_dir, meta), len(done))
        return rows


def trace_points(points: list[Point], config: SweepConfig) -> Iterator[dict]:
    """The traced points' payloads, once the measured points are done (nothing here is timed, so a trace may take a
    core of its own): with isolated points and enough to trace, in processes forked from a server
    (executors/forkserver.py), one per core at a time, the deepest model first, a crash or a hang (point_timeout_s)
    ending that trace only; otherwise (--in-process, one core, or a few small models) one after the other in this
    process."""
    depth = {model: num_layers(get_entry(model)) for model in {p.model for p in points}}
    workers = min(len(os.sched_getaffinity(0)), len(points))
    if not config.isolate or workers <= 1 or sum(depth[p.model] for p in points) < PARALLEL_TRACE_LAYERS:
        yield from (estimate_payload(asdict(p)) for p in points)
        return
    deepest_first = sorted(points, key=lambda p: -depth[p.model])  # the longest traces first: the last to end is short
    yield from run_in_slots(deepest_first, run_point_forked, [{}] * workers, config.point_timeout_s)


def collect(run_dir: str, log=print) -> list[dict]:
    """Record the rows of jobs submitted with --no-wait that have ended; safe to run again (adds nothing twice)."""
    if read_meta(run_dir) is None:
        raise FileNotFoundError(f"{run_dir!r} holds no run (no meta.json); give the --out of a `run --no-wait`")
    with lock_run_dir(run_dir):
        done = done_point_ids(run_dir)
        payloads, still_running, executor = executors.collect(run_dir)
        rows = [row for row in (record(run_dir, p, executor, done) for p in payloads) if row is not None]
        for row in rows:
            log(summary_line(row))
        if still_running:
            log(f"{still_running} jobs still running; run `run_bench.py collect {run_dir}` again later")
        return rows


def record(run_dir: str, payload: dict, executor: str, done: set[str]) -> dict | None:
    """Write a point's log, curve and row (once per point_id); None when the point was already recorded."""
    row = {**payload["row"], "executor": executor}
    if row["point_id"] in done:
        return None
    ensure_writable(run_dir)  # a full or read-only disk stops the sweep here, before a half-written row or log

    def write():
        os.makedirs(os.path.join(run_dir, "logs"), exist_ok=True)
        with open(os.path.join(run_dir, "logs", f"{row['point_id']}.log"), "w") as f:
            f.write(payload["log"])
        if payload["curve_csv"]:
            os.makedirs(os.path.join(run_dir, "curves"), exist_ok=True)
            with open(os.path.join(run_dir, "curves", f"{row['point_id']}.csv"), "w") as f:
                f.write(payload["curve_csv"])
        append_row(run_dir, row)

    _write_or_stop(run_dir, write, len(done))
    done.add(row["point_id"])
    return row


def _write_or_stop(run_dir: str, write, rows_so_far: int) -> None:
    try:
        write()
    except OSError as e:
        raise RunDirUnwritable(f"cannot write to run directory {run_dir!r} ({e.strerror}); the {rows_so_far} rows "
                               "already in results.csv are intact: free space or fix its permissions, then rerun the "
                               "same command (the points not recorded run then)") from None


def _refuse_pending_jobs(run_dir: str, kind: str, settings) -> None:
    """Jobs submitted earlier that this sweep's executor cannot wait for (another executor or cluster) stop it."""
    jobs = executors.pending_jobs(run_dir, kind, settings)
    if jobs:
        raise ValueError(f"{jobs} points of {run_dir!r} were submitted as jobs and not gathered; run "
                         f"`run_bench.py collect {run_dir}` (again once they end) before running the sweep again "
                         "with another executor")


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (kill, scancel, a scheduler's stop) ends the sweep like Ctrl-C: the executor cancels its work."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summary_line(row: dict) -> str:
    label = (f"{row['model']} {row['task']} {row['method']} r={row['rank']} seed={row['seed']}"
             + (f" init_task={row['init_task']}" if row.get("init_task") else ""))
    if row["status"] != "ok":
        return f"{row['status']:7s} {label}: {row['error']}"
    parts = [f"{c.progress}={c.format(row[c.name]).replace(' ', '')}" for c in PROGRESS if row.get(c.name) is not None]
    if row.get("eval_score") is not None:
        parts.append(f"{row['eval_metric']}={row['eval_score_before']:.3f}->{row['eval_score']:.3f}")
    return f"ok      {label}: " + " ".join(parts)
