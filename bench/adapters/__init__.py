"""The adapter methods a sweep can name, behind one protocol: ours (giva's registry: lora, vera, giva, ...) and
PEFT's (`peft:<name>`, peft.py). Whether a method is ours or PEFT's is decided here, once; nothing else asks.

    adapter = make_adapter("giva", rank=8, options={"basis": "Vr"}, seed=0, trainable_modules=["classifier"])
    model = adapter.apply(model, batches, loss_fn)       # the point times this
    adapter.stats(model); adapter.save(model, path); model = adapter.unload(model)
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol

import torch.nn as nn

from . import ours, peft


class Adapter(Protocol):
    """A method configured at a rank: what a point applies, measures, saves and takes out again."""

    method: str  # as the sweep names it: "giva", "peft:pissa"
    init_batches: int  # training batches its init reads (GiVA's gradient batches, EVA's passes); 0: none
    seed: int | str  # the seed of its random parts; "" where it has none of its own
    # apply() also takes, instead of the batches, a train_step(model) -> loss called once per init batch: how an
    # init reads another task's batches through that task's head (the point's init_task)
    accepts_train_step: bool

    def apply(self, model: nn.Module, data, loss_fn=None) -> nn.Module: ...  # data: batches, or a train_step
    def unload(self, model: nn.Module) -> nn.Module: ...
    def stats(self, model: nn.Module) -> dict: ...  # giva.adapter_stats' keys
    def save(self, model: nn.Module, path: str) -> str: ...  # the weights file written
    def check_fits(self, model_name: str) -> None: ...  # on the model built without weights; raises with the fix


def family(method: str) -> ModuleType:
    """The module that knows the method: peft.py for `peft:<name>` (PEFT itself is imported only then: an extra),
    else ours.py."""
    if not isinstance(method, str):
        raise ValueError(f"a method is a name, got {method!r}")
    return peft if method.startswith(peft.PREFIX) else ours


def check_method(method: str) -> None:
    """A one-line error where the method is not known: not in giva's registry, nor a PEFT method."""
    family(method).check_method(method)


def harness_options(method: str, rank: int, options: dict) -> dict:
    """The sweep's options of a method at a rank, with the harness's defaults where it sets none (LoRA: alpha = 2r)."""
    return family(method).harness_options(method, rank, options)


def make_adapter(method: str, rank: int, options: dict, *, seed: int = 0, trainable_modules=()) -> Adapter:
    """The method configured at `rank` with `options` (bad options fail here); `seed` seeds its random parts unless
    the options fix them."""
    return family(method).make_adapter(method, rank, options, seed, trainable_modules)


def default_lr(method: str) -> float:
    """The adapter learning rate when a sweep sets none (ours: ours.HARNESS_DEFAULTS; PEFT's: its counterpart's)."""
    return family(method).default_lr(method)


def why_not_traceable(method: str) -> str:
    """"" where `estimate` can trace the method under FakeTensorMode, else why it cannot."""
    return family(method).WHY_NOT_TRACEABLE


def describe(method: str) -> dict:
    """{display_name, same_as, init} for meta.json, so that the report needs no method code."""
    return family(method).describe(method)


def method_names() -> tuple[list[str], list[str] | None]:
    """Our methods, and PEFT's (None where PEFT is not installed)."""
    try:
        return ours.names(), peft.names()
    except ImportError:
        return ours.names(), None
