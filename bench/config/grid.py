"""The grid of a sweep: every combination of its axes as a Point, in a stable order."""

from __future__ import annotations

import itertools
import json
import os

from .. import adapters
from .sweep import Point, SweepConfig


def expand_grid(config: SweepConfig) -> list[Point]:
    """The sweep's points in a stable order: models outermost, seeds innermost; then the size ladder's (estimated),
    each method at its first rank. The device is the one asked for (auto resolves where the point runs), so a
    point's id is the same on every executor. Relative paths are resolved from this process's working directory, by
    the checks here and by every point (Point.work_dir)."""
    points = []
    for model, task, bs, sl, method in itertools.product(config.models, config.tasks, config.batch_sizes,
                                                         config.seq_lens, config.methods):
        for rank, init_task, seed in itertools.product(config.ranks_for(method), config.init_tasks_for(method),
                                                       config.seeds):
            points.append(_point(config, model, task, method, rank, seed, bs, sl, init_task=init_task))
    for model, bs, sl, method in itertools.product(config.size_ladder, config.batch_sizes, config.seq_lens,
                                                   config.methods):
        points.append(_point(config, model, "profile", method, config.ranks_for(method)[0], config.seeds[0], bs, sl,
                             estimated=True))
    return points


def _point(config: SweepConfig, model: str, task: str, method: str, rank: int, seed: int, batch_size: int,
           seq_len: int, init_task=None, estimated: bool = False) -> Point:
    options = adapter_options(config, method, rank)
    if init_task is not None:  # one of GiVA's init_task axis (a task name or table)
        options["init_task"] = init_task
    return Point(
        model=model, task=task, method=method, rank=rank, seed=seed, batch_size=batch_size, seq_len=seq_len,
        dtype=config.dtype, device=config.device, warmup_steps=config.warmup_steps, timed_steps=config.timed_steps,
        threads=config.threads, data_dir=os.path.abspath(config.data_dir) if config.data_dir else "",  # run elsewhere
        adapter_options=_canonical({k: v for k, v in options.items() if k != "r"}),
        task_options=_canonical(config.task_options), train=_canonical(config.train_for(method)),
        work_dir=os.getcwd(), malloc_mmap_threshold=config.malloc_mmap_threshold if config.isolate else 0,
        estimated=estimated, assume_steps=config.assume_steps)


def adapter_options(config: SweepConfig, method: str, rank: int) -> dict:
    """The method's options at `rank` (the rank and the sweep's own options), with the harness's defaults."""
    return adapters.harness_options(method, rank, config.own_options(method))


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True)
