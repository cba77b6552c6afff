"""`pool`: several points at once on this machine, one per GPU (pinned with CUDA_VISIBLE_DEVICES) or per core set."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import torch

from ...config.sweep import Point, SweepConfig
from .worker import kill_running_points


@dataclass
class PoolSettings:
    """pool's keys of the [executor] table, and `run`'s flags of the same names."""

    workers: int = field(default=0, metadata={  # 0 = one per visible GPU, or cores // threads on CPU
        "help": "pool: points at once (default one per GPU, or cores // threads)"})
    allow_shared_timing: bool = field(default=False, metadata={  # recorded in every row (executor pool+shared-timing)
        "help": "pool: let workers x threads exceed the cores (timings not comparable; recorded per row)"})

    def __post_init__(self):
        if self.workers < 0:
            raise ValueError(f"workers={self.workers} must be >= 0 (0: one per GPU, or cores // threads)")


class PoolExecutor:
    """Several points at once on this host, each in a fresh process. On GPUs one worker per device, pinned with
    CUDA_VISIBLE_DEVICES; on CPU workers x threads stay within the cores unless shared timing is allowed."""
    summary = "several at once here"
    Settings = PoolSettings
    runs_here = True  # points run on this machine

    def __init__(self, settings: PoolSettings, config: SweepConfig, run_dir: str):
        self.timeout_s = config.point_timeout_s
        workers, device, threads = settings.workers, config.device, config.threads
        allow_shared_timing = settings.allow_shared_timing
        self.name = "pool+shared-timing" if allow_shared_timing else "pool"
        gpus = torch.cuda.device_count() if device != "cpu" else 0
        if device.startswith("cuda") and not gpus:
            raise ValueError(f"device {device!r} asked for but torch sees no CUDA device here; use --device cpu")
        if gpus:
            if re.fullmatch(r"cuda:\d+", device):
                raise ValueError(f"the pool pins one GPU per worker; use device 'cuda' or 'auto', not {device!r}")
            if workers > gpus:
                raise ValueError(f"--workers {workers} is more than the {gpus} visible GPUs: two timed points would "
                                 f"share a device; use --workers {gpus} or fewer")
            self.slot_envs = [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in visible_gpus(gpus)[:workers or gpus]]
            return
        cores = len(os.sched_getaffinity(0))
        per_point = threads or torch.get_num_threads()
        workers = workers or max(1, cores // per_point)
        if workers * per_point > cores and not allow_shared_timing:
            raise ValueError(f"{workers} pool workers x {per_point} threads need {workers * per_point} cores and this "
                             f"machine has {cores}: timings of points that share cores are not comparable; use "
                             f"--workers {max(1, cores // per_point)} or --threads {max(1, cores // workers)}, or "
                             "--allow-shared-timing (recorded in each row)")
        self.slot_envs = [{}] * workers

    def run(self, points: list[Point], worker: Callable) -> Iterator[dict]:
        return run_in_slots(points, worker, self.slot_envs, self.timeout_s)

    def close(self) -> None:
        kill_running_points()


def visible_gpus(count: int) -> list[str]:
    """The `count` GPUs torch sees here, as a child's CUDA_VISIBLE_DEVICES names them: this process's own
    CUDA_VISIBLE_DEVICES entries where it is set (a job or a user pinned it to some GPUs: index 0 in a child is then
    the physical GPU 0, which this process may not see), else 0 .. count-1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [gpu.strip() for gpu in visible.split(",")][:count]  # CUDA stops at the first entry it cannot use


def run_in_slots(points: list[Point], worker: Callable, slot_envs: list[dict], timeout_s: int) -> Iterator[dict]:
    """worker(point, timeout_s, env) for every point, one per slot at a time (a slot's env goes to its points),
    each from a thread of its own; payloads as points finish. Nothing starts before the first payload is asked for."""
    waiting, free, running = list(reversed(points)), list(range(len(slot_envs))), {}
    with ThreadPoolExecutor(len(slot_envs), thread_name_prefix="point") as threads:
        try:
            while waiting or running:
                while waiting and free:
                    slot = free.pop()
                    future = threads.submit(worker, asdict(waiting.pop()), timeout_s, slot_envs[slot])
                    running[future] = slot
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    free.append(running.pop(future))
                    yield future.result()
        finally:
            kill_running_points()  # the driver stopped early: end the points still running
