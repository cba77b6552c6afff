"""The shape every adapter layer shares: base output plus a low-rank delta."""

from __future__ import annotations

import torch
import torch.nn as nn

from .targets import linear_shape


def adapter_dtype(base_layer: nn.Module) -> torch.dtype:
    """Adapters train in fp32 on a half-precision base (as PEFT does), else in the base dtype."""
    dtype = base_layer.weight.dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class AdapterLayer(nn.Module):
    """y = base_layer(x) + delta(dropout(x)).

    Subclasses define `delta(x)` (..., in) -> (..., out) and `delta_weight()`
    (out, in), and list their tensors: `trainable_names` are nn.Parameters,
    `frozen_names` are per-layer buffers saved with the adapter.
    """

    trainable_names: tuple[str, ...] = ()
    frozen_names: tuple[str, ...] = ()

    def __init__(self, base_layer: nn.Module, dropout: float):
        super().__init__()
        self.base_layer = base_layer
        self.out_features, self.in_features = linear_shape(base_layer)
        self.is_conv1d = not isinstance(base_layer, nn.Linear)  # weight stored (in, out)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True
        self.merged = False

    @property
    def rank(self) -> int:
        raise NotImplementedError

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.enabled and not self.merged:
            dtype = self.trainable_dtype()
            result = result + self.delta(self.dropout(x.to(dtype))).to(result.dtype)
        return result

    def trainable_dtype(self) -> torch.dtype:
        return getattr(self, self.trainable_names[0]).dtype

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._add_to_base(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self._add_to_base(-self.delta_weight())
            self.merged = False

    def _add_to_base(self, delta_weight: torch.Tensor) -> None:  # delta_weight: (out, in)
        weight = self.base_layer.weight
        weight.add_((delta_weight.T if self.is_conv1d else delta_weight).to(weight.dtype))
