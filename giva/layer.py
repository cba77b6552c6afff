"""The shape every adapter layer shares: base output plus a low-rank delta."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .targets import linear_shape

# Up to this rank, VeRA and GiVA fold their two vectors into the small (out, r) matrix; above it they
# scale the activations instead, as PEFT does. Folding skips the elementwise passes over the (tokens, out)
# output, but its backward needs an (out, r) weight-gradient matmul of tokens * out * r multiply-adds.
# Measured fwd+bwd on CPU (one thread, 1024 tokens, 384/1536 wide): folding takes 0.64-0.92x the time at
# r <= 64, about the same at r = 128, 1.0-1.35x at r >= 256 (see test_vector_delta_paths in
# tests/benchmarks/test_bench_adapters.py).
FOLD_MAX_RANK = 64


def adapter_dtype(base_layer: nn.Module) -> torch.dtype:
    """Adapters train in fp32 on a half-precision base (as PEFT does), else in the base dtype."""
    dtype = base_layer.weight.dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class LinearSavingInput(torch.autograd.Function):
    """F.linear(x, weight) computed in the weight's dtype, for an x of lower precision (a bf16 or fp16 base's input
    to fp32 adapters), that keeps x itself for the weight's gradient instead of its fp32 copy: the same values
    (x.to(fp32) is exact), a half (bf16) of the bytes, and one tensor for the layers that share an input (q, k, v)
    instead of a copy each."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        ctx.x_dtype = x.dtype
        return F.linear(x.to(weight.dtype), weight)  # (..., r); the fp32 copy of x lives only here

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # grad (..., r)
        x, weight = ctx.saved_tensors
        grad_x = (grad @ weight).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = grad.reshape(-1, grad.shape[-1]).mT @ x.reshape(-1, x.shape[-1]).to(weight.dtype)  # (r, in)
        return grad_x, grad_weight


def project_in(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (..., in) -> (..., r) through weight (r, in), in the weight's dtype; an x of another dtype is kept as it
    is for the backward (LinearSavingInput)."""
    if x.dtype == weight.dtype:
        return F.linear(x, weight)
    return LinearSavingInput.apply(x, weight)


def vector_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, lambda_in: torch.Tensor,
                 lambda_out: torch.Tensor) -> torch.Tensor:
    """lambda_out * (B (lambda_in * (A x))): x (..., in), A (r, in), B (out, r), lambda_in (r,), lambda_out (out,),
    in A's dtype whatever x's."""
    if A.shape[0] <= FOLD_MAX_RANK:
        return F.linear(project_in(x, A), lambda_out[:, None] * B * lambda_in)  # diag(l_out) B diag(l_in): (out, r)
    return lambda_out * F.linear(lambda_in * project_in(x, A), B)


class AdapterLayer(nn.Module):
    """y = base_layer(x) + delta(dropout(x)).

    Subclasses define `delta(x)` (..., in) -> (..., out) in the adapter's dtype, for an x in the base's
    (project_in handles the difference), and `delta_weight()` (out, in), and list their tensors: `trainable_names` are nn.Parameters,
    `frozen_names` are per-layer buffers saved with the adapter, `shared_names`
    are frozen tensors that all layers share (saved once).
    """

    trainable_names: tuple[str, ...] = ()
    frozen_names: tuple[str, ...] = ()
    shared_names: tuple[str, ...] = ()

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
            result = result + self.delta(self.dropout(x)).to(result.dtype)
        return result

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
