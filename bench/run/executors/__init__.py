"""How a sweep's points get run. The driver (bench/run/sweep.py) hands an executor its points and a worker, and gets
payloads back:

    executor = make_executor(settings, config, run_dir)
    for payload in executor.run(points, worker):  # as points finish, in any order: {"row", "log", "curve_csv"}
        ...                                       # the driver alone writes results.csv
    executor.close()                              # cancel what is still running (the driver stops)

An executor knows where and how many points run at once, never what a point is: the worker does that, taking the
point as plain data and returning plain data (worker.run_point_payload: a process of its own per point, which runs
it, or traces it if it is an estimated one; run_point_here: in this process). An executor that leaves jobs behind
(slurm with --no-wait, or a killed driver) also answers pending_jobs(run_dir), collect_jobs(run_dir) and takes_over(settings, run_dir): whether a
rerun with those settings waits for the jobs instead of submitting their points again.
"""

from __future__ import annotations

import os

from ...config.executor import KINDS, ExecutorSettings
from ...config.sweep import SweepConfig
from ..checks import paths_workers_read
from .local import LocalExecutor
from .pool import PoolExecutor
from .ray import RayExecutor
from .slurm import SlurmExecutor

EXECUTORS = {"local": LocalExecutor, "pool": PoolExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}
assert tuple(EXECUTORS) == KINDS, "bench/config/executor.py's KINDS names the executors"


def make_executor(settings: ExecutorSettings, config: SweepConfig, run_dir: str, check_paths: bool = True):
    """The executor the settings name, after checking that its workers can read the data and model folders
    (check_paths); bad input raises ValueError."""
    if settings.kind != "local" and not config.isolate:
        raise ValueError("--in-process runs points in the driver; it works with the local executor only")
    executor = EXECUTORS[settings.kind]
    if check_paths and not getattr(executor, "checks_own_paths", False):
        unreadable = [p for p in paths_workers_read(config) if not os.access(p, os.R_OK)]
        if unreadable:
            raise ValueError(f"cannot read {', '.join(unreadable)}; fix the path (data_dir, model) before running")
    return executor(settings, config, run_dir)


def leaving_jobs() -> dict:
    """The executors that can leave jobs behind a driver (--no-wait), by name."""
    return {name: executor for name, executor in EXECUTORS.items() if hasattr(executor, "pending_jobs")}


def pending_jobs(run_dir: str, settings: ExecutorSettings | None = None) -> int:
    """Points of the run directory submitted as jobs and not yet gathered, by any executor; with settings, only
    those that the executor they name cannot take over."""
    return sum(executor.pending_jobs(run_dir) for name, executor in leaving_jobs().items()
               if settings is None or name != settings.kind or not executor.takes_over(settings, run_dir))


def collect(run_dir: str) -> tuple[list[dict], int, str]:
    """(payloads of the jobs that ended, jobs still running, the executor's name) of a run's submitted jobs."""
    for name, executor in leaving_jobs().items():
        if executor.pending_jobs(run_dir):
            return *executor.collect_jobs(run_dir), name
    return [], 0, ""
