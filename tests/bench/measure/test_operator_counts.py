"""Operator-level counts of a training step (bench/measure/operators.py, in the cost trace of counters.py): six
planted efficiency regressions, each traced for real on llama-2m with LoRA and named by an exact count that moves
by the amount the change implies. The planted code replaces the adapter layer's forward (giva/layer.py
AdapterLayer.forward: base output plus delta) for the trace; tests/bench/track/test_planted_commits.py commits two
of them and follows them through `counts`, `compare` and `history`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.columns import by_op_counts
from bench.config.train import TrainSettings
from bench.measure.counters import trace_costs
from bench.run.train import make_optimizer, training_step
from bench.tasks import setup_task
from giva import apply_adapter, make_config
from giva.layer import AdapterLayer

BATCH, SEQ = 2, 16
ATTENTION = "_scaled_dot_product_flash_attention_for_cpu"  # SDPA's kernel on CPU


pytestmark = pytest.mark.usefixtures("single_thread")


def traced_step(dtype: str = "float32", attention: str | None = None, forward=None):
    """(Costs of one traced LoRA training step of llama-2m, [(input bytes, input dtype, requires grad, out
    features) of each adapted layer's call]); forward: the adapter layer's forward for the trace."""
    setup = setup_task("profile", "llama-2m", batch_size=BATCH, seq_len=SEQ, seed=0, dtype=dtype)
    if attention:
        setup.model.set_attn_implementation(attention)
    model = apply_adapter(setup.model, make_config("lora", r=4))
    batch = next(setup.train_batches)
    opt = make_optimizer(model, [], TrainSettings(steps=1), "lora")
    step = lambda: training_step(model, batch, setup.loss_fn, opt, 1.0)  # noqa: E731
    calls = []
    layers = [m for m in model.modules() if isinstance(m, AdapterLayer)]
    original = AdapterLayer.forward
    try:
        AdapterLayer.forward = forward or original
        step()  # AdamW's state made (and a reused buffer): the traced step is a steady one, as a point's
        hooks = [m.register_forward_pre_hook(lambda m, args: calls.append(
            (args[0].numel() * args[0].element_size(), args[0].dtype, args[0].requires_grad, m.out_features,
             m.in_features))) for m in layers]
        costs = trace_costs(model, step, (opt.optimizer, batch))
    finally:
        AdapterLayer.forward = original
        for h in hooks:
            h.remove()
    assert len(calls) == len(layers) > 0
    return costs, calls


def moved(base, planted) -> dict:
    """Every operator-level count that differs: {name: planted - base}, by operator too ('op:mm')."""
    fields = ("aten_ops", "copies", "copy_bytes", "dtype_conversions", "alloc_count", "alloc_bytes", "syncs")
    out = {f: getattr(planted.ops, f) - getattr(base.ops, f) for f in fields}
    ops_base, ops_planted = by_op_counts(base.ops.by_op_text()), by_op_counts(planted.ops.by_op_text())
    out.update({f"op:{op}": ops_planted.get(op, 0) - ops_base.get(op, 0) for op in {*ops_base, *ops_planted}})
    return {name: n for name, n in out.items() if n}


def test_the_counts_of_a_step_repeat_exactly():
    (a, _), (b, _) = traced_step(), traced_step()
    assert a.ops.by_op_text() == b.ops.by_op_text() and a.ops.aten_ops > 0
    assert (a.ops.copies, a.ops.copy_bytes, a.ops.alloc_count, a.ops.alloc_bytes, a.ops.syncs) == (
        b.ops.copies, b.ops.copy_bytes, b.ops.alloc_count, b.ops.alloc_bytes, b.ops.syncs)
    assert a.ops.cuda_syncs is None and a.ops.cuda_kernels is None  # CUDA only


def copy_input(self, x):
    x = x.clone()  # planted: a copy of each adapted layer's input
    result = self.base_layer(x)
    return result + self.delta(self.dropout(x)).to(result.dtype)


def test_a_copy_of_each_adapted_layer_s_input_is_named_by_its_copies_and_bytes():
    (base, calls), (planted, _) = traced_step(), traced_step(forward=copy_input)
    layers, inputs = len(calls), sum(c[0] for c in calls)
    # the clone's backward passes the gradient on: nothing more in the backward
    assert moved(base, planted) == {"aten_ops": layers, "op:clone": layers, "copies": layers, "copy_bytes": inputs,
                                    "alloc_count": layers, "alloc_bytes": inputs}
    assert planted.flops == base.flops


def base_in_fp32(self, x):
    # planted: the bf16 base matmul upcast to fp32 and back
    result = F.linear(x.float(), self.base_layer.weight.float()).to(x.dtype)
    return result + self.delta(self.dropout(x)).to(result.dtype)


def test_an_fp32_upcast_of_a_bf16_matmul_is_named_by_its_dtype_conversions():
    (base, calls), (planted, _) = traced_step("bfloat16"), traced_step("bfloat16", forward=base_in_fp32)
    assert all(c[1] == torch.bfloat16 for c in calls)
    with_grad = sum(c[2] for c in calls)  # layers whose input needs a gradient (the first block's q, k, v do not)
    # forward: x and W up, the output down; backward, where the input needs a gradient (and so the base output):
    # the output's gradient up, the input's down
    conversions = 3 * len(calls) + 2 * with_grad
    written = 0
    for in_bytes, _, grad, out, in_ in calls:
        x, y = in_bytes // 2, in_bytes // 2 // in_ * out  # elements of the bf16 input (tokens, in) and output
        written += 4 * x + 4 * out * in_ + 2 * y + (4 * y + 2 * x if grad else 0)
    changed = moved(base, planted)
    assert (changed["dtype_conversions"], changed["copies"], changed["op:_to_copy"]) == (conversions,) * 3
    assert changed["copy_bytes"] == written


def finite_check(self, x):
    if not torch.isfinite(x).all():  # planted: a value check per layer, a host read of a tensor
        raise ValueError("the input is not finite")
    result = self.base_layer(x)
    return result + self.delta(self.dropout(x)).to(result.dtype)


def test_an_item_per_layer_in_the_forward_is_named_by_its_synchronisations():
    (base, calls), (planted, _) = traced_step(), traced_step(forward=finite_check)
    changed = moved(base, planted)
    assert changed["syncs"] == changed["op:_local_scalar_dense"] == len(calls)
    assert changed["op:all"] == changed["op:abs"] == len(calls)  # isfinite(x): x == x and |x| != inf


def with_scale(fresh: bool):
    def forward(self, x):
        result = self.base_layer(x)
        scale = None if fresh else self.__dict__.get("scale")  # planted: a new tensor every step
        if scale is None:
            scale = self.__dict__["scale"] = torch.ones(self.out_features, dtype=result.dtype)
        return result * scale + self.delta(self.dropout(x)).to(result.dtype)
    return forward


def test_a_new_allocation_per_step_where_a_buffer_was_reused_is_named_by_its_allocations():
    (reused, calls), (fresh, _) = traced_step(forward=with_scale(False)), traced_step(forward=with_scale(True))
    changed = moved(reused, fresh)
    assert changed["alloc_count"] == len(calls)
    assert changed["alloc_bytes"] == sum(4 * c[3] for c in calls)  # one fp32 (out,) vector per layer call


def loop_over_batch(self, x):
    result = self.base_layer(x)
    # planted: the delta example by example, in a Python loop
    return result + torch.cat([self.delta(example[None]) for example in self.dropout(x)]).to(result.dtype)


def test_a_python_loop_over_the_batch_is_named_by_its_operator_calls():
    (base, calls), (planted, _) = traced_step(), traced_step(forward=loop_over_batch)
    changed = moved(base, planted)
    assert planted.flops == base.flops  # the same work, in BATCH pieces
    assert changed["op:unbind"] == changed["op:cat"] == len(calls)
    # LoRA's delta: two matmuls forward; backward the two weight gradients, and the input gradients where needed
    mm_per_layer = [2 + 2 + 1 + g for _, _, g, _, _ in calls]
    assert changed["op:mm"] == (BATCH - 1) * sum(mm_per_layer)
    assert changed["aten_ops"] > (BATCH - 1) * sum(mm_per_layer)


def test_eager_attention_in_place_of_sdpa_is_named_by_its_operators():
    (sdpa, _), (eager, _) = traced_step(attention="sdpa"), traced_step(attention="eager")
    layers = by_op_counts(sdpa.ops.by_op_text())[ATTENTION]  # one attention call per decoder layer
    changed = moved(sdpa, eager)
    assert changed[f"op:{ATTENTION}"] == -layers and changed["op:_softmax"] == layers
    assert changed["alloc_bytes"] > 0  # the (B, heads, T, T) scores are made, forward and backward
