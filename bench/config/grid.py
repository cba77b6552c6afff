"""The grid of a sweep: every combination of its axes as a Point, in a stable order."""

from __future__ import annotations

import itertools
import json
import os

from .sweep import Point, SweepConfig


def expand_grid(config: SweepConfig) -> list[Point]:
    """The sweep's points in a stable order: models outermost, seeds innermost. The device is the one asked for
    (auto resolves where the point runs), so a point's id is the same on every executor."""
    points = []
    for model, task, bs, sl, method in itertools.product(config.models, config.tasks, config.batch_sizes,
                                                         config.seq_lens, config.methods):
        for rank, init_task, seed in itertools.product(config.ranks_for(method), config.init_tasks_for(method),
                                                       config.seeds):
            options = config.adapter_options(method, rank)
            if init_task is not None:
                options["init_task"] = init_task
            points.append(Point(
                model=model, task=task, method=method, rank=rank, seed=seed, batch_size=bs, seq_len=sl,
                dtype=config.dtype, device=config.device, warmup_steps=config.warmup_steps,
                timed_steps=config.timed_steps, threads=config.threads,
                data_dir=os.path.abspath(config.data_dir) if config.data_dir else "",  # workers run elsewhere
                adapter_options=_canonical({k: v for k, v in options.items() if k != "r"}),
                task_options=_canonical(config.task_options), train=_canonical(config.train_for(method)),
            ))
    return points


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True)
