"""Tasks a sweep can name, each turned into a ready-to-train TaskSetup for one model.

    setup = setup_task("sst2", "minilm", batch_size=16, seq_len=64, seed=0, data_dir="../shared/data")
    batch = next(setup.train_batches); loss = setup.model(**batch).loss; setup.evaluate(setup.model)

- profile: random token batches for timing only (no evaluation); works on random models.
- planted: recover a planted rank-k change of the target layers from a teacher; needs no data (planted.py).
- sst2, trec, emotion, agnews, and the sentence pairs mrpc and stsb (regression): from data_dir
  (../shared/data/DATA.md formats), or by name from the Hugging Face hub when data_dir is None, as are the
  other GLUE tasks (cola, qqp, mnli, qnli, rte). csv: a user's own CSV / TSV / JSONL files, with an optional
  second text column (a pair) and real-valued labels (label_type="regression").
  Reading the data is textdata.py's job, the metrics metrics.py's; this module adds the model, batches,
  loss and evaluation.
- lm:<dataset> (and sst2-lm): the same data as a causal-LM prompt ending in a label word (decoders).

Each task is scored by its own metric (GLUE's convention, or task option `metric`); evaluate() returns
every metric that fits the labels, and TaskSetup.metric names the task's own one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .metrics import check_metric, compute_metrics, default_metric, label_kind
from .models import get_entry, load_model, load_tokenizer
from .planted import planted_setup
from .taskspec import TaskOptions, TaskSetup, head_modules, random_tokens, task_head
from .textdata import DATASETS, TextData, load_text_data

TEXT_DATASETS = (*DATASETS, "csv")
TASK_NAMES = ("profile", "planted", *TEXT_DATASETS, "sst2-lm", *(f"lm:{d}" for d in TEXT_DATASETS))

# Causal-LM variant: prompt and one word per label (in label-id order; a leading space keeps it one word).
# Pairs fill "{text}" and "{text_pair}".
LM_PROMPTS = {
    "sst2": ("{text}\nSentiment:", [" negative", " positive"]),
    "trec": ("{text}\nQuestion type:", [" abbreviation", " entity", " description", " person", " location", " number"]),
    "emotion": ("{text}\nEmotion:", [" sadness", " joy", " love", " anger", " fear", " surprise"]),
    "agnews": ("{text}\nTopic:", [" world", " sports", " business", " technology"]),
    "mrpc": ("Sentence 1: {text}\nSentence 2: {text_pair}\nSame meaning:", [" no", " yes"]),
    "rte": ("{text}\nQuestion: does this imply \"{text_pair}\"?\nAnswer:", [" yes", " no"]),
    "cola": ("{text}\nGrammatical:", [" no", " yes"]),
}
PAIR_PROMPT = "{text}\n{text_pair}\nLabel:"  # pairs without a prompt of their own


def setup_task(task: str, model_name: str, *, batch_size: int, seq_len: int, seed: int, device="cpu",
               dtype: str = "float32", data_dir: str | None = None, options: dict | None = None) -> TaskSetup:
    """The model with the head `task` needs, its seeded train batches, loss and evaluation."""
    opts = TaskOptions.from_dict(options)
    causal_lm, dataset = parse_task(task)
    entry = get_entry(model_name)
    device = torch.device(device)
    common = dict(batch_size=batch_size, seq_len=seq_len, seed=seed, device=device, dtype=dtype)
    if task == "profile":
        return profile_setup(entry, opts, **common)
    if task == "planted":
        return planted_setup(entry, opts, **common)
    causal_lm = task_head(task, entry) == "causal_lm"  # raises where the model has no such head
    tokenizer = load_tokenizer(entry)  # random models have none: raises with the fix
    data = load_text_data(dataset, data_dir, opts)
    metric = task_metric(task, data, opts)
    if causal_lm:
        return lm_setup(entry, tokenizer, data, dataset, metric, opts, **common)
    return classification_setup(entry, tokenizer, data, metric, opts, **common)


def parse_task(task: str) -> tuple[bool, str]:
    """(causal LM?, dataset) of a task name; an unknown name is an error listing the known ones."""
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    causal_lm = task == "sst2-lm" or task.startswith("lm:")
    return causal_lm, "sst2" if task == "sst2-lm" else task.removeprefix("lm:")


def task_metric(task: str, data: TextData, opts: TaskOptions) -> str:
    """The task's own metric (opts.metric, else GLUE's convention), checked against its labels."""
    causal_lm, dataset = parse_task(task)
    if causal_lm and data.regression:
        raise ValueError(f"task {task!r}: a causal-LM prompt ends in a label word, which a regression task lacks; "
                         f"use the task {dataset!r} (a one-output regression head)")
    kind = label_kind(len(data.label_names), data.regression)
    metric = opts.metric or default_metric(dataset, kind)
    check_metric(metric, kind, f"task {task!r}")
    return metric


def check_text_task(task: str, data_dir: str | None, options: dict | None) -> None:
    """Read a text task's data and check its columns, labels and metric, without a model: the errors a
    point would raise at its start, raised once before a sweep runs any point."""
    opts = TaskOptions.from_dict(options)
    causal_lm, dataset = parse_task(task)
    if dataset in TEXT_DATASETS:
        task_metric(task, load_text_data(dataset, data_dir, opts), opts)


# --- batches --------------------------------------------------------------------


def endless(num_examples: int, batch_size: int, seed: int, make_batch: Callable[[list[int]], dict]) -> Iterator[dict]:
    """Seeded epochs of shuffled indices in full batches (a constant batch size); make_batch(indices) -> dict."""
    if num_examples < batch_size:  # checked here, not at the first batch
        raise ValueError(f"the train split has {num_examples} examples, fewer than batch_size={batch_size}; "
                         "use more data or a smaller batch size")

    def batches():
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(num_examples, generator=generator).tolist()
            for start in range(0, num_examples - batch_size + 1, batch_size):
                yield make_batch(order[start : start + batch_size])

    return batches()


def profile_setup(entry, opts, *, batch_size, seq_len, seed, device, dtype) -> TaskSetup:
    """Random token batches: causal-LM loss (labels = ids) for decoders, random classes for encoders."""
    encoder = task_head("profile", entry) == "seq_cls"
    model = load_model(entry, "seq_cls" if encoder else "causal_lm", dtype=dtype, device=device,
                       num_labels=opts.num_labels, seed=seed)
    vocab_size = model.config.vocab_size

    def batches():
        generator = torch.Generator().manual_seed(seed)
        while True:
            batch = random_tokens(generator, batch_size, seq_len, vocab_size, device)
            if encoder:
                batch["labels"] = torch.randint(0, opts.num_labels, (batch_size,), generator=generator).to(device)
            else:
                batch["labels"] = batch["input_ids"]
            yield batch

    return TaskSetup(model, batches(), None, None, head_modules(model) if encoder else [], batch_size * seq_len)


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


def classification_setup(entry, tokenizer, data: TextData, metric: str, opts, *, batch_size, seq_len, seed, device,
                         dtype) -> TaskSetup:
    """A seq_cls head (classifier for encoders, score for decoders): one output per class and cross-entropy,
    or one output and MSE for regression. A pair's two texts go to the tokenizer as a pair: [SEP] between
    them and segment ids (token_type_ids) for the models that have them; truncation cuts the longer first."""
    num_outputs = 1 if data.regression else len(data.label_names)
    model = load_model(entry, "seq_cls", dtype=dtype, device=device, num_labels=num_outputs, seed=seed)
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


# --- causal-LM classification ----------------------------------------------------


def lm_setup(entry, tokenizer, data: TextData, dataset: str, metric: str, opts, *, batch_size, seq_len, seed, device,
             dtype) -> TaskSetup:
    """Prompt + label word; the loss covers the label word's tokens only.

    Prediction: argmax of the next-token logits after the prompt, restricted to the
    first tokens of the label words (which must differ); the task's metrics score
    those predictions. Eval loss: mean cross-entropy over the label words' tokens,
    as in training. A pair fills the prompt's "{text}" and "{text_pair}" slots; when
    the whole is too long for seq_len, its end (the second text first) is cut.
    """
    pairs = data.train_pairs is not None
    prompt, words = LM_PROMPTS.get(dataset, (PAIR_PROMPT if pairs else "{text}\nLabel:", [" " + n for n in data.label_names]))
    prompt, words = opts.prompt or prompt, opts.label_words or words
    slots = ["{text}", "{text_pair}"] if pairs else ["{text}"]
    missing = [s for s in slots if s not in prompt]
    if missing or (not pairs and "{text_pair}" in prompt):
        raise ValueError(f"prompt {prompt!r} needs the slots {' and '.join(slots)} (and no other); e.g. "
                         f"{(PAIR_PROMPT if pairs else '{text}' + chr(10) + 'Sentiment:')!r}")
    if len(words) != len(data.label_names):
        raise ValueError(f"{len(words)} label_words for {len(data.label_names)} labels {data.label_names}; give one per label")
    # the tail after the last slot stays whole; everything before it is the truncatable head
    head_template, _, after = prompt.rpartition(slots[-1])
    head_template += slots[-1]
    tail = tokenizer(after, add_special_tokens=False)["input_ids"]
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    first = [ids[0] for ids in word_ids]
    if len(set(first)) < len(first):
        raise ValueError(f"label words {words} do not start with distinct tokens; give task option label_words "
                         "with distinct first words")
    budget = seq_len - len(tail) - max(len(ids) for ids in word_ids)
    if budget < 4:
        raise ValueError(f"seq_len={seq_len} leaves {budget} tokens for the text after the prompt and label; raise seq_len")
    model = load_model(entry, "causal_lm", dtype=dtype, device=device, seed=seed)
    pad = tokenizer.pad_token_id
    first_ids = torch.tensor(first, device=device)
    kind = label_kind(len(data.label_names), False)

    def encode(texts, second, labels, padding):
        """input_ids = filled prompt + tail + label word; labels = -100 except on the label word."""
        filled = [head_template.replace("{text}", t).replace("{text_pair}", p or "")
                  for t, p in zip(texts, second or [None] * len(texts))]
        heads = tokenizer(filled, truncation=True, max_length=budget)["input_ids"]
        seqs = [h + tail + word_ids[y] for h, y in zip(heads, labels)]
        width = seq_len if padding == "max_length" else max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad)
        mask = torch.zeros_like(ids)
        targets = torch.full_like(ids, -100)
        for i, (seq, y) in enumerate(zip(seqs, labels)):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            targets[i, len(seq) - len(word_ids[y]) : len(seq)] = torch.tensor(word_ids[y])
        answer_at = torch.tensor([len(h) + len(tail) - 1 for h in heads])  # last prompt token
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": targets.to(device)}, answer_at

    def make_batch(indices):
        return encode(*examples(data, "train", indices), opts.padding)[0]

    eval_batches = []
    for chunk in length_sorted_chunks(data, opts.eval_batch_size):
        texts, second, labels = examples(data, "eval", chunk)
        eval_batches.append((*encode(texts, second, labels, "longest"), torch.tensor(labels)))

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        predictions, loss_sum, tokens = [], 0.0, 0
        for batch, answer_at, labels in eval_batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()  # (B, T, V)
            rows = torch.arange(len(labels))
            predictions.append(logits[rows, answer_at.to(device)][:, first_ids].argmax(-1).cpu())
            shifted = batch["labels"][:, 1:]
            loss_sum += F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="sum").item()
            tokens += (shifted != -100).sum().item()
        labels = torch.cat([labels for *_, labels in eval_batches])
        return {**compute_metrics(torch.cat(predictions), labels, kind), "loss": loss_sum / tokens}

    return TaskSetup(model, endless(len(data.train_texts), batch_size, seed, make_batch), None, evaluate, [],
                     batch_size * seq_len, data.label_names, len(data.eval_labels), metric)
