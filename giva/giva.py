"""GiVA: VeRA's two trainable vectors, on frozen per-layer bases from the task gradient.

y = W0 x + lambda_o * (B (lambda_s * (A dropout(x)))), where A (r, in) holds the
top-r right singular vectors of G = mean dLoss/dW0 and B (out, r) depends on
the basis variant (docs/adapters.md).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .config import AdapterConfig
from .gradient import LowRankProduct, dense, estimate_gradients
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


def top_singular_vectors(G: torch.Tensor | LowRankProduct, q: int, exact: bool, niter: int,
                         generator: torch.Generator, matmul: Callable = operator.matmul):
    """U (..., out, q), V (..., in, q) of G (..., out, in) in fp32, for one matrix or a stack of same-shape ones,
    formed or a LowRankProduct (whose products cost 2 rows k (out + in) instead of 2 out in k). matmul(a, b) takes
    the randomized method's products with G and G^T (DecompositionThreads.matmul runs them on the caller's threads).

    randomized = Halko et al. as torch.svd_lowrank, seeded: one sketch Omega for the whole stack (as each
    layer alone would draw it from the same seed). Its last step, the SVD of Q^T G (q, in), goes through
    a QR of (Q^T G)^T = Q2 R and the SVD of the small R^T (q, q): the same factors, a fraction of the time.
    exact of a LowRankProduct left^T right = (Qy Ry)(Qx Rx)^T: the SVD of the (rows, rows) core Ry Rx^T, whose
    vectors Qy and Qx carry back (at most `rows` of them).
    """
    if exact and isinstance(G, LowRankProduct):
        Qy, Ry = torch.linalg.qr(G.left.mT)  # (..., out, rows), (..., rows, rows)
        Qx, Rx = torch.linalg.qr(G.right.mT)  # (..., in, rows), (..., rows, rows)
        U_core, _, Vh_core = torch.linalg.svd(Ry @ Rx.mT)
        return Qy @ U_core[..., :q], Qx @ Vh_core[..., :q, :].mT
    if exact:
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        return U[..., :q], Vh[..., :q, :].mT
    omega = torch.randn(G.shape[-1], q, generator=generator, device=G.device, dtype=G.dtype)
    Gt = G.mT
    Q = torch.linalg.qr(matmul(G, omega)).Q  # (..., out, q): range of G
    for _ in range(niter):  # power iterations sharpen the spectrum
        Q = torch.linalg.qr(matmul(G, torch.linalg.qr(matmul(Gt, Q)).Q)).Q
    Q2, R = torch.linalg.qr(matmul(Gt, Q))  # (Q^T G)^T (..., in, q) = Q2 R, so Q^T G = R^T Q2^T
    U_small, _, Wh = torch.linalg.svd(R.mT)  # R^T = U_small S Wh (..., q, q)
    return Q @ U_small, Q2 @ Wh.mT


def qr_flops(m: int, n: int) -> int:
    """Householder QR of (m, n) with Q formed (Golub and Van Loan 5.2.1), for either orientation."""
    m, n = max(m, n), min(m, n)
    return 2 * (2 * m * n * n - 2 * n**3 // 3)


def svd_flops(m: int, n: int) -> int:
    """Thin SVD of (m, n) with both sets of vectors (Golub and Van Loan, Fig. 8.6.1)."""
    m, n = max(m, n), min(m, n)
    return 4 * m * m * n + 8 * m * n * n + 9 * n**3


def bases_flops(out_features: int, in_features: int, q: int, config: GivaConfig, rows: int | None = None) -> int:
    """FLOPs of one layer's decomposition (top_singular_vectors), from G formed or (rows given) from its factors."""
    if config.svd == "exact" and rows is None:
        return svd_flops(out_features, in_features)
    if config.svd == "exact":
        return (qr_flops(out_features, rows) + qr_flops(in_features, rows) + 2 * rows**3 + svd_flops(rows, rows)
                + 2 * (out_features + in_features) * rows * q)
    product = 2 * q * (out_features * in_features if rows is None else rows * (out_features + in_features))
    qrs = (config.svd_niter + 1) * (qr_flops(out_features, q) + qr_flops(in_features, q))
    return (2 * config.svd_niter + 2) * product + qrs + svd_flops(q, q)


