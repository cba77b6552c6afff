"""What needs the models or the data, checked once before any point runs (each a one-line error), so that a bad
input fails in seconds instead of in every point: a hub id neither cached nor reachable, a rank too large or
targets that match no layer (on the model built without weights), each task's data (a pair column not in the file,
a regression label that is not a number, Pearson on a 3-class task), and paths the workers cannot read."""

from __future__ import annotations

import os

from ..adapters import make_adapter
from ..config.grid import adapter_options
from ..config.sweep import SweepConfig
from ..models import check_available, get_entry
from ..tasks import check_task, get_task
from ..tasks.init_task import InitTask


def check_inputs(config: SweepConfig) -> None:
    init_tasks = all_init_tasks(config)
    for model in [*config.models, *config.size_ladder]:
        check_available(get_entry(model))
        for method in config.methods:
            for rank in config.ranks_for(method):
                make_adapter(method, rank, adapter_options(config, method, rank)).check_fits(model)
        for init in init_tasks:  # its head on this model (an lm: task needs a decoder)
            try:
                get_task(init.task).head_for(get_entry(model))
            except ValueError as e:
                raise ValueError(f"init_task {init.label}: {e}") from None
    for task in config.tasks:  # `estimate` reads a task's data too: it traces the task's own batches
        check_task(task, config.data_dir or None, config.task_options)
    for init in init_tasks:
        init.check(config.data_dir or None, config.task_options)


def paths_workers_read(config: SweepConfig) -> list[str]:
    """Absolute paths the points will read: the data folder (for tasks that read data) and model folders."""
    paths = [os.path.abspath(m) for m in config.models if os.path.isdir(m)]
    if config.data_dir and (any(get_task(task).reads_data for task in config.tasks) or all_init_tasks(config)):
        paths.append(os.path.abspath(config.data_dir))
    return paths


def all_init_tasks(config: SweepConfig) -> list[InitTask]:
    """Every init task the sweep names, each once."""
    found = {}
    for method in config.methods:
        for value in config.init_tasks_for(method):
            if value is not None:
                init = InitTask.parse(value)
                found.setdefault(init.label, init)
    return list(found.values())
