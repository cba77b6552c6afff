"""GiVA: VeRA's two trainable vectors, on frozen per-layer bases from the task gradient.

y = W0 x + lambda_o * (B (lambda_s * (A dropout(x)))), where A (r, in) holds the
top-r right singular vectors of G = mean dLoss/dW0 and B (out, r) depends on
the basis variant (../shared/METHODS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .config import AdapterConfig
from .gradient import estimate_gradients
from .layer import AdapterLayer, adapter_dtype, vector_delta

BASES = ("Vr", "VrUr", "VrU2r", "VrUrand")
SVD_KINDS = ("randomized", "exact")
AUTOCAST_DTYPES = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}
GRAD_MODES = ("train", "eval")


@dataclass
class GivaConfig(AdapterConfig):
    method = "giva"
    seed_option = "seed"
    basis: str = "Vr"  # the variant the paper's experiments use
    num_grad_batches: int = 1  # batches averaged into G (the authors used 1)
    svd: str = "randomized"  # torch.svd_lowrank's algorithm with q = min(4r, min(out, in)); or "exact"
    svd_niter: int = 4
    seed: int = 0  # randomized SVD and the random B of Vr / VrUrand
    autocast_dtype: str | None = None  # e.g. "bfloat16" for the gradient pass only
    grad_cache: str | None = None  # directory: reuse G from a previous run with the same data
    # The module mode of the gradient pass: "train" (dropout on, as the authors take it) or "eval" (no dropout).
    # The model's own modes are restored afterwards.
    grad_mode: str = "train"

    def __post_init__(self):
        super().__post_init__()
        if self.basis not in BASES:
            raise ValueError(f"unknown GiVA basis {self.basis!r}; choose one of {', '.join(BASES)}")
        if self.svd not in SVD_KINDS:
            raise ValueError(f"unknown svd {self.svd!r}; choose 'randomized' or 'exact'")
        if isinstance(self.num_grad_batches, bool) or not isinstance(self.num_grad_batches, int) or self.num_grad_batches < 1:
            raise ValueError(f"num_grad_batches={self.num_grad_batches!r} must be a positive integer")
        if self.grad_mode not in GRAD_MODES:
            raise ValueError(f"grad_mode={self.grad_mode!r}: use 'train' (dropout on, the paper's) or 'eval' (no dropout)")
        if self.autocast_dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast_dtype={self.autocast_dtype!r}: use None, 'bfloat16' or 'float16'")

    def check_layer_rank(self, name: str, out_features: int, in_features: int) -> int:
        """GiVA caps r at min(out, in) (min(out, in) // 2 for VrU2r), as the authors do."""
        limit = min(out_features, in_features) // (2 if self.basis == "VrU2r" else 1)
        if limit < 1:
            raise ValueError(f"layer {name!r} of shape ({out_features}, {in_features}) is too small for basis {self.basis}")
        return min(self.r, limit)


def top_singular_vectors(G: torch.Tensor, q: int, exact: bool, niter: int, generator: torch.Generator):
    """U (out, q), V (in, q) of G (out, in) in fp32; randomized = Halko et al. as torch.svd_lowrank, but seeded."""
    if exact:
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        return U[:, :q], Vh[:q].T
    omega = torch.randn(G.shape[1], q, generator=generator, device=G.device, dtype=G.dtype)
    Q = torch.linalg.qr(G @ omega).Q  # (out, q): range of G
    for _ in range(niter):  # power iterations sharpen the spectrum
        Q = torch.linalg.qr(G @ torch.linalg.qr(G.T @ Q).Q).Q
    U_small, _, Vh = torch.linalg.svd(Q.T @ G, full_matrices=False)  # (q, in)
    return Q @ U_small, Vh.T


def bases_from_gradient(name: str, G: torch.Tensor, r: int, config: GivaConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in) and B (out, r) for one layer from its averaged gradient G (out, in)."""
    if not torch.isfinite(G).all():
        raise ValueError(f"gradient of layer {name!r} has NaN or inf values; check the loss and data of the gradient batches")
    if not G.any():
        raise ValueError(f"gradient of layer {name!r} is all zeros; is the layer on the path to the loss? drop it from target_modules")
    out_features, in_features = G.shape
    G = G.float()
    generator = torch.Generator(device=G.device).manual_seed(config.seed)
    needed = 2 * r if config.basis == "VrU2r" else r
    q = min(max(4 * r, needed), min(out_features, in_features))
    U, V = top_singular_vectors(G, q, config.svd == "exact", config.svd_niter, generator)
    A = V[:, :r].T.contiguous()
    if config.basis == "VrUr":
        B = U[:, :r]
    elif config.basis == "VrU2r":
        B = U[:, r : 2 * r]
    else:
        B = torch.randn(out_features, r, generator=generator, device=G.device)
        if config.basis == "Vr":
            B = torch.linalg.qr(B).Q
    return A, B.contiguous()


class GivaLinear(AdapterLayer):
    trainable_names = ("lambda_s", "lambda_o")
    frozen_names = ("giva_A", "giva_B")

    def __init__(self, base_layer: nn.Module, A: torch.Tensor, B: torch.Tensor, dropout: float):
        super().__init__(base_layer, dropout)
        to = dict(device=base_layer.weight.device, dtype=adapter_dtype(base_layer))
        self.register_buffer("giva_A", A.to(**to))  # (r, in)
        self.register_buffer("giva_B", B.to(**to))  # (out, r)
        r = A.shape[0]
        self.lambda_s = nn.Parameter(torch.ones(r, **to))
        self.lambda_o = nn.Parameter(torch.zeros(self.out_features, **to))  # delta is exactly 0 at init

    @property
    def rank(self) -> int:
        return self.lambda_s.shape[0]

    def delta(self, x):
        return vector_delta(x, self.giva_A, self.giva_B, self.lambda_s, self.lambda_o)

    def delta_weight(self):
        return (self.lambda_o[:, None] * self.giva_B * self.lambda_s) @ self.giva_A


def build_layers(config: GivaConfig, targets: dict[str, nn.Module], *, ranks: dict[str, int], model=None,
                 data=None, loss_fn=None, saved: dict[str, torch.Tensor] | None = None, timings: dict | None = None):
    """Layers from saved bases (loading), or from the gradient of `data` (applying)."""
    if saved is not None:
        missing = [name for name in targets if f"{name}.giva_A" not in saved or f"{name}.giva_B" not in saved]
        if missing:
            raise ValueError(f"the checkpoint lacks the GiVA bases of layers {missing[:3]}; save it with save_adapter")
        return {name: GivaLinear(layer, saved[f"{name}.giva_A"], saved[f"{name}.giva_B"], config.dropout)
                for name, layer in targets.items()}
    if data is None:
        raise ValueError("GiVA needs training data for its gradient bases: apply_adapter(model, config, data=batches or train_step)")
    bases = {}

    def on_gradient(name, G):
        bases[name] = bases_from_gradient(name, G, ranks[name], config)

    estimate_gradients(model, targets, data, config.num_grad_batches, on_gradient, loss_fn=loss_fn,
                       autocast_dtype=AUTOCAST_DTYPES[config.autocast_dtype], cache_dir=config.grad_cache,
                       train_mode=config.grad_mode == "train", timings=timings)
    return {name: GivaLinear(layer, *bases[name], config.dropout) for name, layer in targets.items()}
