"""adapter_stats against the formulas of docs/adapters.md, on MiniLM's 36 default target layers."""

from __future__ import annotations

import json
import os
import struct

import pytest

from giva import adapter_stats, apply_adapter, make_config, save_adapter

pytestmark = pytest.mark.usefixtures("single_thread")

# (out, in) of the six adapted layers of one MiniLM block: query, key, value, attention.output.dense,
# intermediate.dense, output.dense; the model has 6 blocks.
BLOCK = [(384, 384)] * 4 + [(1536, 384), (384, 1536)]
LAYERS = BLOCK * 6
BASE_PARAMS = 22_713_986  # BertForSequenceClassification, 2 labels
HEAD_PARAMS = 384 * 2 + 2  # classifier weight and bias
KEYS = {"trainable_params", "adapter_params", "total_params", "adapter_buffer_bytes", "adapter_checkpoint_bytes",
        "adapted_layers", "adapted_layer_names", "effective_ranks", "rank_min", "rank_max", "capped_layers",
        "init_grad_s", "init_svd_s", "init_inject_s"}


def lora_params(r):
    return sum(r * (i + o) for o, i in LAYERS)


def vector_params(r):
    return sum(r + o for o, _ in LAYERS)


def safetensors_data_bytes(path: str) -> int:
    """File size minus the 8-byte length and the JSON header: the tensor bytes."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
    data = sum(end - start for name, info in header.items() if name != "__metadata__"
               for start, end in [info["data_offsets"]])
    assert data == os.path.getsize(path) - 8 - header_len
    return data


# method, options, trainable params, frozen buffer bytes (fp32)
CASES = {
    "lora": ("lora", dict(r=8), lora_params(8), 0),
    "vera": ("vera", dict(r=64), vector_params(64), 4 * (64 * 1536 + 1536 * 64)),  # one shared pair, sized by max
    "vera regenerated": ("vera", dict(r=64, save_projection=False), vector_params(64), 4 * (64 * 1536 + 1536 * 64)),
    "giva": ("giva", dict(r=8), vector_params(8), 4 * lora_params(8)),  # per-layer A and B: LoRA's sizes
    "giva VrU2r": ("giva", dict(r=8, basis="VrU2r"), vector_params(8), 4 * lora_params(8)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_counts_follow_the_formulas(case, minilm, minilm_batches, tmp_path):
    method, options, trainable, buffer_bytes = CASES[case]
    assert sum(p.numel() for p in minilm.parameters()) == BASE_PARAMS
    apply_adapter(minilm, make_config(method, **options), data=minilm_batches)
    stats = adapter_stats(minilm)
    assert KEYS <= set(stats)
    assert stats["adapted_layers"] == len(stats["adapted_layer_names"]) == len(LAYERS)
    assert stats["trainable_params"] == stats["adapter_params"] == trainable
    assert stats["total_params"] == BASE_PARAMS + trainable
    assert stats["adapter_buffer_bytes"] == buffer_bytes
    assert set(stats["effective_ranks"].values()) == {options["r"]}
    assert stats["rank_min"] == stats["rank_max"] == options["r"] and stats["capped_layers"] == 0

    checkpoint = 4 * trainable + (buffer_bytes if options.get("save_projection", True) else 0)
    assert stats["adapter_checkpoint_bytes"] == checkpoint
    assert safetensors_data_bytes(save_adapter(minilm, str(tmp_path))) == checkpoint
    assert (stats["init_grad_s"] > 0) == (method == "giva")


def test_trainable_modules_count_as_trainable_not_as_adapter(minilm, tmp_path):
    apply_adapter(minilm, make_config("lora", r=8, trainable_modules=["classifier"]))
    stats = adapter_stats(minilm)
    assert stats["adapter_params"] == lora_params(8)
    assert stats["trainable_params"] == lora_params(8) + HEAD_PARAMS
    assert stats["adapter_checkpoint_bytes"] == 4 * (lora_params(8) + HEAD_PARAMS)
    assert safetensors_data_bytes(save_adapter(minilm, str(tmp_path))) == stats["adapter_checkpoint_bytes"]
