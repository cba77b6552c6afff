"""Zero delta at init, training touches only the adapter, merge/unmerge/unload/disable are exact."""

from __future__ import annotations

import copy

import pytest
import torch

from giva import (adapter_disabled, adapter_stats, apply_adapter, load_adapter, make_config, merge_adapter,
                  save_adapter, set_adapter_enabled, unload_adapter, unmerge_adapter)
from giva.layer import FOLD_MAX_RANK, AdapterLayer, vector_delta

pytestmark = pytest.mark.usefixtures("single_thread")

# variant -> (method, options); VeRA r=128 takes the unfolded path of layer.vector_delta
VARIANTS = {"lora": ("lora", dict(r=4)), "vera": ("vera", dict(r=16)), "vera r128": ("vera", dict(r=128)),
           "giva": ("giva", dict(r=4))}
MODELS = {  # fixture name -> its batches' fixture name
    "minilm": "minilm_batches",
    "tiny_gpt2": "lm_batches",  # Conv1D layers
    "tiny_llama": "lm_batches",
}


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def adapt(model, variant: str, batches, **options):
    method, defaults = VARIANTS[variant]
    config = make_config(method, **{**defaults, **options})
    return apply_adapter(model, config, data=batches if method == "giva" else None)


def base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("base_layer.weight")}


