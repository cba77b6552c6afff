"""Micro-benchmarks of the giva package (pytest-benchmark).

    make benchmarks                                   # enabled, results saved under .benchmarks/
    .venv/bin/python -m pytest tests/benchmarks --benchmark-enable --benchmark-group-by=group
    .venv/bin/python -m pytest tests/benchmarks --benchmark-disable   # each body once, as a smoke test

Side by side with PEFT on a whole model: tests/benchmarks/compare_peft_speed.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import giva.layer
from giva import apply_adapter, make_config
from giva.giva import GivaConfig, bases_from_gradient

WIDTH, TOKENS = 384, 1024  # one MiniLM-wide layer; a batch of 16 x 64 tokens
LAYER_CASES = [("lora", 8), ("lora", 32), ("vera", 256), ("vera", 1024), ("giva", 8), ("giva", 32)]
METHOD_RANKS = {"lora": 8, "vera": 256, "giva": 8}


def adapted_layer(method: str, r: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(WIDTH, WIDTH))
    x = torch.randn(64, WIDTH)
    apply_adapter(model, make_config(method, r=r, target_modules=["0"]),
                  data=lambda m: m(x).square().mean())  # GiVA's gradient; ignored by LoRA and VeRA
    return model


def small_llama() -> nn.Module:
    """4 layers, hidden 128: a causal LM whose step takes milliseconds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=1000, max_position_embeddings=64,
                         bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return LlamaForCausalLM(config)


def lm_batch(batch: int = 8, seq: int = 64) -> dict:
    ids = torch.randint(1, 1000, (batch, seq), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "labels": ids}


@pytest.mark.parametrize("method, r", LAYER_CASES, ids=[f"{m}-r{r}" for m, r in LAYER_CASES])
def test_layer_forward_backward(benchmark, method, r):
    benchmark.group = "layer fwd+bwd, 384 wide, 1024 tokens"
    layer = adapted_layer(method, r)
    x = torch.randn(TOKENS, WIDTH, requires_grad=True)  # an input from an earlier adapted layer

    def step():
        layer(x).sum().backward()

    benchmark(step)
    assert all(p.grad is not None for p in layer.parameters() if p.requires_grad)


@pytest.mark.parametrize("folded", [True, False], ids=["folded", "scaled-activations"])
@pytest.mark.parametrize("r", [8, 64, 256, 1024])
def test_vector_delta_paths(benchmark, monkeypatch, r, folded):
    """Both ways of layer.vector_delta at each rank (what giva.layer.FOLD_MAX_RANK picks between)."""
    benchmark.group = f"vector delta fwd+bwd, (1536, 384), 1024 tokens, r={r}"
    monkeypatch.setattr(giva.layer, "FOLD_MAX_RANK", 10**9 if folded else 0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(TOKENS, WIDTH, generator=generator, requires_grad=True)
    A, B = torch.randn(r, WIDTH, generator=generator), torch.randn(4 * WIDTH, r, generator=generator)
    lambda_in = torch.randn(r, generator=generator, requires_grad=True)
    lambda_out = torch.randn(4 * WIDTH, generator=generator, requires_grad=True)
    benchmark(lambda: giva.layer.vector_delta(x, A, B, lambda_in, lambda_out).sum().backward())


@pytest.mark.parametrize("svd", ["randomized", "exact"])
@pytest.mark.parametrize("r", [8, 32])
def test_bases_from_gradient(benchmark, r, svd):
    benchmark.group = "GiVA bases from one (1536, 384) gradient"
    G = torch.randn(4 * WIDTH, WIDTH, generator=torch.Generator().manual_seed(0))
    config = GivaConfig(r=r, svd=svd)
    A, B = benchmark(bases_from_gradient, "layer", G, r, config)
    assert A.shape == (r, WIDTH) and B.shape == (4 * WIDTH, r)


def test_giva_init(benchmark):
    """apply_adapter with GiVA: one batch's gradient of 20 layers, their SVDs, injection."""
    benchmark.group = "GiVA init, small Llama"
    base, batches = small_llama(), [lm_batch()]

    def setup():
        return (copy.deepcopy(base), make_config("giva", r=8)), {"data": batches}

    model = benchmark.pedantic(apply_adapter, setup=setup, rounds=5)
    assert len(model.giva_adapter.layers) == 20


@pytest.mark.parametrize("method", list(METHOD_RANKS))
def test_training_step(benchmark, method):
    benchmark.group = "training step (fwd, bwd, AdamW), small Llama"
    batch = lm_batch()
    model = apply_adapter(small_llama(), make_config(method, r=METHOD_RANKS[method]),
                          data=[batch] if method == "giva" else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    benchmark(step)
