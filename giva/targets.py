"""Which layers an adapter goes into: name matching, defaults, layer shapes."""

from __future__ import annotations

import re

import torch.nn as nn

try:  # GPT-2 style layers store the weight transposed: (in, out)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # transformers is optional for plain PyTorch models
    Conv1D = ()

# Default targets per model family (the GiVA paper's settings, docs/adapters.md).
# BERT-style names are anchored to the encoder layers so that the pooler and a
# classification head ("classifier.dense" in RoBERTa) are never adapted.
BERT_TARGETS = r".*layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
# Vision transformers: the GiVA authors' image set, q, k, v and the two MLP layers (not the attention output
# projection, nor the classifier). transformers 5 names them q_proj/k_proj/v_proj/fc1/fc2 in ViT, DINOv2 and
# CLIP; transformers 4's ViT and DINOv2 named them query/key/value and intermediate.dense/output.dense (or
# mlp.fc1/fc2), which the second half matches.
VISION_TARGETS = (r".*\.(q_proj|k_proj|v_proj|fc1|fc2)"
                  r"|.*layer\.\d+\.(attention\.attention\.(query|key|value)|intermediate\.dense|output\.dense)")
DEFAULT_TARGETS = {
    "bert": BERT_TARGETS,
    "roberta": BERT_TARGETS,
    "xlm-roberta": BERT_TARGETS,
    "llama": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_fc", "c_proj"],
    "vit": VISION_TARGETS,
    "deit": VISION_TARGETS,
    "dinov2": VISION_TARGETS,
    "clip": VISION_TARGETS,
    "siglip": VISION_TARGETS,
}


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (bool(Conv1D) and isinstance(module, Conv1D))


def linear_shape(module: nn.Module) -> tuple[int, int]:
    """(out_features, in_features) of an nn.Linear or a transformers Conv1D."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    in_features, out_features = module.weight.shape  # Conv1D: (in, out)
    return out_features, in_features


def name_matches(name: str, patterns: str | list[str]) -> bool:
    """A regex string must match the whole name; a list entry matches the name or its dotted suffix."""
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def default_targets(model: nn.Module) -> str | list[str]:
    """The family's entry in DEFAULT_TARGETS; for another family every linear layer inside the repeated blocks
    (the children of the largest nn.ModuleList holding linear layers), which leaves heads and embeddings out."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in DEFAULT_TARGETS:
        return DEFAULT_TARGETS[model_type]
    blocks = [(name, module) for name, module in model.named_modules()
              if isinstance(module, nn.ModuleList) and len(module) > 1 and any(is_linear(m) for m in module.modules())]
    if not blocks:
        linear_names = sorted({n.rpartition(".")[2] for n, m in model.named_modules() if is_linear(m)})
        raise ValueError(f"no default target modules for model type {model_type!r} and no repeated blocks of linear "
                         f"layers; pass target_modules=[...] from its linear layers: {linear_names}")
    prefix, layers = max(blocks, key=lambda block: len(block[1]))
    return [f"{prefix}.{name}" for name, m in layers.named_modules() if is_linear(m)]


def find_targets(model: nn.Module, patterns: str | list[str] | None, exclude: list[str] = ()) -> dict[str, nn.Module]:
    """Map name -> layer for every layer the patterns select; errors name the problem and the fix."""
    if patterns is None:
        patterns = default_targets(model)
    found = {}
    for name, module in model.named_modules():
        if not name or not name_matches(name, patterns) or (exclude and name_matches(name, list(exclude))):
            continue
        if not is_linear(module):
            raise ValueError(
                f"target {name!r} is a {type(module).__name__}, not nn.Linear or Conv1D; "
                "name its linear sublayers instead (e.g. 'query', 'q_proj')"
            )
        found[name] = module
    if not found:
        some = [n for n, m in model.named_modules() if is_linear(m)][:6]
        raise ValueError(f"target_modules={patterns!r} matched no layer of the model; its linear layers include {some}")
    return found
