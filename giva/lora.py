"""LoRA: y = W0 x + s * B (A dropout(x)), with A (r, in) and B (out, r) trainable."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import AdapterConfig
from .layer import AdapterLayer, adapter_dtype, project_in


@dataclass
class LoraConfig(AdapterConfig):
    method = "lora"
    alpha: float = 8.0  # s = alpha / r; the GiVA paper's GLUE runs use r 4, alpha 8
    use_rslora: bool = False  # s = alpha / sqrt(r) instead

    def check_layer_rank(self, name: str, out_features: int, in_features: int) -> int:
        limit = min(out_features, in_features)
        if self.r > limit:
            raise ValueError(
                f"LoRA rank r={self.r} exceeds min(out, in)={limit} of layer {name!r}, where it adds "
                f"parameters but no expressivity; use r <= {limit} or target wider layers"
            )
        return self.r


class LoraLinear(AdapterLayer):
    """y = W0 x + s * B (A dropout(x)); A Kaiming-uniform (a = sqrt(5)), B zeros, s = alpha / r."""

    trainable_names = ("lora_A", "lora_B")

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, use_rslora: bool, dropout: float):
        super().__init__(base_layer, dropout)
        # Drawn in PEFT's order (nn.Linear's own init of A and B, then A again)
        # so that one torch seed gives PEFT's A exactly.
        A = torch.empty(r, self.in_features)
        B = torch.empty(self.out_features, r)
        nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        nn.init.kaiming_uniform_(B, a=math.sqrt(5))
        nn.init.kaiming_uniform_(A, a=math.sqrt(5))
        B.zero_()
        to = dict(device=base_layer.weight.device, dtype=adapter_dtype(base_layer))
        self.lora_A = nn.Parameter(A.to(**to))  # (r, in)
        self.lora_B = nn.Parameter(B.to(**to))  # (out, r)
        self.scaling = alpha / (math.sqrt(r) if use_rslora else r)

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    def delta(self, x):
        # Folding s into the (out, r) matrix costs out*r instead of tokens*out.
        return F.linear(project_in(x, self.lora_A), self.lora_B * self.scaling)

    def delta_weight(self):
        return (self.lora_B * self.scaling) @ self.lora_A


def build_layers(config: LoraConfig, targets: dict[str, nn.Module], **_) -> dict[str, AdapterLayer]:
    return {
        name: LoraLinear(layer, config.r, config.alpha, config.use_rslora, config.dropout)
        for name, layer in targets.items()
    }


# PEFT's layout (giva/peft_format.py): our tensor name in a layer -> PEFT's key suffix, and the config both ways.
PEFT_KEYS = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"}


def to_peft(config: LoraConfig) -> dict:
    return dict(lora_alpha=config.alpha, use_rslora=config.use_rslora, lora_dropout=config.dropout)


def from_peft(peft_config: dict) -> dict:
    return dict(alpha=peft_config["lora_alpha"], use_rslora=peft_config.get("use_rslora", False),
                dropout=peft_config.get("lora_dropout", 0.0))
