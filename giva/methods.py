"""The three methods by name: config class and layer builder."""

from __future__ import annotations

from dataclasses import fields

from . import giva, lora, vera
from .config import AdapterConfig

METHODS = {
    "lora": (lora.LoraConfig, lora.build_layers),
    "vera": (vera.VeraConfig, vera.build_layers),
    "giva": (giva.GivaConfig, giva.build_layers),
}


def make_config(method: str, **options) -> AdapterConfig:
    """make_config("giva", r=8, basis="Vr"): errors name the unknown method or option."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    config_class = METHODS[method][0]
    known = [f.name for f in fields(config_class)]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for method {method}; known options: {', '.join(known)}")
    return config_class(**options)


def builder_for(config: AdapterConfig):
    if config.method not in METHODS or not isinstance(config, METHODS[config.method][0]):
        raise ValueError(f"unknown adapter config {type(config).__name__}; use LoraConfig, VeraConfig or GivaConfig")
    return METHODS[config.method][1]
