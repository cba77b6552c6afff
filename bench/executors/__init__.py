"""How a sweep's points get run. The driver (bench.sweep) hands an executor its points and gets payloads back:

    executor = make_executor(settings, config, run_dir)
    for payload in executor.run(points):     # as points finish, in any order: {"row", "log", "curve_csv"}
        ...                                   # the driver alone writes results.csv
    executor.close()                          # cancel what is still running (the driver stops)

local (default, one point at a time), pool (several on this host), ray, slurm (submitit). Every one runs
worker.run_point_payload, which takes the point as plain data and returns plain data: nothing else crosses
the wire, and the point measured is the same whichever executor ran it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

KINDS = ("local", "pool", "ray", "slurm")


@dataclass
class ExecutorSettings:
    """The [executor] table of a sweep file, or the run command's executor flags."""

    kind: str = "local"  # local, pool, ray or slurm ("estimate" for `run_bench.py estimate`, not a user's choice)
    workers: int = 0  # pool: points at once; 0 = one per visible GPU, or cores // threads on CPU
    allow_shared_timing: bool = False  # pool: let workers x threads exceed the cores (recorded in every row)
    ray_address: str = ""  # ray: host:port of a running cluster; "" = $RAY_ADDRESS, else a local cluster for the run
    ray_num_cpus: int = 0  # ray: CPUs of the local cluster; 0 = all cores
    slurm_cluster: str = "slurm"  # slurm: "slurm", or "local" to try it here (submitit's local jobs)
    slurm_partition: str = ""  # slurm: partition; "" = the cluster's default
    slurm_gpus_per_task: int = -1  # slurm: GPUs per point; -1 = 1 when device is cuda, else 0
    slurm_time_min: int = 0  # slurm: job time limit in minutes; 0 = point_timeout_s plus 5 minutes
    slurm_array_parallelism: int = 0  # slurm: jobs running at once; 0 = 256 on SLURM, 1 for local jobs
    no_wait: bool = False  # slurm: submit and return; gather rows later with `run_bench.py collect RUN_DIR`

    @classmethod
    def from_dict(cls, values: dict) -> "ExecutorSettings":
        known = {f.name: f for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown executor setting {key!r}; known: {', '.join(known)}")
            default = known[key].default
            if type(value) is not type(default):
                raise ValueError(f"executor setting {key!r} must be a {type(default).__name__}, got {value!r}")
        settings = cls(**values)
        if settings.kind not in KINDS:
            raise ValueError(f"unknown executor {settings.kind!r}; choose from {', '.join(KINDS)}")
        if settings.no_wait and settings.kind != "slurm":
            raise ValueError("--no-wait needs --executor slurm (the other executors run with the driver)")
        if settings.workers < 0 or settings.ray_num_cpus < 0 or settings.slurm_array_parallelism < 0:
            raise ValueError("workers, ray_num_cpus and slurm_array_parallelism must be >= 0")
        return settings


def make_executor(settings: ExecutorSettings, config, run_dir: str):
    """The executor the settings name, after checking what its workers need; bad input raises ValueError."""
    if settings.kind == "estimate":  # `run_bench.py estimate`: shapes only, in this process
        from .local import EstimateExecutor

        return EstimateExecutor()
    if settings.kind != "local" and not config.isolate:
        raise ValueError("--in-process runs points in the driver; it works with the local executor only")
    paths = paths_workers_read(config)
    unreadable = [p for p in paths if not os.access(p, os.R_OK)]
    if unreadable and settings.kind != "ray":  # on Ray the workers' own view is checked
        raise ValueError(f"cannot read {', '.join(unreadable)}; fix the path (data_dir, model) before running")
    timeout_s = config.point_timeout_s
    if settings.kind == "local":
        from .local import LocalExecutor

        return LocalExecutor(timeout_s, config.isolate)
    if settings.kind == "pool":
        from .local import PoolExecutor

        return PoolExecutor(timeout_s, settings.workers, config.device, config.threads, settings.allow_shared_timing)
    if settings.kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(timeout_s, settings.ray_address, settings.ray_num_cpus, config.device, config.threads,
                           paths)
    from .slurm_executor import SlurmExecutor

    gpus = settings.slurm_gpus_per_task if settings.slurm_gpus_per_task >= 0 else int(config.device.startswith("cuda"))
    return SlurmExecutor(run_dir, timeout_s, settings.slurm_cluster, settings.slurm_partition, gpus,
                         settings.slurm_time_min, settings.slurm_array_parallelism, config.threads, settings.no_wait)


def paths_workers_read(config) -> list[str]:
    """Absolute paths the points will read: the data folder (for tasks that read files) and model folders."""
    paths = [os.path.abspath(m) for m in config.models if os.path.isdir(m)]
    if config.data_dir and any(task not in ("profile", "planted") for task in config.tasks):
        paths.append(os.path.abspath(config.data_dir))
    return paths
