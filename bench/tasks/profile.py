"""The profile task: random batches at the point's shapes, for timing and costs only (no evaluation).

Works on random models (no tokenizer, no data): random tokens for language models, random pixels at the model's
image size for vision models. `profile_batch` is also the batch `estimate` traces.
"""

from __future__ import annotations

import torch

from ..models import image_shape, image_tokens, load_model
from .base import TaskSetup, head_modules, random_tokens


def profile_batch(model_config, head: str, batch_size: int, seq_len: int, num_labels: int, device,
                  generator: torch.Generator | None = None, pixel_dtype: torch.dtype = torch.float32) -> dict:
    """Random inputs on the body's own head: tokens (B, T) with labels = the ids (causal-LM loss) for decoders or
    random classes (B,) for encoders; for vision models pixels (B, C, H, W) at the model's image size (seq_len not
    used) and random classes."""
    if head == "img_cls":
        channels, height, width = image_shape(model_config)
        pixels = torch.randn(batch_size, channels, height, width, generator=generator)
        labels = torch.randint(0, num_labels, (batch_size,), generator=generator)
        return {"pixel_values": pixels.to(device, pixel_dtype), "labels": labels.to(device)}
    batch = random_tokens(generator, batch_size, seq_len, model_config.vocab_size, device)
    if head == "seq_cls":
        batch["labels"] = torch.randint(0, num_labels, (batch_size,), generator=generator).to(device)
    else:
        batch["labels"] = batch["input_ids"]
    return batch


def tokens_per_batch(model_config, head: str, batch_size: int, seq_len: int) -> int:
    """Tokens one batch feeds the model: batch x seq_len, or for images batch x patch tokens ([CLS] included)."""
    return batch_size * (image_tokens(model_config) if head == "img_cls" else seq_len)


def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """Random batches on the body's own head: causal-LM loss for decoders, random classes for encoders and vision
    models (whose head trains beside the adapter)."""
    head = task.head_for(entry)
    model = load(entry, head, dtype=dtype, device=device, num_labels=opts.num_labels, seed=seed)
    model_dtype = next(model.parameters()).dtype

    def batches():
        generator = torch.Generator().manual_seed(seed)
        while True:
            yield profile_batch(model.config, head, batch_size, seq_len, opts.num_labels, device, generator, model_dtype)

    trainable = head_modules(model) if head != "causal_lm" else []
    return TaskSetup(model, batches(), None, None, trainable, tokens_per_batch(model.config, head, batch_size, seq_len))
