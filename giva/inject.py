"""Put adapters into a model and take them out: apply, merge, unmerge, unload, enable."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .config import AdapterConfig
from .layer import AdapterLayer
from .methods import spec_for
from .running import synchronize
from .targets import find_targets, linear_shape, name_matches

STATE_ATTR = "giva_adapter"


@dataclass
class AdapterState:
    """What apply_adapter leaves on the model (as model.giva_adapter)."""

    config: AdapterConfig
    layers: dict[str, AdapterLayer]
    requires_grad_before: dict[str, bool]  # parameter name -> flag, restored by unload
    timings: dict = field(default_factory=dict)  # init phases in seconds: grad_s, svd_s, inject_s

    @property
    def shared(self) -> dict[str, torch.Tensor]:
        """Frozen tensors all layers share (VeRA's projections), by checkpoint name; saved once."""
        first = next(iter(self.layers.values()))
        return {name: getattr(first, name) for name in first.shared_names}


def adapter_state(model: nn.Module) -> AdapterState:
    state = getattr(model, STATE_ATTR, None)
    if state is None:
        raise ValueError("the model has no adapter; call apply_adapter(model, config) or load_adapter first")
    return state


def apply_adapter(model: nn.Module, config: AdapterConfig, data=None, loss_fn=None, *, saved=None) -> nn.Module:
    """Adapt `model` in place and return it; only adapter parameters (and config.trainable_modules) stay trainable.

    For GiVA, `data` is an iterable of batches (passed as model(**batch)) or a
    train_step(model) -> loss callable. Everything that can fail runs before the
    model is touched, so a failed apply leaves it unchanged.
    """
    if hasattr(model, STATE_ATTR):
        raise ValueError("the model already has an adapter; call unload_adapter(model) before applying another")
    build_layers = spec_for(config).build_layers
    targets = find_targets(model, config.target_modules, exclude=config.trainable_modules)
    ranks = {name: config.check_layer_rank(name, *linear_shape(layer)) for name, layer in targets.items()}
    kept_trainable = [n for n, _ in model.named_modules() if n and name_matches(n, config.trainable_modules)]
    if config.trainable_modules and not kept_trainable:
        raise ValueError(f"trainable_modules={config.trainable_modules!r} matched no module of the model")

    timings = {}
    device = next(model.parameters()).device
    synchronize(device)
    start = time.perf_counter()
    layers = build_layers(config, targets, ranks=ranks, model=model, data=data, loss_fn=loss_fn,
                          saved=saved, timings=timings)
    requires_grad_before = {n: p.requires_grad for n, p in model.named_parameters()}
    for name, layer in layers.items():
        parent_name, _, child = name.rpartition(".")
        layer.train(layer.base_layer.training)  # the mode of the layer it replaces (eval stays eval)
        setattr(model.get_submodule(parent_name), child, layer)
    for param_name, param in model.named_parameters():
        module_name = param_name.rpartition(".")[0]
        owner = model.get_submodule(module_name)
        in_kept = any(param_name.startswith(k + ".") for k in kept_trainable)
        param.requires_grad_(in_kept or (isinstance(owner, AdapterLayer) and param_name.rpartition(".")[2] in owner.trainable_names))
    synchronize(device)
    # Injection: making the adapter layers (LoRA's matrices, GiVA's bases copied in) and swapping them in;
    # GiVA's gradient and SVD, timed inside build_layers, are phases of their own.
    timings["inject_s"] = time.perf_counter() - start - timings.get("grad_s", 0.0) - timings.get("svd_s", 0.0)
    setattr(model, STATE_ATTR, AdapterState(config, layers, requires_grad_before, timings))
    return model


def merge_adapter(model: nn.Module) -> None:
    """Fold every delta into its base weight (outputs unchanged, no adapter cost per step)."""
    for layer in adapter_state(model).layers.values():
        layer.merge()


def unmerge_adapter(model: nn.Module) -> None:
    for layer in adapter_state(model).layers.values():
        layer.unmerge()


def unload_adapter(model: nn.Module, merge: bool = False) -> nn.Module:
    """Put the base layers back (merged with the delta if merge=True) and restore requires_grad flags."""
    state = adapter_state(model)
    for name, layer in state.layers.items():
        layer.merge() if merge else layer.unmerge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer.base_layer)
    for param_name, param in model.named_parameters():
        param.requires_grad_(state.requires_grad_before.get(param_name, param.requires_grad))
    delattr(model, STATE_ATTR)
    return model


def set_adapter_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every adapter off (exact base outputs, unless merged) or back on."""
    state = adapter_state(model)
    if not enabled and any(layer.merged for layer in state.layers.values()):
        raise ValueError("the adapter is merged into the base weights; call unmerge_adapter(model) before disabling it")
    for layer in state.layers.values():
        layer.enabled = enabled


@contextmanager
def adapter_disabled(model: nn.Module):
    """with adapter_disabled(model): ...  runs the base model."""
    set_adapter_enabled(model, False)
    try:
        yield model
    finally:
        set_adapter_enabled(model, True)
