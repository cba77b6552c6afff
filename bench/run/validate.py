"""A sweep's names and options checked against the registries (models, methods, tasks, dtypes, executors), without
weights or data, so that a bad name fails in seconds and offline. The driver calls it first (run_sweep), the CLI
before it prints the sweep; what needs the models or the data comes next (checks.py)."""

from __future__ import annotations

from .. import adapters
from ..config.grid import adapter_options
from ..config.sweep import SweepConfig
from ..models import DTYPES, get_entry
from ..tasks import TaskOptions, get_task
from ..tasks.init_task import InitTask
from .executors import executor_settings


def check_config(config: SweepConfig) -> None:
    for model in [*config.models, *config.size_ladder]:
        get_entry(model)
    for method in [*config.methods, *config.method_options]:
        adapters.check_method(method)
    executor_settings(config.executor)  # unknown keys, bad values
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; choose from {', '.join(DTYPES)}")
    for method in config.methods:  # rank <= 0, unknown options, bad values
        for rank in config.ranks_for(method):
            adapters.make_adapter(method, rank, adapter_options(config, method, rank))
    for task in config.tasks:
        get_task(task)
    for method in config.methods:
        check_init_tasks(config, method)
    TaskOptions.from_dict(config.task_options)  # unknown names, bad values (label_type, metric, padding, ...)
    for method in config.methods:
        if config.train_for(method).get("lr") is None:
            adapters.default_lr(method)  # a PEFT method we have no default for


def check_init_tasks(config: SweepConfig, method: str) -> None:
    """init_task names known tasks with data and known options, on a method whose init reads training data
    through a train step (GiVA's gradient)."""
    if config.init_tasks_for(method) == [None]:
        return
    where = f"method_options.{method}.init_task"
    for value in config.init_tasks_for(method):
        try:
            InitTask.parse(value)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    for rank in config.ranks_for(method):
        adapter = adapters.make_adapter(method, rank, adapter_options(config, method, rank))
        if not adapter.init_batches:
            raise ValueError(f"{where}: {method}'s init reads no training data, so it has no init task; set "
                             "init_task on a method with a data-driven init (giva)")
        if not adapter.accepts_train_step:
            raise ValueError(f"{where}: {method} runs its init batches through the model's own head, which has "
                             "the point task's labels; init_task works with our methods (giva)")
