"""The profile task: random token batches at the point's shapes, for timing and costs only (no evaluation).

Works on random models (no tokenizer, no data). `profile_batch` is also the batch `estimate` traces.
"""

from __future__ import annotations

import torch

from ..models import load_model
from .base import TaskSetup, head_modules, random_tokens


def profile_batch(batch_size: int, seq_len: int, vocab_size: int, num_labels: int, encoder: bool, device,
                  generator: torch.Generator | None = None) -> dict:
    """Random tokens (B, T); labels = the ids (causal-LM loss) for decoders, random classes (B,) for encoders."""
    batch = random_tokens(generator, batch_size, seq_len, vocab_size, device)
    if encoder:
        batch["labels"] = torch.randint(0, num_labels, (batch_size,), generator=generator).to(device)
    else:
        batch["labels"] = batch["input_ids"]
    return batch


def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """Random token batches on the body's own head: causal-LM loss for decoders, random classes for encoders."""
    head = task.head_for(entry)
    encoder = head == "seq_cls"
    model = load(entry, head, dtype=dtype, device=device, num_labels=opts.num_labels, seed=seed)
    vocab_size = model.config.vocab_size

    def batches():
        generator = torch.Generator().manual_seed(seed)
        while True:
            yield profile_batch(batch_size, seq_len, vocab_size, opts.num_labels, encoder, device, generator)

    return TaskSetup(model, batches(), None, None, head_modules(model) if encoder else [], batch_size * seq_len)
