"""Our LoRA and VeRA in PEFT's checkpoint layout, both ways.

    save_adapter(model, "out/", format="peft")   # then PeftModel.from_pretrained(base, "out/")
    load_adapter(base, "peft_checkpoint/")       # a PEFT LoRA or VeRA checkpoint, into our layers

PEFT's layout: adapter_config.json (the PEFT config, with peft_type) and adapter_model.safetensors, keyed
`base_model.model.<layer>.lora_A.weight` / `.lora_B.weight` (LoRA), `base_model.model.<layer>.vera_lambda_d` /
`.vera_lambda_b` and `base_model.vera_A` / `.vera_B` (VeRA), `base_model.model.<param>` (modules_to_save, our
trainable_modules). GiVA has no PEFT type (PEFT 0.21's register_peft_method accepts only names already in its
PeftType enum), so GiVA checkpoints stay in our own format.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
PREFIX = "base_model.model."
# Our tensor name in a layer -> PEFT's key suffix, per method; VeRA's shared pair sits at base_model.<name>.
LAYER_KEYS = {
    "lora": {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"},
    "vera": {"lambda_d": "vera_lambda_d", "lambda_b": "vera_lambda_b"},
}
SHARED_KEYS = {"vera_A": "base_model.vera_A", "vera_B": "base_model.vera_B"}
PEFT_TYPES = {"lora": "LORA", "vera": "VERA"}


def is_peft_checkpoint(path: str) -> bool:
    config_path = os.path.join(path, PEFT_CONFIG_FILE)
    if not os.path.exists(config_path):
        return False
    with open(config_path) as f:
        return "peft_type" in json.load(f)


def peft_tensors(model: nn.Module, state) -> dict[str, torch.Tensor]:
    """Every tensor of our checkpoint, under PEFT's key."""
    method = state.config.method
    out = {}
    adapter_params = set()
    for layer_name, layer in state.layers.items():
        for ours, theirs in LAYER_KEYS[method].items():
            out[f"{PREFIX}{layer_name}.{theirs}"] = getattr(layer, ours)
            adapter_params.add(f"{layer_name}.{ours}")
    for name, param in model.named_parameters():  # trainable_modules: PEFT's modules_to_save
        if param.requires_grad and name not in adapter_params:
            out[PREFIX + name] = param
    if method == "vera" and state.config.save_projection:
        out.update({SHARED_KEYS[name]: tensor for name, tensor in state.shared.items()})
    return out


def save_peft_adapter(model: nn.Module, path: str, state) -> str:
    """Write our LoRA or VeRA adapter as PEFT writes its own; returns the weights file's path."""
    import peft

    config = state.config
    if config.method not in PEFT_TYPES:
        raise ValueError(f"{config.method} has no PEFT type (only {', '.join(PEFT_TYPES)} have); "
                         "save it in our format: save_adapter(model, path)")
    common = dict(r=config.r, target_modules=list(state.layers), modules_to_save=list(config.trainable_modules) or None,
                  fan_in_fan_out=any(layer.is_conv1d for layer in state.layers.values()))
    if any(layer.is_conv1d for layer in state.layers.values()) and not all(layer.is_conv1d for layer in state.layers.values()):
        raise ValueError("PEFT's fan_in_fan_out holds for all layers of an adapter; this one mixes nn.Linear and Conv1D")
    if config.method == "lora":
        peft_config = peft.LoraConfig(lora_alpha=config.alpha, use_rslora=config.use_rslora,
                                      lora_dropout=config.dropout, **common)
    else:
        peft_config = peft.VeraConfig(d_initial=config.d_initial, projection_prng_key=config.projection_seed,
                                      save_projection=config.save_projection, vera_dropout=config.dropout, **common)
    os.makedirs(path, exist_ok=True)
    peft_config.save_pretrained(path)
    weights_path = os.path.join(path, PEFT_WEIGHTS_FILE)
    tensors = {k: v.detach().contiguous().cpu() for k, v in peft_tensors(model, state).items()}
    save_file(tensors, weights_path, metadata={"format": "pt"})
    return weights_path


def config_from_peft(path: str, tensors: dict[str, torch.Tensor]):
    """Our LoraConfig / VeraConfig for a PEFT checkpoint; refuses what ours cannot represent."""
    from .methods import make_config

    with open(os.path.join(path, PEFT_CONFIG_FILE)) as f:
        peft_config = json.load(f)
    peft_type = peft_config.get("peft_type")
    method = {v: k for k, v in PEFT_TYPES.items()}.get(peft_type)
    if method is None:
        raise ValueError(f"{path!r} holds a PEFT {peft_type} adapter; only LORA and VERA checkpoints load into ours "
                         "(load the others with peft.PeftModel.from_pretrained)")
    unsupported = {"use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "bias": "none", "lora_bias": False,
                   "layers_to_transform": None, "trainable_token_indices": None}
    differs = [k for k, plain in unsupported.items() if peft_config.get(k, plain) not in (plain, None)]
    if peft_config.get("init_lora_weights", True) not in (True, False, "gaussian"):
        differs.append(f"init_lora_weights={peft_config['init_lora_weights']!r} (convert it to plain LoRA in PEFT first)")
    if differs:
        raise ValueError(f"the PEFT checkpoint {path!r} uses {', '.join(differs)}, which our {method} does not "
                         "implement; load it with peft.PeftModel.from_pretrained")
    suffixes = tuple("." + key for key in LAYER_KEYS[method].values())
    layers = sorted({k[len(PREFIX):].rsplit(".", 2 if method == "lora" else 1)[0]
                     for k in tensors if k.startswith(PREFIX) and k.endswith(suffixes)})
    common = dict(r=peft_config["r"], target_modules=layers, trainable_modules=peft_config.get("modules_to_save") or [])
    if method == "lora":
        return make_config("lora", alpha=peft_config["lora_alpha"], use_rslora=peft_config.get("use_rslora", False),
                           dropout=peft_config.get("lora_dropout", 0.0), **common)
    return make_config("vera", d_initial=peft_config.get("d_initial", 0.1),
                       projection_seed=peft_config.get("projection_prng_key", 0),
                       save_projection=peft_config.get("save_projection", True),
                       dropout=peft_config.get("vera_dropout", 0.0), **common)


def load_peft_adapter(model: nn.Module, path: str) -> nn.Module:
    """Apply the PEFT LoRA / VeRA checkpoint at `path` to `model` as our adapter layers."""
    from .inject import adapter_state, apply_adapter, unload_adapter
    from .io import copy_tensors

    weights_path = os.path.join(path, PEFT_WEIGHTS_FILE)
    if not os.path.exists(weights_path):
        raise FileNotFoundError(f"no {PEFT_WEIGHTS_FILE} in {path!r}; PEFT checkpoints in .bin files are not read, "
                                "save them again with safe_serialization=True")
    tensors = load_file(weights_path)
    config = config_from_peft(path, tensors)
    apply_adapter(model, config)
    if config.method == "vera" and not config.save_projection:
        tensors = {k: v for k, v in tensors.items() if k not in SHARED_KEYS.values()}
    mismatched = copy_tensors(peft_tensors(model, adapter_state(model)), tensors)
    if mismatched:
        unload_adapter(model)
        raise ValueError(f"the PEFT checkpoint {path!r} does not fit this model at {mismatched[:3]}; "
                         "load it onto the base model it was trained from")
    return model
