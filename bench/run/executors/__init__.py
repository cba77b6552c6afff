"""How a sweep's points get run. The driver (bench/run/sweep.py) hands an executor its points and a worker, and gets
payloads back:

    kind, settings = executor_settings(config.executor)  # the [executor] table: its kind and that executor's settings
    executor = make_executor(kind, settings, config, run_dir)
    for payload in executor.run(points, worker):  # as points finish, in any order: {"row", "log", "curve_csv"}
        ...                                       # the driver alone writes results.csv
    executor.close()                              # cancel what is still running (the driver stops)

Each executor's module holds its class (name, summary: its line in --help, runs_here) and its Settings dataclass:
the keys of the [executor] table it reads, each field's help metadata its flag's --help (bench/cli.py).
An executor knows where and how many points run at once, never what a point is: the worker does that, taking the
point as plain data and returning plain data (worker.run_point_payload: a process of its own per point, which runs
it, or traces it if it is an estimated one; run_point_here: in this process). An executor that leaves jobs behind
(slurm with --no-wait, or a killed driver) also answers pending_jobs(run_dir), collect_jobs(run_dir) and takes_over(settings, run_dir): whether a
rerun with those settings waits for the jobs instead of submitting their points again.
"""

from __future__ import annotations

import os
from dataclasses import fields

from ...config.flags import flag_name
from ...config.sweep import SweepConfig
from ..checks import paths_workers_read
from .local import LocalExecutor
from .pool import PoolExecutor
from .ray import RayExecutor
from .slurm import SlurmExecutor

# The executors by the name a sweep's [executor] kind (or --executor) gives; each has its Settings dataclass beside it.
EXECUTORS = {"local": LocalExecutor, "pool": PoolExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}
DEFAULT_EXECUTOR = "local"


def executor_settings(table: dict) -> tuple[str, object]:
    """(kind, that executor's Settings) of an [executor] table. Every executor's keys are known and their types and
    values checked whichever runs, so that one sweep file works with any --executor; a key whose metadata says
    refused_elsewhere is an error with another executor."""
    known = {f.name: f for executor in EXECUTORS.values() for f in fields(executor.Settings)}
    for key, value in table.items():
        if key != "kind" and key not in known:
            raise ValueError(f"unknown executor setting {key!r}; known: {', '.join(['kind', *known])}")
        default = DEFAULT_EXECUTOR if key == "kind" else known[key].default
        if type(value) is not type(default):
            raise ValueError(f"executor setting {key!r} must be a {type(default).__name__}, got {value!r}")
    kind = table.get("kind", DEFAULT_EXECUTOR)
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    chosen = None
    for name, executor in EXECUTORS.items():
        own = {f.name: f for f in fields(executor.Settings)}
        settings = executor.Settings(**{k: v for k, v in table.items() if k in own})  # bad values fail here
        for f in own.values():
            if name != kind and f.metadata.get("refused_elsewhere") and getattr(settings, f.name) != f.default:
                raise ValueError(f"{flag_name(f)} needs --executor {name} ({f.metadata['refused_elsewhere']})")
        chosen = settings if name == kind else chosen
    return kind, chosen


def make_executor(kind: str, settings, config: SweepConfig, run_dir: str, check_paths: bool = True):
    """The executor named `kind` with its settings, after checking that its workers can read the data and model
    folders (check_paths); bad input raises ValueError."""
    if kind != "local" and not config.isolate:
        raise ValueError("--in-process runs points in the driver; it works with the local executor only")
    executor = EXECUTORS[kind]
    if check_paths and not getattr(executor, "checks_own_paths", False):
        unreadable = [p for p in paths_workers_read(config) if not os.access(p, os.R_OK)]
        if unreadable:
            raise ValueError(f"cannot read {', '.join(unreadable)}; fix the path (data_dir, model) before running")
    return executor(settings, config, run_dir)


def leaving_jobs() -> dict:
    """The executors that can leave jobs behind a driver (--no-wait), by name."""
    return {name: executor for name, executor in EXECUTORS.items() if hasattr(executor, "pending_jobs")}


def pending_jobs(run_dir: str, kind: str | None = None, settings=None) -> int:
    """Points of the run directory submitted as jobs and not yet gathered, by any executor; with an executor's kind
    and settings, only those that it cannot take over."""
    return sum(executor.pending_jobs(run_dir) for name, executor in leaving_jobs().items()
               if kind is None or name != kind or not executor.takes_over(settings, run_dir))


def collect(run_dir: str) -> tuple[list[dict], int, str]:
    """(payloads of the jobs that ended, jobs still running, the executor's name) of a run's submitted jobs."""
    for name, executor in leaving_jobs().items():
        if executor.pending_jobs(run_dir):
            return *executor.collect_jobs(run_dir), name
    return [], 0, ""
