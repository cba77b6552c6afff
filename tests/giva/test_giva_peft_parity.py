"""Our LoRA and VeRA against PEFT's: same initial tensors, same counts, same outputs once trained values are set."""

from __future__ import annotations

import copy

import pytest
import torch

from giva import LoraConfig, VeraConfig, adapter_stats, apply_adapter

peft = pytest.importorskip("peft")
pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to False"),
              pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated")]

# Mixed shapes, so that VeRA slices its shared pair: MiniLM (384->384, 384->1536), GPT-2 Conv1D (32->96, 128->32).
TARGETS = {"minilm": ["query", "value", "intermediate.dense"], "tiny_gpt2": ["c_attn", "mlp.c_proj"]}
BATCHES = {"minilm": "minilm_batches", "tiny_gpt2": "lm_batches"}


@pytest.fixture(params=list(TARGETS))
def case(request):
    model = request.getfixturevalue(request.param)
    batch = {k: v for k, v in request.getfixturevalue(BATCHES[request.param])[0].items() if k != "labels"}
    return model, batch, TARGETS[request.param]


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def peft_layer(peft_model, name: str):
    return peft_model.get_submodule(f"base_model.model.{name}")


def set_same_random(pairs, seed: int = 1) -> None:
    """Copy one random tensor into each (ours, theirs) pair of parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for ours, theirs in pairs:
            value = 0.1 * torch.randn(ours.shape, generator=generator)
            ours.copy_(value)
            theirs.copy_(value)


def peft_trainable(peft_model) -> int:
    return sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_lora_matches_peft(case, use_rslora):
    model, batch, targets = case
    base_out = logits(model, batch)
    ours, theirs = model, copy.deepcopy(model)
    torch.manual_seed(0)
    apply_adapter(ours, LoraConfig(r=4, alpha=8, use_rslora=use_rslora, target_modules=targets))
    torch.manual_seed(0)
    theirs = peft.get_peft_model(theirs, peft.LoraConfig(r=4, lora_alpha=8, use_rslora=use_rslora,
                                                         target_modules=targets))

    layers = ours.giva_adapter.layers
    assert len(layers) == sum(hasattr(m, "lora_A") for m in theirs.modules()) > 2
    for name, layer in layers.items():
        assert torch.equal(layer.lora_A, peft_layer(theirs, name).lora_A["default"].weight), name
    stats = adapter_stats(ours)
    assert stats["trainable_params"] == peft_trainable(theirs)
    assert stats["total_params"] == sum(p.numel() for p in theirs.parameters())
    assert torch.equal(logits(ours, batch), base_out)

    set_same_random((layer.lora_B, peft_layer(theirs, name).lora_B["default"].weight) for name, layer in layers.items())
    out = logits(ours, batch)
    assert not torch.allclose(out, base_out, atol=1e-3)
    torch.testing.assert_close(out, logits(theirs, batch), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("r", [16, 128])  # both paths of layer.vector_delta
def test_vera_matches_peft(case, r):
    model, batch, targets = case
    base_out = logits(model, batch)
    ours, theirs = model, copy.deepcopy(model)
    apply_adapter(ours, VeraConfig(r=r, d_initial=0.1, projection_seed=3, target_modules=targets))
    theirs = peft.get_peft_model(theirs, peft.VeraConfig(r=r, d_initial=0.1, projection_prng_key=3,
                                                         target_modules=targets))

    layers = ours.giva_adapter.layers
    assert len(layers) == sum(hasattr(m, "vera_lambda_b") for m in theirs.modules()) > 2
    for name, layer in layers.items():
        their_layer = peft_layer(theirs, name)
        assert torch.equal(layer.vera_A, their_layer.vera_A["default"]), name
        assert torch.equal(layer.vera_B, their_layer.vera_B["default"]), name
        assert torch.equal(layer.lambda_d, their_layer.vera_lambda_d["default"]), name
        assert torch.equal(layer.lambda_b, their_layer.vera_lambda_b["default"]), name
    stats = adapter_stats(ours)
    assert stats["trainable_params"] == peft_trainable(theirs)
    assert torch.equal(logits(ours, batch), base_out)

    pairs = []
    for name, layer in layers.items():
        their_layer = peft_layer(theirs, name)
        pairs += [(layer.lambda_b, their_layer.vera_lambda_b["default"]),
                  (layer.lambda_d, their_layer.vera_lambda_d["default"])]
    set_same_random(pairs)
    out = logits(ours, batch)
    assert not torch.allclose(out, base_out, atol=1e-3)
    torch.testing.assert_close(out, logits(theirs, batch), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method, r", [("lora", 4), ("vera", 16), ("vera", 128)])
def test_on_a_bf16_base_outputs_and_gradients_match_peft(minilm, minilm_batches, method, r):
    """MiniLM in bf16 with fp32 adapters, ours (which keep the bf16 input for the backward, not its fp32 copy) and
    PEFT's (which cast their adapters to fp32 too), with the same trained values: the logits agree within bf16
    rounding, and each adapter gradient is as close to the same adapter's on the fp32 model as PEFT's is (the
    gradients of the two bf16 models differ by 2-6% of their norm: the delta is added to the output after
    rounding in ours, before in PEFT's, and the backward crosses 6 layers of bf16 activations)."""
    targets = TARGETS["minilm"]
    reference, ours, theirs = minilm, copy.deepcopy(minilm).to(torch.bfloat16), copy.deepcopy(minilm).to(torch.bfloat16)
    if method == "lora":
        for model in (reference, ours):
            apply_adapter(model, LoraConfig(r=r, alpha=2 * r, target_modules=targets))
        theirs = peft.get_peft_model(theirs, peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
        names = {"lora_A": "lora_A.default.weight", "lora_B": "lora_B.default.weight"}
    else:
        for model in (reference, ours):
            apply_adapter(model, VeraConfig(r=r, target_modules=targets))
        theirs = peft.get_peft_model(theirs, peft.VeraConfig(r=r, target_modules=targets))
        names = {"lambda_d": "vera_lambda_d.default", "lambda_b": "vera_lambda_b.default"}
    triples = [(getattr(reference.giva_adapter.layers[name], ours_name), getattr(layer, ours_name),
                peft_layer(theirs, name).get_parameter(their_name))
               for name, layer in ours.giva_adapter.layers.items() for ours_name, their_name in names.items()]
    assert all(a.dtype == b.dtype == c.dtype == torch.float32 for a, b, c in triples)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensors in triples:
            value = 0.1 * torch.randn(tensors[0].shape, generator=generator)
            for tensor in tensors:
                tensor.copy_(value)
    batch = minilm_batches[0]
    outputs = [model(**batch) for model in (reference, ours, theirs)]
    assert outputs[1].logits.dtype == torch.bfloat16
    torch.testing.assert_close(outputs[1].logits, outputs[2].logits, atol=2e-2, rtol=2e-2)
    for output in outputs:
        output.loss.backward()
    for exact, ours_param, their_param in triples:
        assert exact.grad.norm() > 0
        ours_error, their_error = ((p.grad - exact.grad).norm() / exact.grad.norm() for p in (ours_param, their_param))
        assert ours_error < 2 * their_error + 0.01 and ours_error < 0.2, (ours_error, their_error)
