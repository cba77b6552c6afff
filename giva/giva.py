"""GiVA: VeRA's two trainable vectors, on frozen per-layer bases from the task gradient.

y = W0 x + lambda_o * (B (lambda_s * (A dropout(x)))), where A (r, in) holds the
top-r right singular vectors of G = mean dLoss/dW0 and B (out, r) depends on
the basis variant (../shared/METHODS.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .config import AdapterConfig
from .gradient import estimate_gradients
from .layer import AdapterLayer, adapter_dtype, vector_delta
from .targets import linear_shape

BASES = ("Vr", "VrUr", "VrU2r", "VrUrand")
SVD_KINDS = ("randomized", "exact")
AUTOCAST_DTYPES = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}
GRAD_MODES = ("train", "eval")
# Gradients of one shape wait, up to this many bytes, to be decomposed together (see build_layers).
STACK_BYTES = 64 * 2**20


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
    # directory: reuse G from a previous run with the same data (a run-time setting: checkpoints do not keep it)
    grad_cache: str | None = field(default=None, metadata={"saved": False})
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
    """U (..., out, q), V (..., in, q) of G (..., out, in) in fp32, for one matrix or a stack of same-shape ones.

    randomized = Halko et al. as torch.svd_lowrank, seeded: one sketch Omega for the whole stack (as each
    layer alone would draw it from the same seed). Its last step, the SVD of Q^T G (q, in), goes through
    a QR of (Q^T G)^T = Q2 R and the SVD of the small R^T (q, q): the same factors, a fraction of the time.
    """
    if exact:
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        return U[..., :q], Vh[..., :q, :].mT
    omega = torch.randn(G.shape[-1], q, generator=generator, device=G.device, dtype=G.dtype)
    Gt = G.mT
    Q = torch.linalg.qr(G @ omega).Q  # (..., out, q): range of G
    for _ in range(niter):  # power iterations sharpen the spectrum
        Q = torch.linalg.qr(G @ torch.linalg.qr(Gt @ Q).Q).Q
    Q2, R = torch.linalg.qr(Gt @ Q)  # (Q^T G)^T (..., in, q) = Q2 R, so Q^T G = R^T Q2^T
    U_small, _, Wh = torch.linalg.svd(R.mT)  # R^T = U_small S Wh (..., q, q)
    return Q @ U_small, Q2 @ Wh.mT


@contextmanager
def one_cpu_thread(device: torch.device):
    """torch on one intra-op thread (CPU tensors only), the caller's count restored after. GiVA's QRs and SVDs are
    small LAPACK calls that gain nothing from threads; with 2 threads on cores other processes keep busy, their
    OpenMP barriers made the 36 decompositions of MiniLM 5 to 15x slower (1 s against 5 to 16 s, measured here)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_gradient(name: str, G: torch.Tensor) -> None:
    if not torch.isfinite(G).all():
        raise ValueError(f"gradient of layer {name!r} has NaN or inf values; check the loss and data of the gradient batches")
    if not G.any():
        raise ValueError(f"gradient of layer {name!r} is all zeros; is the layer on the path to the loss? drop it from target_modules")


def stacked_bases(G: torch.Tensor, r: int, config: GivaConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A (n, r, in) and B (n, out, r) for a stack of n layers' averaged gradients G (n, out, in) of one shape.

    Every layer's bases are those it would get alone: the generator is seeded with config.seed per call, so
    the sketch and a random B (drawn after it) are the same for layers of one shape, stacked or not.
    """
    n, out_features, in_features = G.shape
    G = G.float()
    generator = torch.Generator(device=G.device).manual_seed(config.seed)
    needed = 2 * r if config.basis == "VrU2r" else r
    q = min(max(4 * r, needed), min(out_features, in_features))
    U, V = top_singular_vectors(G, q, config.svd == "exact", config.svd_niter, generator)
    A = V[..., :r].mT.contiguous()
    if config.basis == "VrUr":
        B = U[..., :r]
    elif config.basis == "VrU2r":
        B = U[..., r : 2 * r]
    else:
        B = torch.randn(out_features, r, generator=generator, device=G.device)
        if config.basis == "Vr":
            B = torch.linalg.qr(B).Q
        B = B.expand(n, out_features, r)
    return A, B.contiguous()


def bases_from_gradient(name: str, G: torch.Tensor, r: int, config: GivaConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in) and B (out, r) for one layer from its averaged gradient G (out, in)."""
    check_gradient(name, G)
    A, B = stacked_bases(G[None], r, config)
    return A[0], B[0]


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
    bases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    # Layers of one shape (and rank) are decomposed together, in stacks of up to STACK_BYTES filled as their
    # gradients arrive: far fewer small LAPACK calls, whose thread barriers cost more than their arithmetic
    # when 2 threads share busy cores. stacks: key -> (buffer, names so far); left: key -> layers still to come.
    keys = {name: (*linear_shape(layer), ranks[name]) for name, layer in targets.items()}  # (out, in, r)
    left = {key: sum(1 for k in keys.values() if k == key) for key in set(keys.values())}
    stacks: dict[tuple, tuple[torch.Tensor, list[str]]] = {}

    def decompose(key) -> None:
        buffer, names = stacks.pop(key)
        with one_cpu_thread(buffer.device):
            A, B = stacked_bases(buffer, key[2], config)
        bases.update({name: (A[i].clone(), B[i].clone()) for i, name in enumerate(names)})  # no shared storage

    def on_gradient(name, G):
        check_gradient(name, G)
        key = keys[name]
        if key not in stacks:
            size = max(1, min(left[key], STACK_BYTES // (G.numel() * 4)))
            stacks[key] = (torch.empty(size, *G.shape, device=G.device), [])
        buffer, names = stacks[key]
        buffer[len(names)] = G
        names.append(name)
        left[key] -= 1
        if len(names) == len(buffer):
            decompose(key)

    estimate_gradients(model, targets, data, config.num_grad_batches, on_gradient, loss_fn=loss_fn,
                       autocast_dtype=AUTOCAST_DTYPES[config.autocast_dtype], cache_dir=config.grad_cache,
                       train_mode=config.grad_mode == "train", timings=timings)
    return {name: GivaLinear(layer, *bases[name], config.dropout) for name, layer in targets.items()}
