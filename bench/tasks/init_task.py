"""Another task's data for a data-driven init: GiVA's gradient bases taken on task A, training on task B.

    init = InitTask.parse("trec")                      # or {"task": "agnews", "max_train_examples": 2000}
    source = borrow_init_data(init, model, "minilm", num_batches=1, batch_size=16, seq_len=64, seed=0,
                              data_dir="../shared/data", task_options={...the sweep's...})
    model = adapter.apply(model, source.train_step(), None)  # the init reads task A through A's own head

The init task is set up through the registry like a point's own task: its data, its seeded batch order, and a
new head for its labels, seeded as the point's head is. That model's body is then replaced by the point's
model's body, so the gradient pass runs the point's target layers under the init task's head and loss, which is
what a point of the init task would compute, on the model that then trains on the point's task. An init task
equal to the point's own (same name and options) draws the same batches through an identical head, so it gives
the same bases as no init_task.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from giva import batch_loss

from . import TaskOptions, check_task, get_task, setup_task


@dataclass(frozen=True)
class InitTask:
    """A task named by a method's init_task option, with its own task options over the sweep's."""

    task: str
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, value) -> "InitTask":
        """A task name, or a table {task = NAME, <task options>}; an unknown task or option is a one-line error."""
        if isinstance(value, str):
            task, options = value, {}
        elif isinstance(value, dict) and isinstance(value.get("task"), str):
            task, options = value["task"], {k: v for k, v in value.items() if k != "task"}
        else:
            raise ValueError(f"init_task={value!r} must be a task name or a table {{task = NAME, <task options>}}, "
                             "e.g. init_task = \"trec\" or {task = \"agnews\", max_train_examples = 2000}")
        if not get_task(task).reads_data:
            raise ValueError(f"init_task {task!r} reads no labelled data; name a data task (sst2, trec, agnews, ...)")
        TaskOptions.from_dict(options)  # unknown names, bad values
        return cls(task, options)

    @property
    def label(self) -> str:
        """How rows and reports name it: trec, or agnews(max_train_examples=2000)."""
        if not self.options:
            return self.task
        return f"{self.task}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.options.items())) + ")"

    def task_options(self, sweep_options: dict) -> dict:
        """The sweep's task options, then the init task's own."""
        return {**sweep_options, **self.options}

    def check(self, data_dir: str | None, sweep_options: dict) -> None:
        """The init task's data read and checked without a model (files, columns, labels, metric)."""
        try:
            check_task(self.task, data_dir, self.task_options(sweep_options))
        except (ValueError, FileNotFoundError) as e:
            raise type(e)(f"init_task {self.label}: {e}") from None


@dataclass
class InitData:
    """The init task's first batches and its head on the point's body: what a data-driven init reads."""

    model: nn.Module  # the init task's head on the point's model's body (shared, not copied)
    batches: list[dict]
    loss_fn: Callable | None

    def train_step(self) -> Callable[[nn.Module], torch.Tensor]:
        """A train_step(model) -> loss over the batches in order, one per call (GiVA's data: one call per gradient
        batch); a fresh one for each init."""
        remaining = iter(self.batches)

        def step(model: nn.Module) -> torch.Tensor:
            self.model.train(model.training)  # the init head's dropout follows the pass's mode, as the body's does
            return batch_loss(self.model, next(remaining), self.loss_fn)

        return step


def borrow_init_data(init: InitTask, model: nn.Module, model_name: str, *, num_batches: int, batch_size: int,
                     seq_len: int, seed: int, device="cpu", dtype: str = "float32", data_dir: str | None = None,
                     task_options: dict | None = None) -> InitData:
    """The init task set up for `model_name` (untimed: data, tokenizer, a model with its head), its body swapped
    for `model`'s, and its first `num_batches` batches."""
    setup = setup_task(init.task, model_name, batch_size=batch_size, seq_len=seq_len, seed=seed, device=device,
                       dtype=dtype, data_dir=data_dir, options=init.task_options(task_options or {}))
    borrowed = setup.model
    prefix = borrowed.base_model_prefix
    if type(getattr(borrowed, prefix, None)) is not type(model.base_model):
        raise ValueError(f"init_task {init.label}: its model's body ({type(borrowed.base_model).__name__}) is not the "
                         f"point's ({type(model.base_model).__name__}); give an init task whose head fits this model")
    setattr(borrowed, prefix, model.base_model)  # its own copy of the body is dropped here
    return InitData(borrowed, [next(setup.train_batches) for _ in range(num_batches)], setup.loss_fn)
