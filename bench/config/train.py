"""Training settings of accuracy points (bench/run/train.py trains with them); a sweep's [train] table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from giva.config import check_field_types

# A freshly initialised classification head, whatever the adapter's lr: at 1e-3
# GiVA r8 stayed at chance after 60 steps on SST-2, at 1e-2 it reached 68.5%.
DEFAULT_HEAD_LR = 1e-2
SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TrainSettings:
    steps: int = 300  # MiniLM SST-2 with LoRA r=8 gets from ~50% to ~85% in 300 steps of batch 16
    lr: float | None = None  # None: the method's default (bench.adapters.default_lr)
    head_lr: float | None = None  # lr of trainable_modules (a classification head); None: DEFAULT_HEAD_LR
    weight_decay: float = 0.0  # the adapters are tiny; the GiVA authors used 0.01 on GLUE, 0.1 on images
    warmup_ratio: float = 0.06  # share of steps with a linear warmup, as the GiVA paper's GLUE runs
    schedule: str = "linear"  # linear | cosine | constant, after warmup
    max_grad_norm: float = 1.0  # clip the global norm; 0 turns clipping off
    eval_every: int = 0  # 0: evaluate only before and after training
    # > 0: train this many passes over the task's train split instead of `steps` (steps = ceil(epochs x its full
    # batches)), as the GiVA authors count their image runs; tasks without a finite split (profile, planted) refuse
    epochs: float = 0.0

    def __post_init__(self):
        check_field_types(self, "train setting")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps!r} must be a positive integer")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio={self.warmup_ratio!r} must be in [0, 1)")
        for name in ("lr", "head_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value!r} must be positive (or None for the default)")
        if self.eval_every < 0 or self.max_grad_norm < 0 or self.weight_decay < 0 or self.epochs < 0:
            raise ValueError("eval_every, max_grad_norm, weight_decay and epochs must be >= 0")

    def resolved(self, steps_per_epoch: int) -> "TrainSettings":
        """These settings with `epochs` turned into steps for a train split of `steps_per_epoch` full batches."""
        if not self.epochs:
            return self
        if steps_per_epoch < 1:
            raise ValueError(f"train epochs={self.epochs:g} needs a task with a train split of at least one batch; "
                             "this one has none (profile, planted): set steps instead")
        return dataclasses.replace(self, steps=math.ceil(self.epochs * steps_per_epoch), epochs=0.0)
