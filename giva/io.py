"""Adapter checkpoints: a folder with adapter.safetensors and adapter_config.json, or PEFT's layout (the names and
configs of which peft_format.py converts; the files are written and read here)."""

from __future__ import annotations

import json
import os

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .inject import STATE_ATTR, adapter_state, apply_adapter, unload_adapter
from .methods import make_config, spec_for
from .peft_format import (PEFT_WEIGHTS_FILE, checkpoint_tensors, config_from_peft, is_peft_config, peft_config,
                          peft_tensors)
from .targets import is_linear, linear_shape

FORMAT_VERSION = 1
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint holds: every trainable tensor, GiVA's per-layer bases, VeRA's pair (unless regenerated)."""
    state = adapter_state(model)
    tensors = {name: p for name, p in model.named_parameters() if p.requires_grad}
    for layer_name, layer in state.layers.items():
        for buffer_name in layer.frozen_names:
            tensors[f"{layer_name}.{buffer_name}"] = getattr(layer, buffer_name)
    if spec_for(state.config).saves_shared(state.config):
        tensors.update(state.shared)
    return tensors


FORMATS = ("giva", "peft")


def save_adapter(model: nn.Module, path: str, format: str = "giva") -> str:
    """Write the adapter of `model` to folder `path`; returns the weights file's path.

    format="giva": our layout (every method). format="peft": PEFT's layout, for LoRA and VeRA, loadable with
    peft.PeftModel.from_pretrained (giva/peft_format.py).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; use 'giva' (ours) or 'peft' (LoRA and VeRA)")
    state = adapter_state(model)
    if any(layer.merged for layer in state.layers.values()):
        raise ValueError("the adapter is merged into the base weights; call unmerge_adapter(model) before saving")
    if format == "peft":
        return save_peft_adapter(model, path, state)
    os.makedirs(path, exist_ok=True)
    weights_path = os.path.join(path, WEIGHTS_FILE)
    save_file(cpu_copies(adapter_tensors(model)), weights_path)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": state.config.to_dict(),
        "layers": {name: {"shape": list(linear_shape(layer.base_layer)), "rank": layer.rank}
                   for name, layer in state.layers.items()},
    }
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(meta, f, indent=2)
    return weights_path


def save_peft_adapter(model: nn.Module, path: str, state) -> str:
    """Write our adapter as PEFT writes its own (LoRA, VeRA); returns the weights file's path."""
    conv1d = {layer.is_conv1d for layer in state.layers.values()}
    if len(conv1d) > 1:
        raise ValueError("PEFT's fan_in_fan_out holds for all layers of an adapter; this one mixes nn.Linear and Conv1D")
    config = peft_config(state.config, list(state.layers), conv1d.pop())
    tensors = cpu_copies(peft_tensors(model, state))
    os.makedirs(path, exist_ok=True)
    config.save_pretrained(path)
    weights_path = os.path.join(path, PEFT_WEIGHTS_FILE)
    save_file(tensors, weights_path, metadata={"format": "pt"})
    return weights_path


def cpu_copies(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def load_adapter(model: nn.Module, path: str) -> nn.Module:
    """Apply the adapter saved at `path` (ours, or a PEFT LoRA / VeRA checkpoint) to a fresh copy of the same
    base model and return it."""
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {path!r}; give the folder that save_adapter wrote")
    if hasattr(model, STATE_ATTR):
        raise ValueError("the model already has an adapter; call unload_adapter(model) before loading another")
    with open(config_path) as f:
        meta = json.load(f)
    if is_peft_config(meta):
        return load_peft_adapter(model, path, meta)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"adapter format version {meta.get('format_version')} is not {FORMAT_VERSION}; save it again with this version")
    modules = dict(model.named_modules())
    for name, info in meta["layers"].items():
        layer = modules.get(name)
        if layer is None or not is_linear(layer) or list(linear_shape(layer)) != info["shape"]:
            found = list(linear_shape(layer)) if layer is not None and is_linear(layer) else "no such linear layer"
            raise ValueError(f"adapter in {path!r} was saved for layer {name!r} of shape {info['shape']} but this model has "
                             f"{found}; load it onto the base model it was trained from")
    options = dict(meta["config"])
    method = options.pop("method")
    options["target_modules"] = list(meta["layers"])  # exactly the saved layers
    config = make_config(method, **options)
    tensors = load_file(os.path.join(path, WEIGHTS_FILE))
    apply_adapter(model, config, saved=tensors)
    mismatched = copy_tensors(adapter_tensors(model), tensors)  # without VeRA's pair when regenerated from the seed
    if mismatched:
        unload_adapter(model)
        raise ValueError(f"checkpoint {path!r} does not fit its own config at {mismatched[:3]}; "
                         "it was edited or saved from another adapter")
    return model


def load_peft_adapter(model: nn.Module, path: str, config_json: dict) -> nn.Module:
    """Apply the PEFT LoRA / VeRA checkpoint at `path` to `model` as our adapter layers."""
    weights_path = os.path.join(path, PEFT_WEIGHTS_FILE)
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"no {PEFT_WEIGHTS_FILE} in {path!r}; PEFT checkpoints in .bin files are not read, "
                                "save them again with safe_serialization=True")
    tensors = load_file(weights_path)
    config = config_from_peft(config_json, tensors, path)
    apply_adapter(model, config)
    mismatched = copy_tensors(peft_tensors(model, adapter_state(model)), checkpoint_tensors(config, tensors))
    if mismatched:
        unload_adapter(model)
        raise ValueError(f"the PEFT checkpoint {path!r} does not fit this model at {mismatched[:3]}; "
                         "load it onto the base model it was trained from")
    return model


def copy_tensors(targets: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> list[str]:
    """Copy every checkpoint tensor into its target; returns the names that do not match (and then copies none)."""
    mismatched = sorted(set(targets) ^ set(tensors)) or [n for n in targets if targets[n].shape != tensors[n].shape]
    if not mismatched:
        with torch.no_grad():
            for name, tensor in tensors.items():
                targets[name].copy_(tensor)
    return mismatched
