"""Text classification and regression with a sequence-classification head: the named datasets and the csv task.

- sst2, trec, emotion, agnews, and the sentence pairs mrpc and stsb (regression): from data_dir (the formats of
  docs/tasks.md), or by name from the Hugging Face hub when data_dir is None, as are the other GLUE tasks
  (cola, qqp, mnli, qnli, rte). csv: a user's own CSV / TSV / JSONL files, with an optional second text column (a
  pair) and real-valued labels (label_type="regression"). Reading the data is textdata.py's job, the metrics
  metrics.py's; this module adds the model, batches, loss and evaluation.

Each task is scored by its own metric (GLUE's convention, or task option `metric`); evaluate() returns every metric
that fits the labels, and TaskSetup.metric names the task's own one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import load_model, load_tokenizer
from .base import TaskOptions, TaskSetup, endless, head_modules
from .metrics import check_metric, compute_metrics, default_metric, label_kind
from .textdata import TextData, load_text_data


def load_task_data(task, data_dir: str | None, opts: TaskOptions) -> tuple[TextData, str]:
    """The task's data and its own metric (opts.metric, else GLUE's convention), checked against its labels."""
    data = load_text_data(task.dataset, data_dir, opts)
    if task.head == "causal_lm" and data.regression:
        raise ValueError(f"task {task.name!r}: a causal-LM prompt ends in a label word, which a regression task "
                         f"lacks; use the task {task.dataset!r} (a one-output regression head)")
    kind = label_kind(len(data.label_names), data.regression)
    metric = opts.metric or default_metric(task.dataset, kind)
    check_metric(metric, kind, f"task {task.name!r}")
    return data, metric


def check(task, data_dir: str | None, opts: TaskOptions) -> None:
    """Read a text task's data and check its columns, labels and metric, without a model: the errors a point
    would raise at its start, raised once before a sweep runs any point."""
    load_task_data(task, data_dir, opts)


def examples(data: TextData, split: str, indices: list[int]) -> tuple[list[str], list[str] | None, list]:
    """(texts, second texts or None, labels) of a split's examples at `indices`."""
    texts, pairs, labels = getattr(data, f"{split}_texts"), getattr(data, f"{split}_pairs"), getattr(data, f"{split}_labels")
    return [texts[i] for i in indices], None if pairs is None else [pairs[i] for i in indices], [labels[i] for i in indices]


def length_sorted_chunks(data: TextData, size: int) -> list[list[int]]:
    """Eval example indices in chunks of similar length (little padding); results do not depend on the order."""
    pairs = data.eval_pairs or [""] * len(data.eval_texts)
    order = sorted(range(len(data.eval_texts)), key=lambda i: len(data.eval_texts[i]) + len(pairs[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


# --- classification and regression ---------------------------------------------------


def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """A seq_cls head (classifier for encoders, score for decoders): one output per class and cross-entropy,
    or one output and MSE for regression. A pair's two texts go to the tokenizer as a pair: [SEP] between
    them and segment ids (token_type_ids) for the models that have them; truncation cuts the longer first."""
    task.head_for(entry)  # raises where the model has no classification head
    tokenizer = load_tokenizer(entry)  # random models have none: raises with the fix
    data, metric = load_task_data(task, data_dir, opts)
    num_outputs = 1 if data.regression else len(data.label_names)
    model = load(entry, "seq_cls", dtype=dtype, device=device, num_labels=num_outputs, seed=seed)
    model.config.pad_token_id = tokenizer.pad_token_id  # decoders classify at the last non-pad token
    if data.regression:
        model.config.problem_type = "regression"  # transformers' seq_cls models: MSE on the single output
    kind = label_kind(len(data.label_names), data.regression)

    def encode(texts, pairs, labels, padding):
        batch = tokenizer(texts, pairs, truncation=True, max_length=seq_len, padding=padding, return_tensors="pt")
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if data.regression else torch.long)
        return {k: v.to(device) for k, v in batch.items()}

    def make_batch(indices):
        return encode(*examples(data, "train", indices), opts.padding)

    eval_batches = [encode(*examples(data, "eval", chunk), "longest") for chunk in length_sorted_chunks(data, opts.eval_batch_size)]

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        predictions, labels, loss_sum = [], [], 0.0
        for batch in eval_batches:
            logits = model(**batch).logits.float()  # (B, classes) or (B, 1)
            if data.regression:
                predictions.append(logits[:, 0].cpu())
                loss_sum += F.mse_loss(logits[:, 0], batch["labels"], reduction="sum").item()
            else:
                predictions.append(logits.argmax(-1).cpu())
                loss_sum += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
            labels.append(batch["labels"].cpu())
        return {**compute_metrics(torch.cat(predictions), torch.cat(labels), kind), "loss": loss_sum / len(data.eval_labels)}

    return TaskSetup(model, endless(len(data.train_texts), batch_size, seed, make_batch), None, evaluate,
                     head_modules(model), batch_size * seq_len, data.label_names, len(data.eval_labels), metric)


