"""The planted task: recover a planted rank-k change of the target layers from a teacher.

Needs no data, so the default run can report accuracy: the teacher is the base
model plus a seeded rank-k change on the target layers, the student the base
model with an adapter; the metric is agreement with the teacher on fixed random
inputs. It shows how much of a rank-k change each method and rank recovers.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from giva.targets import find_targets, linear_shape

from ..models import load_model
from .base import TaskSetup, random_tokens


def plant_change(layer: nn.Module, k: int, scale: float, generator: torch.Generator) -> None:
    """W += scale * s_rms * U V^T with U (out, k), V (in, k) random orthonormal; s_rms = ||W||_F / sqrt(min(out, in))."""
    out_features, in_features = linear_shape(layer)
    if k > min(out_features, in_features):
        raise ValueError(f"planted rank k={k} exceeds min(out, in)={min(out_features, in_features)} of a target layer; lower k")
    weight = layer.weight
    U = torch.linalg.qr(torch.randn(out_features, k, generator=generator)).Q
    V = torch.linalg.qr(torch.randn(in_features, k, generator=generator)).Q
    s_rms = weight.float().norm() / min(out_features, in_features) ** 0.5
    delta = (scale * s_rms.cpu() * U @ V.T).to(weight.device, weight.dtype)  # (out, in)
    with torch.no_grad():
        weight.add_(delta if isinstance(layer, nn.Linear) else delta.T)  # Conv1D stores (in, out)


def centered(logits: torch.Tensor) -> torch.Tensor:
    """Logits in fp32 less their mean over classes (softmax ignores a shift): (..., V)."""
    logits = logits.float()
    return logits - logits.mean(dim=-1, keepdim=True)


class CenteredMSE(torch.autograd.Function):
    """mean((centered(logits) - target)^2), its value and gradient as autograd would give them, in a few passes over
    the (batch, tokens, vocabulary) logits instead of a dozen: one difference tensor is made and saved, the backward
    is one expression of it. On the quick preset's gpt2-tiny (8 x 64 tokens, 8,192 words) autograd's way took 45-55
    ms of a 120-140 ms training step, which would time the loss more than the model and its adapter."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        diff = logits - target
        diff -= logits.mean(dim=-1, keepdim=True)
        ctx.save_for_backward(diff)
        flat = diff.view(-1)
        return torch.dot(flat, flat) / flat.numel()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (diff,) = ctx.saved_tensors  # d/dlogits of mean(diff^2), through the centering: 2/N (diff - mean(diff))
        grad_logits = diff - diff.mean(dim=-1, keepdim=True)
        return grad_logits.mul_(2 * grad / diff.numel()), None


def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """Student = the base model; teacher = base + a seeded rank-k change on the target layers.

    Inputs are random token sequences (seeded). Loss: MSE between the student's and
    the teacher's centered logits, divided by the teacher's mean squared centered
    logit on the eval batches (a fixed number): 0 = the change is recovered, and
    the scale is the same for every model. Not KL: a random model's (or a new
    head's) logits are nearly flat, so KL is ~1e-5 and its gradients sink below
    Adam's eps. Metric "accuracy" = agreement of the argmax predictions (every
    token for decoders, the class for encoders) with the teacher on fixed eval
    batches. The teacher shares every parameter but the target layers with the
    student, so nothing of the student may train besides the adapter
    (trainable_modules is empty: a trained head would move the teacher's too).
    """
    head = task.head_for(entry)
    if head == "img_cls":
        raise ValueError(f"planted feeds random tokens, and model {entry.name!r} is a vision model; use profile or an "
                         "image task (digits, images, ...)")
    encoder = head == "seq_cls"
    student = load(entry, head, dtype=dtype, device=device, num_labels=opts.num_labels, seed=seed)
    targets = find_targets(student, opts.target_modules)
    shared = {id(p): p for name, module in student.named_modules() if name not in targets
              for p in module.parameters(recurse=False)}
    teacher = copy.deepcopy(student, memo=shared)
    generator = torch.Generator().manual_seed(seed)
    for name in targets:
        plant_change(teacher.get_submodule(name), opts.k, opts.scale, generator)
    teacher.eval().requires_grad_(False)
    vocab_size = student.config.vocab_size

    @torch.no_grad()
    def teacher_logits(batch: dict) -> torch.Tensor:
        return centered(teacher(**batch).logits)

    eval_generator = torch.Generator().manual_seed(seed + 1_000_003)  # disjoint from the train stream
    eval_batches = [random_tokens(eval_generator, batch_size, seq_len, vocab_size, device) for _ in range(opts.eval_batches)]
    logit_ms = sum(teacher_logits(b).pow(2).mean().item() for b in eval_batches) / len(eval_batches)  # the loss's unit

    def relative_mse(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return CenteredMSE.apply(logits, target) / logit_ms

    recent: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(input_ids) -> (input_ids, teacher logits)

    def batches():
        """Teacher outputs are computed here, outside the timed training step."""
        generator = torch.Generator().manual_seed(seed)
        while True:
            batch = random_tokens(generator, batch_size, seq_len, vocab_size, device)
            recent[id(batch["input_ids"])] = (batch["input_ids"], teacher_logits(batch))
            while len(recent) > 2:  # the last two drawn: a caller may draw one ahead (and GiVA's gradient batch)
                recent.pop(next(iter(recent)))
            yield batch

    def loss_fn(output, batch: dict) -> torch.Tensor:
        ids, target = recent.get(id(batch["input_ids"]), (None, None))
        if ids is not batch["input_ids"]:  # a batch from elsewhere (or copied): ask the teacher now
            target = teacher_logits(batch)
        return relative_mse(output.logits, target)

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        agree, loss_sum = 0.0, 0.0
        for batch in eval_batches:  # the teacher runs again: cheaper than holding (B, T, V) targets
            target = teacher_logits(batch)
            logits = model(**batch).logits
            agree += (logits.argmax(-1) == target.argmax(-1)).float().mean().item()
            loss_sum += relative_mse(logits, target).item()
        return {"accuracy": agree / len(eval_batches), "loss": loss_sum / len(eval_batches)}

    predictions = len(eval_batches) * batch_size * (1 if encoder else seq_len)  # a class per sequence, or per token
    return TaskSetup(student, batches(), loss_fn, evaluate, [], batch_size * seq_len, num_eval_examples=predictions,
                     metric="accuracy")