@pytest.fixture(params=list(MODELS))
def model_and_batches(request):
    return request.getfixturevalue(request.param), request.getfixturevalue(MODELS[request.param])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_zero_delta_at_init_and_a_step_trains_only_the_adapter(model_and_batches, variant, snapshot):
    model, batches = model_and_batches
    base_out = logits(model, batches[0])
    adapt(model, variant, batches)
    layers = model.giva_adapter.layers
    assert all(isinstance(model.get_submodule(name), AdapterLayer) for name in layers)
    assert torch.equal(logits(model, batches[0]), base_out)  # delta exactly zero

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"{name}.{t}" for name, layer in layers.items() for t in layer.trainable_names}
    assert trainable == expected
    before = snapshot(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)  # all parameters: frozen ones must get no grad
    model(**batches[0]).loss.backward()
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    optimizer.step()
    assert before.changed_tensors(model) == trainable  # every buffer and base weight untouched
    assert not torch.equal(logits(model, batches[0]), base_out)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_merge_unmerge_and_disable_are_exact(model_and_batches, variant, perturb):
    model, batches = model_and_batches
    base_out = logits(model, batches[0])
    adapt(model, variant, batches)
    perturb(model)
    adapted_out = logits(model, batches[0])
    assert not torch.allclose(adapted_out, base_out, atol=1e-3)
    weights = base_weights(model)

    with adapter_disabled(model):
        assert torch.equal(logits(model, batches[0]), base_out)
    assert torch.equal(logits(model, batches[0]), adapted_out)

    merge_adapter(model)
    assert all(layer.merged for layer in model.giva_adapter.layers.values())
    merged = base_weights(model)
    assert all(not torch.equal(merged[n], weights[n]) for n in weights)
    torch.testing.assert_close(logits(model, batches[0]), adapted_out, atol=1e-5, rtol=1e-4)
    merge_adapter(model)  # a second merge is a no-op
    torch.testing.assert_close(logits(model, batches[0]), adapted_out, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="merged"):
        set_adapter_enabled(model, False)

    unmerge_adapter(model)
    for n, w in base_weights(model).items():
        torch.testing.assert_close(w, weights[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits(model, batches[0]), adapted_out, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unload_restores_the_model(model_and_batches, variant, snapshot, perturb):
    model, batches = model_and_batches
    next(model.parameters()).requires_grad_(False)  # a flag apply changes and unload must restore
    base_out = logits(model, batches[0])
    original = snapshot(model)
    adapt(model, variant, batches)
    perturb(model)
    unload_adapter(model)
    original.assert_same(model)  # types, tensors, flags, no adapter attribute
    assert torch.equal(logits(model, batches[0]), base_out)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unload_with_merge_keeps_the_adapted_outputs(tiny_gpt2, lm_batches, variant, perturb):
    adapt(tiny_gpt2, variant, lm_batches)
    perturb(tiny_gpt2)
    adapted_out = logits(tiny_gpt2, lm_batches[0])
    unload_adapter(tiny_gpt2, merge=True)
    assert not any(isinstance(m, AdapterLayer) for m in tiny_gpt2.modules())
    assert all(p.requires_grad for p in tiny_gpt2.parameters())
    torch.testing.assert_close(logits(tiny_gpt2, lm_batches[0]), adapted_out, atol=1e-5, rtol=1e-4)


def test_trainable_modules_stay_trainable_and_are_not_adapted(minilm):
    apply_adapter(minilm, make_config("lora", r=4, trainable_modules=["classifier"]))
    trainable = {n for n, p in minilm.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable
    assert all(n.startswith("classifier.") or n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert "classifier" not in minilm.giva_adapter.layers
    # The default targets are the encoder's linear layers only: not the pooler, not the head.
    assert len(minilm.giva_adapter.layers) == 36
    assert not any(n.startswith("bert.pooler") for n in minilm.giva_adapter.layers)


@pytest.mark.parametrize("r", [4, FOLD_MAX_RANK + 1])  # folded into (out, r), and scaling the activations
def test_vector_delta_is_the_formula(r):
    generator = torch.Generator().manual_seed(0)
    x, A, B = (torch.randn(shape, generator=generator) for shape in [(3, 5, 20), (r, 20), (12, r)])
    lambda_in = torch.randn(r, generator=generator, requires_grad=True)
    lambda_out = torch.randn(12, generator=generator, requires_grad=True)
    expected = lambda_out * ((lambda_in * (x @ A.T)) @ B.T)  # (3, 5, 12)
    got = vector_delta(x, A, B, lambda_in, lambda_out)
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad(got.square().sum(), [lambda_in, lambda_out])
    expected_grads = torch.autograd.grad(expected.square().sum(), [lambda_in, lambda_out])
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_vera_pair_stays_shared_after_to(minilm, minilm_batches, perturb, tmp_path):
    fresh = copy.deepcopy(minilm).double()
    adapt(minilm, "vera", minilm_batches, r=8)
    minilm.double()
    layers = list(minilm.giva_adapter.layers.values())
    assert len({layer.vera_A.data_ptr() for layer in layers}) == 1
    assert all(layer.vera_A.dtype == torch.float64 for layer in layers)
    assert adapter_stats(minilm)["adapter_buffer_bytes"] == 8 * (8 * 1536 + 1536 * 8)  # one pair, fp64
    perturb(minilm)
    out = logits(minilm, minilm_batches[0])
    save_adapter(minilm, str(tmp_path))
    load_adapter(fresh, str(tmp_path))
    assert torch.equal(logits(fresh, minilm_batches[0]), out)


def test_apply_under_no_grad_and_trainable_module_as_a_string(minilm, minilm_batches):
    with torch.no_grad():  # GiVA's gradient pass still runs
        apply_adapter(minilm, make_config("giva", r=4, trainable_modules="classifier"), data=minilm_batches)
    trainable = {n for n, p in minilm.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trainable


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_half_precision_base_gets_fp32_adapters(tiny_llama, lm_batches, variant):
    model = tiny_llama.to(torch.bfloat16)
    base_out = logits(model, lm_batches[0])
    adapt(model, variant, lm_batches)
    assert torch.equal(logits(model, lm_batches[0]), base_out)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert all(b.dtype == torch.float32 for layer in model.giva_adapter.layers.values() for b in layer.buffers())
    model(**lm_batches[0]).loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def saved_for_backward(model, batch) -> list[tuple[torch.dtype, tuple]]:
    """(dtype, shape) of every tensor autograd keeps for the backward of one forward pass (then run backward)."""
    kept = []

    def pack(tensor):
        kept.append((tensor.dtype, tuple(tensor.shape)))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**batch).loss
    loss.backward()
    return kept


@pytest.mark.parametrize("variant", ["lora", "vera", "giva"])  # VeRA r128 keeps its (tokens, out) product for lambda_b
def test_on_a_half_precision_base_no_fp32_copy_of_an_input_is_kept_for_the_backward(tiny_llama, lm_batches, variant,
                                                                                      perturb):
    """The fp32 adapters compute in fp32, but what the backward keeps of a layer's input is the input itself
    (bf16), not an fp32 copy of it (LoRA's dA = dh^T x needs x; VeRA's and GiVA's frozen A need none): beyond
    what the base model keeps, the adapters keep no fp32 tensor of a layer's input width (32 or 64) per token."""
    from collections import Counter

    model = tiny_llama.to(torch.bfloat16)
    model.model.embed_tokens.weight.requires_grad_(False)  # as in adapter training: the base keeps its own tensors
    batch = lm_batches[0]
    tokens = batch["input_ids"].shape  # (batch, seq)
    base = Counter(saved_for_backward(model, batch))
    adapt(model, variant, lm_batches)
    perturb(model)
    extra = Counter(saved_for_backward(model, batch)) - base
    assert not [shape for (dtype, shape), n in extra.items()
                if dtype == torch.float32 and shape[:2] == tokens and shape[-1] in (32, 64)], extra
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
