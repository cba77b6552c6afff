"""Costs that do not depend on the machine: FLOPs, tensor bytes by category and operator-level counts, of one
training step and of init.

    costs = trace_costs(model, step, external=(optimizer, batch))   # step(): one training step
    costs.flops, costs.adapter_flops, costs.peak_bytes, costs.by_category, costs.ops.copies

PyTorch's own counters do the work: torch.utils.flop_counter.FlopCounterMode counts
the FLOPs of matmuls, attention and convolutions (per module, so the adapters' own
share is the adapter layers' count minus their base layers'), and
torch.distributed._tools.mem_tracker.MemTracker follows every tensor's storage from
creation to release and files it as parameter, buffer, gradient, optimizer state,
activation (made in forward) or temporary (made in backward). Both work on real
tensors and under FakeTensorMode (shapes only), so `run_bench.py estimate` uses the
same code to predict the costs of models that do not fit here. The tracker's dispatch also counts every operator
call, copy, allocation and synchronisation (bench/measure/operators.py): the same pass, no second run.
"""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import is_fake
from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop, sdpa_flop

from giva.layer import AdapterLayer

from .operators import OpCounts, cuda_counts

aten = torch.ops.aten

# MemTracker's categories -> the result columns' (bench/columns.py TENSOR_CATEGORIES). Tensors tracked from
# outside the step (the batch) are "Other": inputs, counted with the activations.
CATEGORIES = {
    _MemRefType.PARAM: "tensor_params_bytes", _MemRefType.BUFFER: "tensor_buffers_bytes",
    _MemRefType.GRAD: "tensor_grads_bytes", _MemRefType.OPT: "tensor_optimizer_bytes",
    _MemRefType.ACT: "tensor_activations_bytes", _MemRefType.OTH: "tensor_activations_bytes",
    _MemRefType.TEMP: "tensor_temp_bytes",
}


# --- FLOP formulas torch's counter lacks ------------------------------------------

# CPU attention (SDPA's flash kernel for CPU) costs what the CUDA kernels cost: two batched matmuls forward,
# and torch's backward formula for them (both formulas already take tensors: get_raw).
register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu, get_raw=True)(sdpa_flop)
register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)(sdpa_backward_flop)


