"""The averaged task gradient of the target weights, handed over one layer at a time, as factors.

A linear layer's weight gradient over a batch is a sum of outer products, G = dY^T X: X (rows, in) holds the
layer's inputs and dY (rows, out) the loss's gradients at its outputs, one row per token. Hooks capture both
during a backward pass that computes no weight gradient at all (every weight stays frozen, as in a LoRA step),
and the gradient is handed over as that product, unformed; giva.giva decides whether forming it pays.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from .targets import linear_shape


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """No parameter of the model requires grad inside the block; each one's flag is restored after."""
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        model.requires_grad_(False)
        yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)


def batch_loss(model: nn.Module, batch, loss_fn: Callable | None) -> torch.Tensor:
    """model(**batch) for a dict, model(*batch) for a tuple, else model(batch); loss from loss_fn or the output."""
    if isinstance(batch, Mapping):
        output = model(**batch)
    elif isinstance(batch, (list, tuple)):
        output = model(*batch)
    else:
        output = model(batch)
    if loss_fn is not None:
        return loss_fn(output, batch)
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, Mapping):
        loss = output.get("loss")
    if loss is None:
        raise ValueError("the model's output has no loss; put labels in the batches or pass loss_fn=(output, batch) -> loss")
    return loss


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


def estimate_gradients(model: nn.Module, targets: dict[str, nn.Module], data, num_batches: int,
                       on_gradient: Callable[[str, torch.Tensor | LowRankProduct], None], *, loss_fn=None,
                       autocast_dtype=None, cache_dir: str | None = None, train_mode: bool = True,
                       timings: dict | None = None) -> None:
    """Call on_gradient(name, G) once per target, G (out, in) fp32 = mean of dLoss/dW over exactly num_batches,
    as a LowRankProduct dY^T X (a tensor if it was formed: see LayerGradient, and always with a cache_dir).

    `data` is an iterable of batches, or a callable train_step(model) -> loss called num_batches times. No
    parameter requires grad while this runs (all flags are restored after): a forward hook on each target
    keeps its input X and puts a hook on its output that receives dY in the backward pass. On the last batch
    a layer is handed over as soon as its last dY arrives, and its rows are released right after.

    train_mode: the pass runs with every module in train mode (dropout on, as the GiVA authors take the
    gradient; the draw follows torch's global seed) or, if False, in eval mode. Each module's own mode is
    restored after.
    """
    timings = {} if timings is None else timings
    timings.update(grad_s=0.0, svd_s=0.0)
    device = next(model.parameters()).device
    if cache_dir and _cache_matches(cache_dir, targets, num_batches, train_mode):
        for name in targets:
            start = time.perf_counter()
            on_gradient(name, load_file(os.path.join(cache_dir, f"{name}.safetensors"))["grad"].to(device))
            synchronize(device)
            timings["svd_s"] += time.perf_counter() - start
        return

    modes = {module: module.training for module in model.modules()}
    gradients = {name: LayerGradient(*linear_shape(layer)) for name, layer in targets.items()}
    calls = dict.fromkeys(targets, 0)  # forward calls of each layer in this batch
    arrived = dict.fromkeys(targets, 0)  # their dY received so far in this batch
    handed_over: set[str] = set()
    last_batch = False

    def receive(name: str, X: torch.Tensor, version: int, dY: torch.Tensor) -> None:
        if X._version != version:
            raise ValueError(f"the input of layer {name!r} was changed in place after the layer ran, so its gradient "
                             "cannot be taken from it; make that operation out of place or drop the layer from target_modules")
        gradient = gradients[name]
        gradient.add(dY / num_batches if num_batches > 1 else dY, X)
        arrived[name] += 1
        if arrived[name] < calls[name]:
            return  # the layer runs again (shared weights): more of its rows are on the way
        if not last_batch:
            gradient.fold_if_larger()
            return
        start = time.perf_counter()
        G = gradient.result()
        del gradients[name]
        if cache_dir:
            G = dense(G)
            save_file({"grad": G.contiguous().cpu()}, os.path.join(cache_dir, f"{name}.safetensors"))
        on_gradient(name, G)
        handed_over.add(name)
        synchronize(device)
        timings["svd_s"] += time.perf_counter() - start

    def make_capture(name: str):
        def capture(module, args, kwargs, output):
            if not torch.is_grad_enabled():
                return output
            X = args[0] if args else next(iter(kwargs.values()))
            if not output.requires_grad:  # nothing before it needs a gradient: connect it to the backward pass
                output = output + torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
            calls[name] += 1
            held = [X]  # released as soon as dY has arrived, not when the whole backward pass ends
            version = X._version
            output.register_hook(lambda dY: receive(name, held.pop(), version, dY))  # dY of this very output
            return output
        return capture

    hooks = []
    synchronize(device)
    start = time.perf_counter()
    with frozen(model):
        try:
            model.train(train_mode)
            hooks = [layer.register_forward_hook(make_capture(name), with_kwargs=True) for name, layer in targets.items()]
            if cache_dir:  # meta.json marks a complete cache: drop the old one before overwriting its files
                os.makedirs(cache_dir, exist_ok=True)
                if os.path.exists(os.path.join(cache_dir, "meta.json")):
                    os.remove(os.path.join(cache_dir, "meta.json"))
            batches = None if callable(data) else iter(data)
            for i in range(num_batches):  # exactly num_batches: never pulls one more
                last_batch = i == num_batches - 1
                calls.update(dict.fromkeys(calls, 0))
                arrived.update(dict.fromkeys(arrived, 0))
                with torch.enable_grad():  # also when apply_adapter runs under torch.no_grad()
                    if batches is None:
                        loss = data(model)
                    else:
                        try:
                            batch = next(batches)
                        except StopIteration:
                            raise ValueError(f"data gave only {i} batches but num_grad_batches={num_batches}; "
                                             "pass more batches or lower num_grad_batches") from None
                        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                            loss = batch_loss(model, to_device(batch, device), loss_fn)
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                        raise ValueError("the loss must be a scalar tensor that depends on the outputs of the target layers")
                    loss.backward()
                    del loss
            missing = [name for name in targets if name not in handed_over]
            if missing:
                raise ValueError(f"layers {missing[:3]} got no gradient; are they on the path to the loss? drop them from target_modules")
        finally:
            for hook in hooks:
                hook.remove()
            for module, training in modes.items():
                module.training = training
    synchronize(device)
    timings["grad_s"] = time.perf_counter() - start - timings["svd_s"]
    if cache_dir:
        shapes = {name: list(linear_shape(layer)) for name, layer in targets.items()}
        with open(os.path.join(cache_dir, "meta.json"), "w") as f:
            json.dump({"num_batches": num_batches, "train_mode": train_mode, "layers": shapes}, f)


def _cache_matches(cache_dir: str, targets: dict[str, nn.Module], num_batches: int, train_mode: bool) -> bool:
    """A cache is used only when complete and made for the same layers, shapes, batch count and mode."""
    try:
        with open(os.path.join(cache_dir, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    shapes = {name: list(linear_shape(layer)) for name, layer in targets.items()}
    return (meta.get("num_batches") == num_batches and meta.get("train_mode") == train_mode
            and meta.get("layers") == shapes)
