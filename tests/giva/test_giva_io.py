"""save_adapter then load_adapter onto a fresh copy of the base model reproduces the adapted model."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from giva import adapter_stats, apply_adapter, load_adapter, make_config, merge_adapter, save_adapter

pytestmark = pytest.mark.usefixtures("single_thread")

CASES = {
    "lora": ("lora", dict(r=4, alpha=16)),
    "lora with head": ("lora", dict(r=4, trainable_modules=["classifier"])),
    "vera": ("vera", dict(r=32, save_projection=True)),
    "vera regenerated": ("vera", dict(r=32, save_projection=False, projection_seed=5)),
    "giva Vr": ("giva", dict(r=4, basis="Vr")),
    "giva VrUr": ("giva", dict(r=4, basis="VrUr", target_modules=["query", "value"])),
}
STAT_KEYS = ["trainable_params", "adapter_params", "total_params", "adapter_buffer_bytes",
             "adapter_checkpoint_bytes", "adapted_layer_names", "effective_ranks"]


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("case", list(CASES))
def test_save_then_load_reproduces_outputs(case, minilm, minilm_batches, perturb, tmp_path):
    method, options = CASES[case]
    fresh = copy.deepcopy(minilm)
    apply_adapter(minilm, make_config(method, **options), data=minilm_batches if method == "giva" else None)
    perturb(minilm)
    out = logits(minilm, minilm_batches[0])
    weights_path = save_adapter(minilm, str(tmp_path))

    saved = load_file(weights_path)
    assert ("vera_A" in saved) == options.get("save_projection", False)
    assert ("classifier.weight" in saved) == ("trainable_modules" in options)
    with open(os.path.join(tmp_path, "adapter_config.json")) as f:
        assert json.load(f)["config"]["method"] == method

    load_adapter(fresh, str(tmp_path))
    assert torch.equal(logits(fresh, minilm_batches[0]), out)
    ours, theirs = adapter_stats(minilm), adapter_stats(fresh)
    assert {k: ours[k] for k in STAT_KEYS} == {k: theirs[k] for k in STAT_KEYS}
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == \
        {n for n, p in minilm.named_parameters() if p.requires_grad}


def test_load_onto_another_shape_is_refused(tiny_gpt2, gpt2_factory, tmp_path, snapshot):
    apply_adapter(tiny_gpt2, make_config("lora", r=4))
    save_adapter(tiny_gpt2, str(tmp_path))
    wider = gpt2_factory(n_embd=48)
    before = snapshot(wider)
    with pytest.raises(ValueError, match=r"saved for layer 'transformer.h.0.attn.c_attn' of shape \[96, 32\] "
                                         r"but this model has \[144, 48\]"):
        load_adapter(wider, str(tmp_path))
    before.assert_same(wider)


def test_load_errors(tiny_gpt2, tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_config.json in"):
        load_adapter(tiny_gpt2, str(tmp_path / "missing"))
    apply_adapter(tiny_gpt2, make_config("lora", r=4))
    save_adapter(tiny_gpt2, str(tmp_path))
    with pytest.raises(ValueError, match="already has an adapter"):
        load_adapter(tiny_gpt2, str(tmp_path))
    merge_adapter(tiny_gpt2)
    with pytest.raises(ValueError, match="merged into the base weights"):
        save_adapter(tiny_gpt2, str(tmp_path))


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(tiny_gpt2, gpt2_factory, tmp_path, snapshot):
    apply_adapter(tiny_gpt2, make_config("vera", r=8))
    weights_path = save_adapter(tiny_gpt2, str(tmp_path))
    tensors = load_file(weights_path)
    del tensors["transformer.h.1.mlp.c_fc.lambda_b"]
    save_file(tensors, weights_path)
    fresh = gpt2_factory(n_embd=32)
    before = snapshot(fresh)
    with pytest.raises(ValueError, match="does not fit its own config at .'transformer.h.1.mlp.c_fc.lambda_b'"):
        load_adapter(fresh, str(tmp_path))
    before.assert_same(fresh)
