"""Zero delta at init, training touches only the adapter, merge/unmerge/unload/disable are exact."""

from __future__ import annotations

import pytest
import torch

from giva import (adapter_disabled, apply_adapter, make_config, merge_adapter, set_adapter_enabled, unload_adapter,
                  unmerge_adapter)
from giva.layer import AdapterLayer

METHODS = {"lora": dict(r=4), "vera": dict(r=16), "giva": dict(r=4)}
MODELS = {  # fixture name -> its batches' fixture name
    "minilm": "minilm_batches",
    "tiny_gpt2": "lm_batches",  # Conv1D layers
    "tiny_llama": "lm_batches",
}


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def adapt(model, method: str, batches, **options):
    config = make_config(method, **{**METHODS[method], **options})
    return apply_adapter(model, config, data=batches if method == "giva" else None)


def perturb_trainable(model, scale: float = 0.1, seed: int = 1) -> None:
    """Random trainable values, so that the delta is not zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=generator))


def base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("base_layer.weight")}


@pytest.fixture(params=list(MODELS))
def model_and_batches(request):
    return request.getfixturevalue(request.param), request.getfixturevalue(MODELS[request.param])


@pytest.mark.parametrize("method", list(METHODS))
def test_zero_delta_at_init_and_a_step_trains_only_the_adapter(model_and_batches, method, snapshot):
    model, batches = model_and_batches
    base_out = logits(model, batches[0])
    adapt(model, method, batches)
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


@pytest.mark.parametrize("method", list(METHODS))
def test_merge_unmerge_and_disable_are_exact(model_and_batches, method):
    model, batches = model_and_batches
    base_out = logits(model, batches[0])
    adapt(model, method, batches)
    perturb_trainable(model)
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


@pytest.mark.parametrize("method", list(METHODS))
def test_unload_restores_the_model(model_and_batches, method, snapshot):
    model, batches = model_and_batches
    next(model.parameters()).requires_grad_(False)  # a flag apply changes and unload must restore
    base_out = logits(model, batches[0])
    original = snapshot(model)
    adapt(model, method, batches)
    perturb_trainable(model)
    unload_adapter(model)
    original.assert_same(model)  # types, tensors, flags, no adapter attribute
    assert torch.equal(logits(model, batches[0]), base_out)


@pytest.mark.parametrize("method", list(METHODS))
def test_unload_with_merge_keeps_the_adapted_outputs(tiny_gpt2, lm_batches, method):
    adapt(tiny_gpt2, method, lm_batches)
    perturb_trainable(tiny_gpt2)
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