@register_flop_formula(aten.linalg_qr)
def qr_flop(a_shape, *args, **kwargs) -> int:
    """Householder QR of (m, n), m >= n, with Q formed: 2mn^2 - 2n^3/3 twice (Golub and Van Loan, 5.2.1)."""
    m, n = a_shape[-2], a_shape[-1]
    m, n = max(m, n), min(m, n)
    batch = int(torch.Size(a_shape[:-2]).numel())
    return batch * 2 * (2 * m * n * n - 2 * n**3 // 3)


@register_flop_formula(aten._linalg_svd)
def svd_flop(a_shape, *args, **kwargs) -> int:
    """Thin SVD of (m, n) with U and V: 4m^2n + 8mn^2 + 9n^3 for m >= n (Golub and Van Loan, Fig. 8.6.1)."""
    m, n = a_shape[-2], a_shape[-1]
    m, n = max(m, n), min(m, n)
    batch = int(torch.Size(a_shape[:-2]).numel())
    return batch * (4 * m * m * n + 8 * m * n * n + 9 * n**3)


# --- the tracker --------------------------------------------------------------------


class FrozenSafeMemTracker(MemTracker):
    """MemTracker for adapted models: gradient hooks on trainable parameters only.

    MemTracker registers a gradient hook on every parameter of every module it meets, and
    torch refuses a hook on a tensor that does not require grad: a frozen base model. Here
    every parameter is still tracked (as a parameter), hooks go on those that require grad,
    and a post-accumulate hook whose gradient was already taken away (GiVA's init frees
    each layer's gradient in its own hook) is skipped. A root module run several times
    (GiVA's init over several gradient batches) starts a fresh set of per-module stats each
    time; the tracked bytes and the peak carry on. Only the overall peak is kept (see _update_peak_stats). Every
    operator it sees is also counted into `ops` (OpCounts).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops = OpCounts()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if out is not NotImplemented:
            self.ops.record(func, args, out)
        return out

    def _track_module_params_and_buffers(self, module: nn.Module, install_grad_hooks: bool = True) -> tuple[int, int]:
        memory = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        if install_grad_hooks:
            for param in module.parameters():
                if param.requires_grad and self._param_to_grad_hook_handles.get(param) is None:
                    self._param_to_grad_hook_handles[param] = (
                        param.register_hook(self._track_grad),
                        param.register_post_accumulate_grad_hook(lambda p: self._track_grad(p.grad)))
        return memory

    def _track_grad(self, grad: torch.Tensor | None) -> None:
        if grad is not None:
            self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

    def _update_peak_stats(self, peak_state) -> None:
        """The step's peak only: MemTracker also keeps every module's own peak, walking all modules after every op
        (60% of the trace time of a 12-layer model); nothing here reads those."""
        for device, snapshot in self._curr_mem_snap.items():
            if self._peak_mem.get(device, 0) < snapshot[_TOTAL_KEY]:
                self._peak_mem[device] = snapshot[_TOTAL_KEY]
                self._peak_mem_snap[device] = dict(snapshot)

    def _pre_fw_hook(self, module: nn.Module, inputs) -> None:
        name = self._mod_tracker.get_known_fqn(module)
        again = module in self.memory_tracking and not self._mod_tracker.is_bw
        if again and set(self._mod_tracker.parents) - {name} == {"Global"}:
            self.reset_mod_stats()
        super()._pre_fw_hook(module, inputs)


class ScalarsReadAsOne(TorchDispatchMode):
    """Under FakeTensorMode a tensor has no values, so reading one (loss.item(), `if tensor.any()`, AdamW's step
    count) cannot be answered. Inside this mode such a read answers 1: value checks pass (GiVA's 'is the gradient
    finite and non-zero'), and what depends on the value (AdamW's bias correction) only changes values, never
    shapes or bytes."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is aten._local_scalar_dense.default:
            return True if args[0].dtype == torch.bool else 1
        return func(*args, **(kwargs or {}))


# --- measuring ----------------------------------------------------------------------


@dataclass
class Costs:
    """FLOPs and tensor bytes of one traced call (a training step or an adapter's init)."""

    flops: int = 0
    adapter_flops: int = 0  # inside adapter layers, beyond their base layers
    peak_bytes: int = 0  # tensor bytes alive at the peak
    by_category: dict[str, int] = field(default_factory=dict)  # column -> bytes at the peak
    ops: OpCounts = field(default_factory=OpCounts)  # operator calls, copies, allocations, synchronisations
    trace_s: float = 0.0


def trace_costs(model: nn.Module, call: Callable[[], object], external=()) -> Costs:
    """Run call() once under the FLOP counter and the tensor tracker; `external`: optimizers and tensors made
    before the call that it uses (the optimizer's state, the batch)."""
    start = time.perf_counter()
    tracker = FrozenSafeMemTracker()
    tracker.track_external(model, *external)
    counter = FlopCounterMode(display=False)
    on_cuda = any(p.device.type == "cuda" and not is_fake(p) for p in model.parameters())
    gc.collect()  # no garbage from before; and no collection in the middle, whose timing would move the peak
    gc.disable()
    try:
        with cuda_counts(tracker.ops, on_cuda), tracker, counter, warnings.catch_warnings():
            # ModTracker notes a module gone before its backward hook ran (a dropped intermediate module); harmless
            warnings.filterwarnings("ignore", message="Module is None")
            call()
    finally:
        gc.enable()
    snapshot = tracker.get_tracker_snapshot("peak")
    costs = Costs(flops=counter.get_total_flops(), adapter_flops=adapter_flops(model, counter), ops=tracker.ops)
    if snapshot:
        device_snapshot = max(snapshot.values(), key=lambda s: s[_TOTAL_KEY])  # one device per point
        costs.peak_bytes = int(device_snapshot[_TOTAL_KEY])
        costs.by_category = {column: 0 for column in CATEGORIES.values()}
        for kind, column in CATEGORIES.items():
            costs.by_category[column] += int(device_snapshot.get(kind, 0))
    costs.trace_s = time.perf_counter() - start
    return costs


def adapter_flops(model: nn.Module, counter: FlopCounterMode) -> int:
    """FLOPs inside the adapter layers minus their base layers', from the counter's per-module counts."""
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__  # the counter names modules from the root's class name: Model.layer.0.q_proj
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            key = f"{root}.{name}"
            total += counts.get(key, 0) - counts.get(f"{key}.base_layer", 0)
    return total
