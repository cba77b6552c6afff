"""Running a model on training data as giva does: a batch moved to the device and passed to the model, its loss
taken (batch_loss), every weight frozen for a pass (frozen), the device waited for before a clock is read
(synchronize). apply_adapter's gradient pass uses these; a training loop on the same batches can too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn as nn


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA device (a no-op elsewhere): done before each clock read of
    apply_adapter's timings, so that a phase is charged its own kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch, device: torch.device):
    """The batch with every tensor in it (in dicts, lists and tuples, nested) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """No parameter of the model requires grad inside the block; each one's flag is restored after."""
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        model.requires_grad_(False)
        yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)


def batch_loss(model: nn.Module, batch, loss_fn: Callable | None = None) -> torch.Tensor:
    """The loss of one batch as apply_adapter takes it: model(**batch) for a dict, model(*batch) for a tuple or
    list, else model(batch); then loss_fn(output, batch), or the output's own loss (output.loss or output["loss"])."""
    if isinstance(batch, Mapping):
        output = model(**batch)
    elif isinstance(batch, (list, tuple)):
        output = model(*batch)
    else:
        output = model(batch)
    if loss_fn is not None:
        return loss_fn(output, batch)
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, Mapping):
        loss = output.get("loss")
    if loss is None:
        raise ValueError("the model's output has no loss; put labels in the batches or pass loss_fn=(output, batch) -> loss")
    return loss
