"""Tasks a sweep can name: one registry, name -> Task (the head it needs, the data it reads, its setup and check).

    setup = setup_task("sst2", "minilm", batch_size=16, seq_len=64, seed=0, data_dir="../shared/data")
    batch = next(setup.train_batches); loss = setup.model(**batch).loss; setup.evaluate(setup.model)

- profile: random token batches for timing only (no evaluation); works on random models (profile.py).
- planted: recover a planted rank-k change of the target layers from a teacher; needs no data (planted.py).
- sst2, trec, emotion, agnews, mrpc, stsb, the other GLUE tasks, and csv (a user's own files): text
  classification or regression with a sequence-classification head (text.py, reading through textdata.py).
- lm:<dataset> (and sst2-lm): the same data as a causal-LM prompt ending in a label word, for decoders (lm.py).
- digits, images (a user's image folder or csv / jsonl of paths), cifar100, food101, flowers102, resisc45,
  imagenet: image classification with an image-classification head (image.py, reading through imagedata.py).
- gen:<dataset> (gen:arithmetic, gen:gsm8k, the commonsense sets, gen:csv): a decoder trained on prompt +
  solution, scored by the answers it generates (gen.py, reading through gendata.py; rules in answers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models import ModelEntry, choose_head, get_entry, load_model
from . import gen, image, lm, planted, profile, text
from .base import TaskOptions, TaskSetup
from .gendata import GEN_DATASETS
from .imagedata import IMAGE_DATASETS
from .textdata import DATASETS

TEXT_DATASETS = (*DATASETS, "csv")


@dataclass(frozen=True)
class Task:
    """One task a sweep can name.

    setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir, load) -> TaskSetup, where
        load(entry, head, *, dtype, device, num_labels, seed) makes the model (models.load_model; `estimate` builds
        it under FakeTensorMode and draws the task's own batches)
    check(task, data_dir, opts): the errors its setup would raise about the data, without a model (or None)
    """

    name: str
    setup: Callable
    head: str | None = None  # what it loads on the body: "seq_cls", "causal_lm", "img_cls", or None (the body's own)
    dataset: str | None = None  # the data it reads (a name of textdata.DATASETS, IMAGE_DATASETS, GEN_DATASETS, or
    # "csv"); None: none
    check: Callable | None = None
    # Its setup works on a model without values (FakeTensorMode). Not planted: its teacher computes targets from
    # real weights, so `estimate` traces a planted point as the profile task at its shapes (and says so in the row).
    traceable: bool = True

    @property
    def reads_data(self) -> bool:
        return self.dataset is not None

    def head_for(self, entry: ModelEntry) -> str:
        """The head this task loads on the model, checked against transformers' mappings (models.choose_head)."""
        return choose_head(entry, self.name, self.head)


TASKS: dict[str, Task] = {
    task.name: task for task in [
        Task("profile", profile.setup),
        Task("planted", planted.setup, traceable=False),
        *(Task(d, text.setup, "seq_cls", d, text.check) for d in TEXT_DATASETS),
        Task("sst2-lm", lm.setup, "causal_lm", "sst2", text.check),
        *(Task(f"lm:{d}", lm.setup, "causal_lm", d, text.check) for d in TEXT_DATASETS),
        *(Task(d, image.setup, "img_cls", d, image.check) for d in IMAGE_DATASETS),
        *(Task(f"gen:{d}", gen.setup, "causal_lm", d, gen.check) for d in GEN_DATASETS),
    ]
}
TASK_NAMES = tuple(TASKS)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    return TASKS[name]


def task_head(task: str, entry: ModelEntry) -> str:
    return get_task(task).head_for(entry)


def setup_task(task: str, model_name: str, *, batch_size: int, seq_len: int, seed: int, device="cpu",
               dtype: str = "float32", data_dir: str | None = None, options: dict | None = None,
               load: Callable = load_model) -> TaskSetup:
    """The model with the head `task` needs (made by `load`), its seeded train batches, loss and evaluation."""
    spec = get_task(task)
    return spec.setup(spec, get_entry(model_name), TaskOptions.from_dict(options), batch_size=batch_size,
                      seq_len=seq_len, seed=seed, device=torch.device(device), dtype=dtype, data_dir=data_dir,
                      load=load)


def check_task(task: str, data_dir: str | None, options: dict | None) -> None:
    """A task's data checked without a model (columns, labels, metric); tasks that read no data pass."""
    spec = get_task(task)
    if spec.check is not None:
        spec.check(spec, data_dir, TaskOptions.from_dict(options))


__all__ = ["Task", "TASKS", "TASK_NAMES", "TEXT_DATASETS", "IMAGE_DATASETS", "GEN_DATASETS", "TaskOptions", "TaskSetup", "get_task", "task_head",
           "setup_task", "check_task"]