# Forming G is one large matrix product; the products with a q-column block that the SVD takes are thin ones,
# which run at about 0.4x its FLOP rate (1 CPU thread: forming 100-110 GFLOP/s, thin products 40-90; measured
# on 1024-8192 wide layers with 512 and 1024 tokens). keep_factored weighs forming's FLOPs by this factor.
FORM_FLOP_WEIGHT = 0.4


def keep_factored(G: LowRankProduct, r: int, config: GivaConfig) -> bool:
    """Whether the bases of G = dY^T X (rows tokens) cost less from the factors than from G formed (2 rows out in
    FLOPs, weighted by FORM_FLOP_WEIGHT). Randomized: each of the 2 niter + 2 products with G costs 2 rows q
    (out + in) from the factors against 2 out in q, so the factors win on layers much wider than q times the
    tokens over their difference. Exact: QRs of the factors and the SVD of a (rows, rows) core against the SVD of
    (out, in); it needs fewer rows than min(out, in) and at least as many as the basis takes vectors."""
    out_features, in_features = G.shape[-2:]
    rows, q = G.rows, sketch_width(r, out_features, in_features, config.basis)
    if config.svd == "exact" and not (2 * r if config.basis == "VrU2r" else r) <= rows < min(out_features, in_features):
        return False
    form = FORM_FLOP_WEIGHT * 2 * rows * out_features * in_features
    return bases_flops(out_features, in_features, q, config, rows) < form + bases_flops(out_features, in_features, q, config)


def sketch_width(r: int, out_features: int, in_features: int, basis: str) -> int:
    """q = min(4r, min(out, in)) (at least the 2r vectors VrU2r takes), as the authors' svd_lowrank call."""
    needed = 2 * r if basis == "VrU2r" else r
    return min(max(4 * r, needed), min(out_features, in_features))


class DecompositionThreads:
    """Intra-op thread counts of the decompositions on CPU: their QRs and small SVDs on one thread, their products
    with G on the caller's count, as the model's own matmuls run.

    Small LAPACK calls gain nothing from a second thread on idle cores (MiniLM's stack of 24 QRs of 384 x 32: 16.5
    ms on one thread, 21 ms on two) and lose by far on busy ones (the OpenMP barriers of a QR wait for the busy
    core: a 1024 x 32 QR took 30 ms on 2 threads against 0.25 ms on one, at a load of 8 on 2 cores); the products
    gain from a second core (10 products with that stack of 384 x 384 gradients: 21-23 ms on one thread, 11 ms on
    two). The counts are fixed, not chosen by timing, so that an init repeats exactly at a given thread count (a
    product's rounding can differ between one thread and two).
    """

    def __init__(self, device: torch.device):
        self.cpu = device.type == "cpu"
        self.caller = torch.get_num_threads()

    @contextmanager
    def run(self):
        """One decomposition: on CPU, one thread but for its products (matmul); the caller's count after."""
        if self.cpu:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(self.caller)

    def matmul(self, a: torch.Tensor | LowRankProduct, b: torch.Tensor) -> torch.Tensor:
        """a @ b on the caller's thread count, inside run()."""
        if not self.cpu:
            return a @ b
        torch.set_num_threads(self.caller)
        try:
            return a @ b
        finally:
            torch.set_num_threads(1)


def check_gradient(name: str, G: torch.Tensor | LowRankProduct) -> None:
    """Refuse a gradient with NaN or inf values or one that is all zeros (checked on the factors of a product)."""
    for part in (G.left, G.right) if isinstance(G, LowRankProduct) else (G,):
        low, high = torch.aminmax(part)  # one pass, no temporaries; NaN propagates into both
        if not (torch.isfinite(low) and torch.isfinite(high)):
            raise ValueError(f"gradient of layer {name!r} has NaN or inf values; check the loss and data of the gradient batches")
        if not (low != 0 or high != 0):  # written so that a fake tensor's read (as 1, in `estimate`) passes
            raise ValueError(f"gradient of layer {name!r} is all zeros; is the layer on the path to the loss? drop it from target_modules")


