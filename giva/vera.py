"""VeRA: one frozen random pair shared by all layers, two trainable vectors per layer.

y = W0 x + lambda_b * (B_s (lambda_d * (A_s dropout(x)))), with A_s = A[:, :in]
and B_s = B[:out, :] slices of the shared A (r, max_in) and B (max_out, r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .config import AdapterConfig
from .layer import AdapterLayer, adapter_dtype, vector_delta
from .targets import linear_shape


@dataclass
class VeraConfig(AdapterConfig):
    method = "vera"
    seed_option = "projection_seed"
    r: int = 256
    d_initial: float = 0.1  # lambda_d's start (PEFT default; the GiVA authors used 1.0 for generation)
    projection_seed: int = 0  # PEFT's projection_prng_key
    save_projection: bool = True  # False: checkpoints regenerate A and B from the seed


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Kaiming-uniform with gain sqrt(2) on fan_in = shape[1], as PEFT's VeRA draws it."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def make_projections(r: int, max_in: int, max_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared frozen pair: A (r, max_in) drawn first, then B (max_out, r), from a CPU generator."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    A = kaiming_uniform((r, max_in), generator)
    B = kaiming_uniform((max_out, r), generator)
    return A, B


class VeraProjections(nn.Module):
    """The shared frozen pair. Every VeraLinear holds this one module, so .to() and .half() keep one copy."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A, persistent=False)  # (r, max_in); io.py saves it once, or not at all
        self.register_buffer("B", B, persistent=False)  # (max_out, r)


class VeraLinear(AdapterLayer):
    trainable_names = ("lambda_d", "lambda_b")
    shared_names = ("vera_A", "vera_B")

    def __init__(self, base_layer: nn.Module, projections: VeraProjections, d_initial: float, dropout: float):
        super().__init__(base_layer, dropout)
        self.projections = projections
        r = projections.A.shape[0]
        to = dict(device=projections.A.device, dtype=projections.A.dtype)
        self.lambda_d = nn.Parameter(torch.full((r,), float(d_initial), **to))
        self.lambda_b = nn.Parameter(torch.zeros(self.out_features, **to))

    @property
    def vera_A(self) -> torch.Tensor:  # (r, max_in)
        return self.projections.A

    @property
    def vera_B(self) -> torch.Tensor:  # (max_out, r)
        return self.projections.B

    @property
    def rank(self) -> int:
        return self.lambda_d.shape[0]

    def delta(self, x):
        A, B = self.vera_A[:, : self.in_features], self.vera_B[: self.out_features]
        return vector_delta(x, A, B, self.lambda_d, self.lambda_b)

    def delta_weight(self):
        B = self.vera_B[: self.out_features]
        return (self.lambda_b[:, None] * B * self.lambda_d) @ self.vera_A[:, : self.in_features]


def build_layers(config: VeraConfig, targets: dict[str, nn.Module], **_) -> dict[str, AdapterLayer]:
    shapes = [linear_shape(layer) for layer in targets.values()]
    max_out = max(out for out, _ in shapes)
    max_in = max(inp for _, inp in shapes)
    A, B = make_projections(config.r, max_in, max_out, config.projection_seed)
    first = next(iter(targets.values()))
    to = dict(device=first.weight.device, dtype=adapter_dtype(first))
    projections = VeraProjections(A.to(**to), B.to(**to))
    return {name: VeraLinear(layer, projections, config.d_initial, config.dropout) for name, layer in targets.items()}


# PEFT's layout (giva/peft_format.py): a layer's vectors, the shared pair at base_model.vera_A / vera_B.
PEFT_KEYS = {"lambda_d": "vera_lambda_d", "lambda_b": "vera_lambda_b"}
PEFT_SHARED_KEYS = {"vera_A": "base_model.vera_A", "vera_B": "base_model.vera_B"}


def to_peft(config: VeraConfig) -> dict:
    return dict(d_initial=config.d_initial, projection_prng_key=config.projection_seed,
                save_projection=config.save_projection, vera_dropout=config.dropout)


def from_peft(peft_config: dict) -> dict:
    return dict(d_initial=peft_config.get("d_initial", 0.1), projection_seed=peft_config.get("projection_prng_key", 0),
                save_projection=peft_config.get("save_projection", True), dropout=peft_config.get("vera_dropout", 0.0))
