"""Operator-level counts of one traced call: aten operator calls, copies and dtype conversions, allocations,
host-device synchronisations, and on CUDA kernel launches.

    counts = OpCounts()
    counts.record(func, args, out)      # from the cost trace's dispatch mode (counters.FrozenSafeMemTracker), per op
    counts.aten_ops, counts.by_op_text()  # 1234, "mm:96;add:48;..."

What the dispatcher sees below autograd: composite operators arrive decomposed (`contiguous` as `clone` when it
copies, `item` as `_local_scalar_dense`, `to` as `_to_copy`), so the counts are those of the kernels torch runs,
the same on real tensors and under FakeTensorMode, and the same on CPU and CUDA up to the device's own kernels.
They depend on the torch version (its decompositions), which the row records (counts_torch).

- a copy: copy_, _to_copy, clone and their kin; its bytes are the bytes it writes (its output's); a dtype
  conversion is a copy whose output dtype differs from its source's;
- an allocation: every tensor an operator returns that its schema does not declare an alias of an input (a new
  storage), whether or not it outlives the step; its bytes are the storage's;
- a synchronisation: an operator whose result depends on tensor values on the host (torch's tags
  data_dependent_output, dynamic_output_shape: `.item()`, `nonzero`, `masked_select`, ...) and a copy from a
  device to the CPU (`.cpu()`); on CUDA also what torch.cuda.set_sync_debug_mode reports (cuda_syncs);
- on CUDA, the kernels launched (torch.profiler's device events).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch

aten = torch.ops.aten

COPY_OPS = {aten.copy_, aten._to_copy, aten.clone, aten.copy, aten._copy_from, aten._copy_from_and_resize}
SYNC_TAGS = {torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape}
CUDA_SYNC_WARNING = "called a synchronizing CUDA operation"  # torch.cuda.set_sync_debug_mode("warn")'s message


@dataclass(frozen=True)
class OpKind:
    """What counting needs of one operator overload, read once from its schema and tags."""

    name: str  # the overload packet's name: "mm", "add_", "_to_copy"
    copy: bool
    sync: bool
    fresh: tuple[int, ...]  # indices of the returns that are new tensors (no alias annotation)


def op_kind(func) -> OpKind:
    returns = func._schema.returns
    fresh = tuple(i for i, r in enumerate(returns) if r.alias_info is None and "Tensor" in str(r.type))
    return OpKind(func.overloadpacket.__name__, func.overloadpacket in COPY_OPS,
                  bool(SYNC_TAGS.intersection(func.tags)), fresh)


def tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for t in value if isinstance(t, torch.Tensor)] if isinstance(value, (list, tuple)) else []


@dataclass
class OpCounts:
    """The operator-level counts of one traced call (a training step or an adapter's init); its fields and
    aten_ops are the columns of bench/columns.py OPERATOR_MEANING."""

    ops: Counter = field(default_factory=Counter)  # operator name -> calls
    copies: int = 0
    copy_bytes: int = 0  # bytes the copies wrote
    dtype_conversions: int = 0
    alloc_count: int = 0
    alloc_bytes: int = 0
    syncs: int = 0
    cuda_syncs: int | None = None  # CUDA only: what set_sync_debug_mode saw
    cuda_kernels: int | None = None  # CUDA only: kernels launched
    kinds: dict = field(default_factory=dict, repr=False)  # func -> OpKind (None: not counted), a cache

    @property
    def aten_ops(self) -> int:
        return sum(self.ops.values())

    def record(self, func, args: tuple, out) -> None:
        """One operator call and what it returned; operators outside aten (prim.device, a fake tensor's metadata
        query; the profiler's record_function marks) are no kernels and are not counted."""
        if func not in self.kinds:
            self.kinds[func] = op_kind(func) if func.namespace == "aten" else None
        kind = self.kinds[func]
        if kind is None:
            return
        self.ops[kind.name] += 1
        results = out if isinstance(out, tuple) else (out,)
        for i in kind.fresh:
            for t in tensors(results[i]) if i < len(results) else []:
                self.alloc_count += 1
                self.alloc_bytes += t.untyped_storage().nbytes()
        if kind.copy:
            written = args[0] if kind.name == "copy_" else results[0]
            source = args[1] if kind.name in ("copy_", "copy") else args[0]
            self.copies += 1
            self.copy_bytes += written.numel() * written.element_size()
            self.dtype_conversions += written.dtype != source.dtype
            self.syncs += written.device.type == "cpu" and source.device.type != "cpu"
        self.syncs += kind.sync

    def by_op_text(self) -> str:
        """'mm:96;add:48;...': every operator called, most calls first (ties by name); columns.by_op_counts reads it."""
        return ";".join(f"{name}:{n}" for name, n in sorted(self.ops.items(), key=lambda item: (-item[1], item[0])))


@contextlib.contextmanager
def cuda_counts(counts: OpCounts, on_cuda: bool):
    """Around a traced call on real CUDA tensors: the synchronisations set_sync_debug_mode reports and the kernels
    the profiler sees, into counts; elsewhere (CPU, FakeTensorMode) nothing, and those counts stay empty."""
    if not on_cuda:
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    previous = torch.cuda.get_sync_debug_mode()
    with profile(activities=[ProfilerActivity.CUDA]) as profiler, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every synchronisation, not the first per call site
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)
            torch.cuda.synchronize()
    counts.cuda_syncs = sum(CUDA_SYNC_WARNING in str(w.message) for w in caught)
    counts.cuda_kernels = sum(1 for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA)