def stacked_bases(G: torch.Tensor | LowRankProduct, r: int, config: GivaConfig,
                  matmul: Callable = operator.matmul) -> tuple[torch.Tensor, torch.Tensor]:
    """A (n, r, in) and B (n, out, r) for a stack of n layers' averaged gradients G (n, out, in) of one shape; for
    one layer's G (out, in), A (r, in) and B (out, r) (no stack dimension: a fraction of the operations to trace).

    Every layer's bases are those it would get alone: the generator is seeded with config.seed per call, so
    the sketch and a random B (drawn after it) are the same for layers of one shape, stacked or not.
    """
    *stack, out_features, in_features = G.shape
    G = G.float()
    generator = torch.Generator(device=G.device).manual_seed(config.seed)
    q = sketch_width(r, out_features, in_features, config.basis)
    U, V = top_singular_vectors(G, q, config.svd == "exact", config.svd_niter, generator, matmul)
    A = V[..., :r].mT.contiguous()
    if config.basis == "VrUr":
        B = U[..., :r]
    elif config.basis == "VrU2r":
        B = U[..., r : 2 * r]
    else:
        B = torch.randn(out_features, r, generator=generator, device=G.device)
        if config.basis == "Vr":
            B = torch.linalg.qr(B).Q
        B = B.expand(*stack, out_features, r)
    return A, B.contiguous()


def bases_from_gradient(name: str, G: torch.Tensor, r: int, config: GivaConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in) and B (out, r) for one layer from its averaged gradient G (out, in)."""
    check_gradient(name, G)
    return stacked_bases(G, r, config)


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
    # A wide layer's bases come from its gradient's factors (see keep_factored), as soon as they arrive. Formed
    # gradients of one shape (and rank) are decomposed together, in stacks of up to STACK_BYTES filled as they
    # arrive: far fewer small LAPACK calls, whose thread barriers cost more than their arithmetic when 2 threads
    # share busy cores. stacks: key -> (buffer, names so far); left: key -> layers still to come.
    keys = {name: (*linear_shape(layer), ranks[name]) for name, layer in targets.items()}  # (out, in, r)
    left = {key: sum(1 for k in keys.values() if k == key) for key in set(keys.values())}
    stacks: dict[tuple, tuple[torch.Tensor, list[str]]] = {}

    threads = DecompositionThreads(next(iter(targets.values())).weight.device)

    def decompose(key) -> None:
        buffer, names = stacks.pop(key)
        with threads.run():
            A, B = stacked_bases(buffer[: len(names)], key[2], config, threads.matmul)
        bases.update({name: (A[i].clone(), B[i].clone()) for i, name in enumerate(names)})  # no shared storage

    def on_gradient(name, G):
        key = keys[name]
        left[key] -= 1
        if isinstance(G, LowRankProduct) and keep_factored(G, key[2], config):
            check_gradient(name, G)
            with threads.run():
                bases[name] = stacked_bases(G, key[2], config, threads.matmul)
            return
        G = dense(G)
        check_gradient(name, G)
        if key not in stacks:
            size = max(1, min(left[key] + 1, STACK_BYTES // (G.numel() * 4)))
            stacks[key] = (torch.empty(size, *G.shape, device=G.device), [])
        buffer, names = stacks[key]
        buffer[len(names)] = G
        names.append(name)
        if len(names) == len(buffer):
            decompose(key)

    estimate_gradients(model, targets, data, config.num_grad_batches, on_gradient, loss_fn=loss_fn,
                       autocast_dtype=AUTOCAST_DTYPES[config.autocast_dtype], cache_dir=config.grad_cache,
                       train_mode=config.grad_mode == "train", timings=timings)
    for key in list(stacks):  # a stack left short: some layers of its shape went the factored way
        decompose(key)
    return {name: GivaLinear(layer, *bases[name], config.dropout) for name, layer in targets.items()}
