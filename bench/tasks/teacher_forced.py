"""Teacher forcing on a causal LM, shared by lm: and gen: tasks: a batch of prompt + target rows whose labels cover
the target only, and the summed cross-entropy of those target tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_forced_batch(rows: list[tuple[list[int], list[int]]], pad: int, device: torch.device,
                         width: int | None = None) -> dict:
    """input_ids = prompt + target per row, right-padded to `width` (None: the longest row); attention_mask 1 on
    the row; labels -100 except on the target."""
    width = max(len(prompt) + len(target) for prompt, target in rows) if width is None else width
    ids = torch.full((len(rows), width), pad)  # (B, T)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, (prompt, target) in enumerate(rows):
        ids[i, : len(prompt) + len(target)] = torch.tensor(prompt + target)
        mask[i, : len(prompt) + len(target)] = 1
        labels[i, len(prompt) : len(prompt) + len(target)] = torch.tensor(target)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def teacher_forced_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    """(the summed cross-entropy, the count) of the labelled tokens: logits (B, T, V) at t predict labels[:, t + 1]."""
    shifted = labels[:, 1:]  # (B, T - 1)
    loss_sum = F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="sum").item()
    return loss_sum, (shifted != -100).sum().item()
