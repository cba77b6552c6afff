"""The averaged task gradient of the target weights, handed over one layer at a time, as factors.

A linear layer's weight gradient over a batch is a sum of outer products, G = dY^T X: X (rows, in) holds the
layer's inputs and dY (rows, out) the loss's gradients at its outputs, one row per token. Hooks capture both
during a backward pass that computes no weight gradient at all (every weight stays frozen, as in a LoRA step),
and the gradient is handed over as that product, unformed; giva.giva decides whether forming it pays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from .gradient_cache import GradientCache
from .running import batch_loss, frozen, synchronize, to_device
from .targets import linear_shape


class LowRankProduct:
    """G = left^T right, never formed: left (..., rows, out), right (..., rows, in) -> G (..., out, in).

    G @ M is computed as left^T (right M): 2 rows k (out + in) FLOPs for M (in, k), where forming G costs
    2 rows out in and each product with it 2 out in k. `.mT` is G^T, `.dense()` forms G.
    """

    def __init__(self, left: torch.Tensor, right: torch.Tensor):
        self.left, self.right = left, right

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.left.shape[:-2], self.left.shape[-1], self.right.shape[-1]))

    @property
    def rows(self) -> int:
        return self.left.shape[-2]

    @property
    def device(self) -> torch.device:
        return self.left.device

    @property
    def dtype(self) -> torch.dtype:
        return self.left.dtype

    @property
    def mT(self) -> LowRankProduct:
        return LowRankProduct(self.right, self.left)

    def __matmul__(self, M: torch.Tensor) -> torch.Tensor:
        # (right M)^T left, transposed back: (k, out) row-major is (out, k) column-major, as LAPACK takes it, and
        # both products read the factors row by row (left^T (right M) ran at half the speed, 1 CPU thread)
        return ((self.right @ M).mT @ self.left).mT

    def float(self) -> LowRankProduct:
        return LowRankProduct(self.left.float(), self.right.float())

    def dense(self) -> torch.Tensor:
        return self.left.mT @ self.right


def dense(G: torch.Tensor | LowRankProduct) -> torch.Tensor:
    """G as a tensor, formed if it is a LowRankProduct."""
    return G.dense() if isinstance(G, LowRankProduct) else G


class LayerGradient:
    """One layer's gradient summed over the calls and batches so far: (dY, X) row blocks, and G itself once the
    blocks would outgrow it (so a layer never holds more than its gradient's size across batches)."""

    def __init__(self, out_features: int, in_features: int):
        self.out_features, self.in_features = out_features, in_features
        self.blocks: list[tuple[torch.Tensor, torch.Tensor]] = []  # (dY (rows, out), X (rows, in)), fp32
        self.formed: torch.Tensor | None = None  # (out, in)

    def add(self, dY: torch.Tensor, X: torch.Tensor) -> None:
        self.blocks.append((dY.reshape(-1, self.out_features).float(), X.reshape(-1, self.in_features).float()))

    def fold_if_larger(self) -> None:
        """Form G once the blocks hold more numbers than G: the blocks' memory stays under G's."""
        rows = sum(dY.shape[0] for dY, _ in self.blocks)
        if rows * (self.out_features + self.in_features) > self.out_features * self.in_features:
            product = self.product().dense()
            self.formed = product if self.formed is None else self.formed + product
            self.blocks = []

    def product(self) -> LowRankProduct:
        if len(self.blocks) == 1:
            return LowRankProduct(*self.blocks[0])
        return LowRankProduct(torch.cat([dY for dY, _ in self.blocks]), torch.cat([X for _, X in self.blocks]))

    def result(self) -> torch.Tensor | LowRankProduct:
        """G: the product of the blocks, or a tensor if part of it was already formed."""
        if self.formed is None:
            return self.product()
        return self.formed + self.product().dense() if self.blocks else self.formed


class GradientCapture:
    """Hooks on the target layers that sum each layer's gradient in a LayerGradient, and hand a layer over
    (hand_over(name, gradient)) as soon as its last dY of the last batch arrives.

    A forward hook on each target keeps its input X and puts a hook on its output that receives dY in the backward
    pass; X is released as soon as its dY has arrived. A layer that runs more than once per batch (shared weights)
    is complete when as many dY as calls have arrived.

        with GradientCapture(targets, num_batches, hand_over) as capture:
            for i in range(num_batches): capture.start_batch(last=...); loss.backward()
    """

    def __init__(self, targets: dict[str, nn.Module], num_batches: int,
                 hand_over: Callable[[str, LayerGradient], None]):
        self.targets, self.num_batches, self.hand_over = targets, num_batches, hand_over
        self.gradients = {name: LayerGradient(*linear_shape(layer)) for name, layer in targets.items()}
        self.calls = dict.fromkeys(targets, 0)  # forward calls of each layer in this batch
        self.arrived = dict.fromkeys(targets, 0)  # their dY received so far in this batch
        self.handed_over: set[str] = set()
        self.last_batch = False
        self.hooks = []

    def __enter__(self) -> GradientCapture:
        self.hooks = [layer.register_forward_hook(self._capture_hook(name), with_kwargs=True)
                      for name, layer in self.targets.items()]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()

    def start_batch(self, last: bool) -> None:
        self.last_batch = last
        self.calls.update(dict.fromkeys(self.calls, 0))
        self.arrived.update(dict.fromkeys(self.arrived, 0))

    def missing(self) -> list[str]:
        """The targets not handed over: no gradient reached them."""
        return [name for name in self.targets if name not in self.handed_over]

    def _capture_hook(self, name: str):
        def capture(module, args, kwargs, output):
            if not torch.is_grad_enabled():
                return output
            X = args[0] if args else next(iter(kwargs.values()))
            if not output.requires_grad:  # nothing before it needs a gradient: connect it to the backward pass
                output = output + torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
            self.calls[name] += 1
            held = [X]  # released as soon as dY has arrived, not when the whole backward pass ends
            version = X._version
            output.register_hook(lambda dY: self._receive(name, held.pop(), version, dY))  # dY of this very output
            return output
        return capture

    def _receive(self, name: str, X: torch.Tensor, version: int, dY: torch.Tensor) -> None:
        if X._version != version:
            raise ValueError(f"the input of layer {name!r} was changed in place after the layer ran, so its gradient "
                             "cannot be taken from it; make that operation out of place or drop the layer from target_modules")
        gradient = self.gradients[name]
        gradient.add(dY / self.num_batches if self.num_batches > 1 else dY, X)
        self.arrived[name] += 1
        if self.arrived[name] < self.calls[name]:
            return  # the layer runs again (shared weights): more of its rows are on the way
        if not self.last_batch:
            gradient.fold_if_larger()
            return
        del self.gradients[name]
        self.hand_over(name, gradient)
        self.handed_over.add(name)


class BatchSteps:
    """A train_step(model) -> loss over an iterable of batches: each call takes the next batch (moved to `device`,
    under autocast when autocast_dtype is set) and fails with the fix when there is none."""

    def __init__(self, data, num_batches: int, device: torch.device, loss_fn: Callable | None, autocast_dtype):
        self.batches, self.num_batches, self.taken = iter(data), num_batches, 0
        self.device, self.loss_fn, self.autocast_dtype = device, loss_fn, autocast_dtype

    def __call__(self, model: nn.Module) -> torch.Tensor:
        try:
            batch = next(self.batches)
        except StopIteration:
            raise ValueError(f"data gave only {self.taken} batches but num_grad_batches={self.num_batches}; "
                             "pass more batches or lower num_grad_batches") from None
        self.taken += 1
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            return batch_loss(model, to_device(batch, self.device), self.loss_fn)


@contextmanager
def modules_in_mode(model: nn.Module, train: bool) -> Iterator[None]:
    """Every module in train mode (or eval mode) inside the block; each module's own mode is restored after."""
    modes = {module: module.training for module in model.modules()}
    try:
        model.train(train)
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def estimate_gradients(model: nn.Module, targets: dict[str, nn.Module], data, num_batches: int,
                       on_gradient: Callable[[str, torch.Tensor | LowRankProduct], None], *, loss_fn=None,
                       autocast_dtype=None, cache_dir: str | None = None, train_mode: bool = True,
                       timings: dict | None = None) -> None:
    """Call on_gradient(name, G) once per target, G (out, in) fp32 = mean of dLoss/dW over exactly num_batches,
    as a LowRankProduct dY^T X (a tensor if it was formed: see LayerGradient, and always with a cache_dir).

    `data` is an iterable of batches, or a callable train_step(model) -> loss called num_batches times. No
    parameter requires grad while this runs (all flags are restored after); GradientCapture's hooks take the
    gradient. On the last batch a layer is handed over as soon as its last dY arrives, and its rows are released
    right after. timings gets grad_s (the passes) and svd_s (the time spent handing over: on_gradient's work).

    train_mode: the pass runs with every module in train mode (dropout on, as the GiVA authors take the
    gradient; the draw follows torch's global seed) or, if False, in eval mode. Each module's own mode is
    restored after.
    """
    timings = {} if timings is None else timings
    timings.update(grad_s=0.0, svd_s=0.0)
    device = next(model.parameters()).device
    cache = GradientCache(cache_dir, targets, num_batches, train_mode) if cache_dir else None
    if cache is not None and cache.is_complete():
        for name in targets:
            start = time.perf_counter()
            on_gradient(name, cache.load(name).to(device))
            synchronize(device)
            timings["svd_s"] += time.perf_counter() - start
        return

    def hand_over(name: str, gradient: LayerGradient) -> None:
        start = time.perf_counter()
        G = gradient.result()
        if cache is not None:
            G = dense(G)
            cache.save(name, G)
        on_gradient(name, G)
        synchronize(device)
        timings["svd_s"] += time.perf_counter() - start

    synchronize(device)
    start = time.perf_counter()
    with frozen(model), modules_in_mode(model, train_mode), GradientCapture(targets, num_batches, hand_over) as capture:
        if cache is not None:
            cache.open_for_writing()
        train_step = data if callable(data) else BatchSteps(data, num_batches, device, loss_fn, autocast_dtype)
        for i in range(num_batches):  # exactly num_batches: never pulls one more
            capture.start_batch(last=i == num_batches - 1)
            with torch.enable_grad():  # also when apply_adapter runs under torch.no_grad()
                loss = train_step(model)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                    raise ValueError("the loss must be a scalar tensor that depends on the outputs of the target layers")
                loss.backward()
                del loss
        missing = capture.missing()
        if missing:
            raise ValueError(f"layers {missing[:3]} got no gradient; are they on the path to the loss? drop them from target_modules")
    synchronize(device)
    timings["grad_s"] = time.perf_counter() - start - timings["svd_s"]
    if cache is not None:
        cache.mark_complete()
