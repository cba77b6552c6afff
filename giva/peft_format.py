"""Our adapters in PEFT's checkpoint layout, both ways: configs and tensor names only (giva/io.py does the files).

    save_adapter(model, "out/", format="peft")   # then PeftModel.from_pretrained(base, "out/")
    load_adapter(base, "peft_checkpoint/")       # a PEFT LoRA or VeRA checkpoint, into our layers

PEFT's layout: adapter_config.json (the PEFT config, with peft_type) and adapter_model.safetensors, keyed
`base_model.model.<layer>.<suffix>` for a layer's tensors and `base_model.model.<param>` for modules_to_save (our
trainable_modules); shared tensors (VeRA's pair) sit at keys of their own. Which suffixes, which PeftType and how
the config fields translate is each method's `MethodSpec.peft` (giva/methods.py), so nothing here names a method.
GiVA has no PEFT type (PEFT 0.21's register_peft_method accepts only names already in its PeftType enum), so GiVA
checkpoints stay in our own format.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import AdapterConfig
from .methods import METHODS, MethodSpec, make_config, spec_for

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_CONFIG_FILE = "adapter_config.json"
PREFIX = "base_model.model."
# PEFT options our layers do not implement, with the value that means "not used".
UNSUPPORTED = {"use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "bias": "none", "lora_bias": False,
               "layers_to_transform": None, "trainable_token_indices": None}


def peft_methods() -> str:
    return " and ".join(spec.name for spec in METHODS.values() if spec.peft is not None)


def layout_of(spec: MethodSpec):
    if spec.peft is None:
        raise ValueError(f"{spec.name} has no PEFT type (only {peft_methods()} have); save it in our format: "
                         "save_adapter(model, path)")
    return spec.peft


def peft_config(config: AdapterConfig, layer_names: list[str], conv1d: bool):
    """The peft.PeftConfig object of our config, adapting `layer_names`."""
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING, PeftType

    layout = layout_of(spec_for(config))
    config_class = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(layout.peft_type)]
    return config_class(r=config.r, target_modules=list(layer_names), fan_in_fan_out=conv1d,
                        modules_to_save=list(config.trainable_modules) or None, **layout.to_peft(config))


def peft_tensors(model: nn.Module, state) -> dict[str, torch.Tensor]:
    """Every tensor of the adapter (and of trainable_modules) of an adapted model, under PEFT's key."""
    spec = spec_for(state.config)
    layout = layout_of(spec)
    out, adapter_params = {}, set()
    for layer_name, layer in state.layers.items():
        for ours, theirs in layout.layer_keys.items():
            out[f"{PREFIX}{layer_name}.{theirs}"] = getattr(layer, ours)
            adapter_params.add(f"{layer_name}.{ours}")
    for name, param in model.named_parameters():  # trainable_modules: PEFT's modules_to_save
        if param.requires_grad and name not in adapter_params:
            out[PREFIX + name] = param
    if spec.saves_shared(state.config):
        out.update({layout.shared_keys[name]: tensor for name, tensor in state.shared.items()})
    return out


def is_peft_config(config_json: dict) -> bool:
    return "peft_type" in config_json


def config_from_peft(config_json: dict, tensors: dict[str, torch.Tensor], path: str) -> AdapterConfig:
    """Our config for a PEFT checkpoint (its adapter_config.json and tensors); refuses what ours cannot represent."""
    peft_type = config_json.get("peft_type")
    spec = next((s for s in METHODS.values() if s.peft is not None and s.peft.peft_type == peft_type), None)
    if spec is None:
        types = " and ".join(s.peft.peft_type for s in METHODS.values() if s.peft is not None)
        raise ValueError(f"{path!r} holds a PEFT {peft_type} adapter; only {types} checkpoints load into ours "
                         "(load the others with peft.PeftModel.from_pretrained)")
    differs = [k for k, plain in UNSUPPORTED.items() if config_json.get(k, plain) not in (plain, None)]
    if config_json.get("init_lora_weights", True) not in (True, False, "gaussian"):
        differs.append(f"init_lora_weights={config_json['init_lora_weights']!r} (convert it to plain LoRA in PEFT first)")
    if differs:
        raise ValueError(f"the PEFT checkpoint {path!r} uses {', '.join(differs)}, which our {spec.name} does not "
                         "implement; load it with peft.PeftModel.from_pretrained")
    suffixes = ["." + key for key in spec.peft.layer_keys.values()]
    layers = sorted({key[len(PREFIX):-len(suffix)] for key in tensors if key.startswith(PREFIX)
                     for suffix in suffixes if key.endswith(suffix)})
    return make_config(spec.name, r=config_json["r"], target_modules=layers,
                       trainable_modules=config_json.get("modules_to_save") or [], **spec.peft.from_peft(config_json))


def checkpoint_tensors(config: AdapterConfig, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of a PEFT checkpoint that our adapter keeps (shared ones only when it saves them)."""
    spec = spec_for(config)
    if spec.saves_shared(config):
        return tensors
    shared = set(spec.peft.shared_keys.values())
    return {k: v for k, v in tensors.items() if k not in shared}
