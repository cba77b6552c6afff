"""Where a sweep's points run: the [executor] table of a sweep file, or `run`'s executor flags. Plain settings;
the executors themselves are bench/run/executors/, chosen by `kind`."""

from __future__ import annotations

from dataclasses import dataclass, fields

KINDS = ("local", "pool", "ray", "slurm")


@dataclass
class ExecutorSettings:
    """The [executor] table of a sweep file, or the run command's executor flags."""

    kind: str = "local"  # local, pool, ray or slurm
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
