"""`local`: one point at a time on this machine, each by the worker (a fresh process per point, or this process
with --in-process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from ...config.sweep import Point, SweepConfig
from .worker import kill_running_points


@dataclass
class LocalSettings:
    """local has no settings of its own."""


class LocalExecutor:
    name = "local"
    summary = "one point at a time here"
    Settings = LocalSettings
    runs_here = True  # points run on this machine

    def __init__(self, settings: LocalSettings, config: SweepConfig, run_dir: str):
        self.timeout_s = config.point_timeout_s

    def run(self, points: list[Point], worker: Callable) -> Iterator[dict]:
        for point in points:
            yield worker(asdict(point), self.timeout_s)

    def close(self) -> None:
        kill_running_points()
