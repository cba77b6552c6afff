"""Bad inputs raise errors that name the problem, and a failed apply leaves the model as it was."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from giva import (GivaConfig, LoraConfig, VeraConfig, adapter_stats, apply_adapter, make_config, merge_adapter,
                  set_adapter_enabled, unload_adapter)

pytestmark = pytest.mark.usefixtures("single_thread")


class TwoBranches(nn.Module):
    """`unused` is off the loss path: its gradient is all zeros (scaled by 0) or missing (never called)."""

    def __init__(self, call_unused: bool):
        super().__init__()
        torch.manual_seed(0)
        self.used = nn.Linear(8, 8)
        self.unused = nn.Linear(8, 8)
        self.call_unused = call_unused

    def forward(self, x):
        y = self.used(x)
        return y + 0 * self.unused(x) if self.call_unused else y


def squared(output, batch):
    return output.pow(2).sum()


@pytest.mark.parametrize("make, match", [
    (lambda: make_config("dora"), "unknown method 'dora'; choose one of lora, vera, giva"),
    (lambda: make_config("giva", basis="Vx"), "unknown GiVA basis 'Vx'"),
    (lambda: make_config("lora", rank=8), "unknown option 'rank' for method lora"),
    (lambda: make_config("lora", r=0), "rank r=0 must be a positive integer"),
    (lambda: make_config("vera", r=-4), "rank r=-4 must be a positive integer"),
    (lambda: make_config("giva", r=0), "rank r=0 must be a positive integer"),
    (lambda: LoraConfig(r=2.5), "rank r=2.5 must be a positive integer"),
    (lambda: GivaConfig(svd="full"), "unknown svd 'full'"),
    (lambda: GivaConfig(num_grad_batches=0), "num_grad_batches=0 must be a positive integer"),
    (lambda: GivaConfig(autocast_dtype="fp8"), "autocast_dtype='fp8'"),
    (lambda: GivaConfig(grad_mode="training"), "grad_mode='training': use 'train'"),
    (lambda: VeraConfig(dropout=1.0), r"dropout=1.0 must be in \[0, 1\)"),
])
def test_bad_config(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def lm_nan_loss(output, batch):
    return output.logits.sum() * float("nan")


# id -> (model fixture or factory, config, batches fixture or None, loss_fn, message)
FAILED_APPLIES = {
    "lora rank above min(out, in)": ("tiny_gpt2", LoraConfig(r=40), None, None,
                                     r"LoRA rank r=40 exceeds min\(out, in\)=32 of layer 'transformer.h.0.attn.c_attn'"),
    "targets match no layer": ("minilm", LoraConfig(target_modules=["nope"]), None, None,
                               r"target_modules=\['nope'\] matched no layer"),
    "regex matches no layer": ("minilm", VeraConfig(target_modules=r".*\.nope"), None, None, "matched no layer"),
    "target is not linear": ("minilm", LoraConfig(target_modules=["attention"]), None, None,
                             "'bert.encoder.layer.0.attention' is a BertAttention, not nn.Linear or Conv1D"),
    "no default targets": (lambda: TwoBranches(True), LoraConfig(), None, None, "no default target modules"),
    "trainable module matches nothing": ("minilm", LoraConfig(trainable_modules=["head"]), None, None,
                                         r"trainable_modules=\['head'\] matched no module"),
    "giva without data": ("minilm", GivaConfig(), None, None, "GiVA needs training data"),
    "giva zero gradient": (lambda: TwoBranches(True), GivaConfig(target_modules=["used", "unused"]), "x", squared,
                           "gradient of layer 'unused' is all zeros"),
    "giva no gradient": (lambda: TwoBranches(False), GivaConfig(target_modules=["used", "unused"]), "x", squared,
                         r"layers \['unused'\] got no gradient"),
    "giva nan gradient": ("tiny_gpt2", GivaConfig(), "lm_batches", lm_nan_loss, "has NaN or inf values"),
    "giva too few batches": ("tiny_gpt2", GivaConfig(num_grad_batches=3), "lm_batches", None,
                             "data gave only 2 batches but num_grad_batches=3"),
    "giva batches without labels": ("tiny_gpt2", GivaConfig(), "unlabelled", None, "output has no loss"),
    "giva loss not a scalar": ("tiny_gpt2", GivaConfig(), "lm_batches", lambda out, batch: out.logits,
                               "the loss must be a scalar tensor"),
}


@pytest.mark.parametrize("case", list(FAILED_APPLIES))
def test_failed_apply_leaves_the_model_unchanged(request, case, snapshot, lm_batches):
    model_from, config, batches_from, loss_fn, match = FAILED_APPLIES[case]
    model = request.getfixturevalue(model_from) if isinstance(model_from, str) else model_from()
    data = {None: None, "x": [torch.randn(4, 8)], "lm_batches": lm_batches,
            "unlabelled": [{"input_ids": b["input_ids"]} for b in lm_batches]}[batches_from]
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        apply_adapter(model, config, data=data, loss_fn=loss_fn)
    before.assert_same(model)
    assert all(p.grad is None for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")


def test_applying_twice_is_refused(tiny_gpt2, snapshot):
    apply_adapter(tiny_gpt2, LoraConfig(r=4))
    before = snapshot(tiny_gpt2)
    with pytest.raises(ValueError, match="already has an adapter; call unload_adapter"):
        apply_adapter(tiny_gpt2, LoraConfig(r=4))
    assert before.changed_tensors(tiny_gpt2) == set()
    unload_adapter(tiny_gpt2)
    apply_adapter(tiny_gpt2, LoraConfig(r=4))  # fine after unloading


def test_functions_on_a_model_without_adapter(tiny_gpt2):
    for call in (merge_adapter, unload_adapter, adapter_stats, lambda m: set_adapter_enabled(m, False)):
        with pytest.raises(ValueError, match="the model has no adapter"):
            call(tiny_gpt2)


@pytest.mark.parametrize("basis, r, cap", [("Vr", 40, 32), ("VrU2r", 20, 16), ("VrUr", 8, None)])
def test_giva_rank_is_capped_and_recorded(tiny_gpt2, lm_batches, basis, r, cap):
    # Every GPT-2 layer here has min(out, in) = 32.
    apply_adapter(tiny_gpt2, GivaConfig(r=r, basis=basis), data=lm_batches)
    stats = adapter_stats(tiny_gpt2)
    expected = cap or r
    assert set(stats["effective_ranks"].values()) == {expected}
    assert stats["rank_min"] == stats["rank_max"] == expected
    assert stats["capped_layers"] == (8 if cap else 0)
    assert all(layer.giva_A.shape[0] == expected for layer in tiny_gpt2.giva_adapter.layers.values())
