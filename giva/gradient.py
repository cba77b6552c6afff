"""The averaged task gradient of the target weights, handed over one layer at a time."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .targets import linear_shape


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_loss(model: nn.Module, batch, loss_fn: Callable | None) -> torch.Tensor:
    """model(**batch) for a dict, model(*batch) for a tuple, else model(batch); loss from loss_fn or the output."""
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


def estimate_gradients(model: nn.Module, targets: dict[str, nn.Module], data, num_batches: int,
                       on_gradient: Callable[[str, torch.Tensor], None], *, loss_fn=None, autocast_dtype=None,
                       cache_dir: str | None = None, train_mode: bool = True, timings: dict | None = None) -> None:
    """Call on_gradient(name, G) once per target, G (out, in) fp32 = mean of dLoss/dW over exactly num_batches.

    `data` is an iterable of batches, or a callable train_step(model) -> loss called
    num_batches times. Only the target weights require grad while this runs (all flags
    are restored after). On the last batch each layer's gradient is handed over from a
    post-accumulate-grad hook as soon as it is complete and freed right after, so with
    one batch no two full target gradients need to be alive at once.

    train_mode: the pass runs with every module in train mode (dropout on, as the GiVA
    authors take the gradient; the draw follows torch's global seed) or, if False, in
    eval mode. Each module's own mode is restored after.
    """
    timings = {} if timings is None else timings
    timings.update(grad_s=0.0, svd_s=0.0)
    device = next(model.parameters()).device
    if cache_dir and _cache_matches(cache_dir, targets, num_batches, train_mode):
        for name in targets:
            start = time.perf_counter()
            on_gradient(name, load_file(os.path.join(cache_dir, f"{name}.safetensors"))["grad"].to(device))
            synchronize(device)
            timings["svd_s"] += time.perf_counter() - start
        return

    weights = {name: layer.weight for name, layer in targets.items()}
    flags = {p: p.requires_grad for p in model.parameters()}
    modes = {module: module.training for module in model.modules()}
    old_grads = {name: w.grad for name, w in weights.items()}
    handed_over: set[str] = set()
    last_batch = False
    hooks = []

    def make_hook(name: str, layer: nn.Module):
        def hook(weight: torch.Tensor) -> None:
            if not last_batch:
                return  # keep accumulating into weight.grad
            start = time.perf_counter()
            G = weight.grad.float() / num_batches
            weight.grad = None
            if not isinstance(layer, nn.Linear):
                G = G.T  # Conv1D stores (in, out)
            if cache_dir:
                save_file({"grad": G.contiguous().cpu()}, os.path.join(cache_dir, f"{name}.safetensors"))
            on_gradient(name, G)
            handed_over.add(name)
            synchronize(device)
            timings["svd_s"] += time.perf_counter() - start
        return hook

    synchronize(device)
    start = time.perf_counter()
    try:
        model.train(train_mode)
        for p in model.parameters():
            p.requires_grad_(False)
        for name, weight in weights.items():
            weight.requires_grad_(True)
            weight.grad = None
            hooks.append(weight.register_post_accumulate_grad_hook(make_hook(name, targets[name])))
        if cache_dir:  # meta.json marks a complete cache: drop the old one before overwriting its files
            os.makedirs(cache_dir, exist_ok=True)
            if os.path.exists(os.path.join(cache_dir, "meta.json")):
                os.remove(os.path.join(cache_dir, "meta.json"))
        batches = None if callable(data) else iter(data)
        for i in range(num_batches):  # exactly num_batches: never pulls one more
            last_batch = i == num_batches - 1
            with torch.enable_grad():  # also when apply_adapter runs under torch.no_grad()
                if batches is None:
                    loss = data(model)
                else:
                    try:
                        batch = next(batches)
                    except StopIteration:
                        raise ValueError(f"data gave only {i} batches but num_grad_batches={num_batches}; "
                                         "pass more batches or lower num_grad_batches") from None
                    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                        loss = batch_loss(model, to_device(batch, device), loss_fn)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                    raise ValueError("the loss must be a scalar tensor that depends on the target layers' weights")
                loss.backward()
        missing = [name for name in targets if name not in handed_over]
        if missing:
            raise ValueError(f"layers {missing[:3]} got no gradient; are they on the path to the loss? drop them from target_modules")
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in flags.items():
            p.requires_grad_(flag)
        for module, training in modes.items():
            module.training = training
        for name, weight in weights.items():
            weight.grad = old_grads[name]
    synchronize(device)
    timings["grad_s"] = time.perf_counter() - start - timings["svd_s"]
    if cache_dir:
        shapes = {name: list(linear_shape(layer)) for name, layer in targets.items()}
        with open(os.path.join(cache_dir, "meta.json"), "w") as f:
            json.dump({"num_batches": num_batches, "train_mode": train_mode, "layers": shapes}, f)


def _cache_matches(cache_dir: str, targets: dict[str, nn.Module], num_batches: int, train_mode: bool) -> bool:
    """A cache is used only when complete and made for the same layers, shapes, batch count and mode."""
    try:
        with open(os.path.join(cache_dir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    shapes = {name: list(linear_shape(layer)) for name, layer in targets.items()}
    return (meta.get("num_batches") == num_batches and meta.get("train_mode") == train_mode
            and meta.get("layers") == shapes)
