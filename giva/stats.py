"""Parameter and byte accounting of an adapted model."""

from __future__ import annotations

import torch.nn as nn

from .inject import adapter_state
from .io import adapter_tensors


def adapter_stats(model: nn.Module) -> dict:
    """Counts and sizes for an adapted model, as one flat dict (units in the names)."""
    state = adapter_state(model)
    adapter_params = sum(getattr(layer, n).numel() for layer in state.layers.values() for n in layer.trainable_names)
    buffers = {}  # by address, so VeRA's shared pair counts once
    for layer in state.layers.values():
        for name in layer.frozen_names + layer.shared_names:
            buf = getattr(layer, name)
            buffers[buf.untyped_storage()._cdata] = buf.numel() * buf.element_size()  # storage identity: fake tensors too
    ranks = {name: layer.rank for name, layer in state.layers.items()}
    return {
        "method": state.config.method,
        "rank": state.config.r,
        "adapted_layers": len(state.layers),
        "adapted_layer_names": list(state.layers),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "adapter_params": adapter_params,
        "total_params": sum(p.numel() for p in model.parameters()),
        "adapter_buffer_bytes": sum(buffers.values()),
        "adapter_checkpoint_bytes": sum(t.numel() * t.element_size() for t in adapter_tensors(model).values()),
        "effective_ranks": ranks,
        "rank_min": min(ranks.values()),
        "rank_max": max(ranks.values()),
        "capped_layers": sum(r < state.config.r for r in ranks.values()),
        "init_grad_s": state.timings.get("grad_s", 0.0),
        "init_svd_s": state.timings.get("svd_s", 0.0),
        "init_inject_s": state.timings.get("inject_s", 0.0),
    }
