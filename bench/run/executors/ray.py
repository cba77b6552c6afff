"""`ray`: each point a Ray task on an existing cluster (--ray-address or RAY_ADDRESS) or on a local one started
for the run. The task runs the worker on its node (a fresh process per point) and returns plain data; the driver
writes the rows. Stopping the driver cancels the tasks still out."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from ...config.sweep import Point, SweepConfig
from ..checks import paths_workers_read
from .worker import REPO_ROOT, failed_payload


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def check_reachable(address: str) -> None:
    """A GCS address host:port must accept a connection within 5 s (ray.init would retry for a minute)."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise ValueError(f"no Ray cluster answers at {address!r} ({reason}); start one with `ray start --head` "
                         "and pass its address, or leave --ray-address empty for a local cluster") from None


@dataclass
class RaySettings:
    """ray's keys of the [executor] table, and `run`'s flags of the same names."""

    ray_address: str = field(default="", metadata={  # "" = $RAY_ADDRESS, else a local cluster for the run
        "help": "ray: host:port of a running cluster (default $RAY_ADDRESS, else a local cluster for the run)"})
    ray_num_cpus: int = field(default=0, metadata={"help": "ray: CPUs of the local cluster (default all)"})

    def __post_init__(self):
        if self.ray_num_cpus < 0:
            raise ValueError(f"ray_num_cpus={self.ray_num_cpus} must be >= 0 (0: all cores)")


class RayExecutor:
    name = "ray"
    summary = "Ray tasks"
    Settings = RaySettings
    runs_here = False  # points run on other machines
    checks_own_paths = True  # the paths are checked as the cluster's workers see them, not as this machine does

    def __init__(self, settings: RaySettings, config: SweepConfig, run_dir: str):
        timeout_s, address, num_cpus = config.point_timeout_s, settings.ray_address, settings.ray_num_cpus
        device, threads, check_paths = config.device, config.threads, paths_workers_read(config)
        self.ray = ray = import_ray()
        address = address or os.environ.get("RAY_ADDRESS", "")
        if address and not ray.is_initialized():
            check_reachable(address)
        self.timeout_s, self.threads, self.device = timeout_s, threads, device
        self.owns_session = not ray.is_initialized()  # else: called from inside a Ray driver, use its session
        if self.owns_session and not address:  # a local cluster: its workers inherit this environment
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
            ray.init(address="local", num_cpus=num_cpus or None, include_dashboard=False, log_to_driver=False,
                     object_store_memory=100 * 2**20)
        elif self.owns_session:
            ray.init(address=address, log_to_driver=False)
        self.gpus = ray.cluster_resources().get("GPU", 0)
        self.outstanding: list = []
        missing = ray.get(ray.remote(num_cpus=0)(_unreadable).remote(check_paths)) if check_paths else []
        if missing:
            self.close()
            raise ValueError(f"Ray workers cannot read {', '.join(missing)}; put them where every node sees them")
        if device.startswith("cuda") and not self.gpus:
            self.close()
            raise ValueError(f"device {device!r} asked for but the Ray cluster has no GPU; use --device cpu or auto")

    def run(self, points: list[Point], worker: Callable) -> Iterator[dict]:
        ray = self.ray
        gpu = self.device.startswith("cuda") or (self.device == "auto" and self.gpus > 0)
        task = ray.remote(worker).options(num_cpus=max(1, self.threads), num_gpus=1 if gpu else 0,
                                                     max_retries=0)
        by_ref = {task.remote(asdict(p), self.timeout_s): p for p in points}
        self.outstanding = list(by_ref)
        while self.outstanding:
            done, self.outstanding = ray.wait(self.outstanding, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as e:  # the worker died under the task (node lost, OOM killer)
                reason = " ".join(str(e).split())[:300]
                yield failed_payload(asdict(by_ref[done[0]]), f"Ray task failed: {reason}")

    def close(self) -> None:
        ray = self.ray
        for ref in self.outstanding:
            ray.cancel(ref, force=True)
        self.outstanding = []
        if self.owns_session and ray.is_initialized():
            ray.shutdown()


def _unreadable(paths: list[str]) -> list[str]:
    """On a worker: the paths it cannot read."""
    return [p for p in paths if not os.access(p, os.R_OK)]
