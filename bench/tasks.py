"""Tasks a sweep can name, each turned into a ready-to-train TaskSetup for one model.

    setup = setup_task("sst2", "minilm", batch_size=16, seq_len=64, seed=0, data_dir="../shared/data")
    batch = next(setup.train_batches); loss = setup.model(**batch).loss; setup.evaluate(setup.model)

- profile: random token batches for timing only (no evaluation); works on random models.
- planted: recover a planted rank-k change of the target layers from a teacher; needs no data (planted.py).
- sst2, trec, emotion, agnews: text classification from data_dir (../shared/data/DATA.md formats),
  or by name from the Hugging Face hub when data_dir is None. csv: a user's own CSV / TSV / JSONL files.
  Reading the data is textdata.py's job; this module adds the model, batches, loss and evaluation.
- lm:<dataset> (and sst2-lm): the same data as a causal-LM prompt ending in a label word (decoders).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import ModelEntry, choose_head, get_entry, load_model, load_tokenizer
from .textdata import TextData, load_text_data

TEXT_DATASETS = ("sst2", "trec", "emotion", "agnews", "csv")
TASK_NAMES = ("profile", "planted", *TEXT_DATASETS, "sst2-lm", *(f"lm:{d}" for d in TEXT_DATASETS))

# Causal-LM variant: prompt and one word per label (in label-id order; a leading space keeps it one word).
LM_PROMPTS = {
    "sst2": ("{text}\nSentiment:", [" negative", " positive"]),
    "trec": ("{text}\nQuestion type:", [" abbreviation", " entity", " description", " person", " location", " number"]),
    "emotion": ("{text}\nEmotion:", [" sadness", " joy", " love", " anger", " fear", " surprise"]),
    "agnews": ("{text}\nTopic:", [" world", " sports", " business", " technology"]),
}


@dataclass
class TaskOptions:
    """Task settings; a sweep's task_options override these by name (unknown names are an error)."""

    # text tasks
    max_train_examples: int | None = None  # None: the whole train split (a fixed, seeded subset otherwise)
    max_eval_examples: int = 1000  # a fixed subset keeps evaluation affordable on CPU; SST-2 dev (872) fits whole
    eval_fraction: float = 0.2  # held-out share where there is no eval split (AG News here, a lone csv file)
    eval_batch_size: int = 32  # small enough for a 49k-word LM head on 64 tokens (200 MB of logits)
    padding: str = "longest"  # pad each batch to its longest text (fast on CPU); "max_length": seq_len (fixed shapes)
    # csv: the user's own dataset
    train_file: str | None = None  # .csv, .tsv or .jsonl
    eval_file: str | None = None  # None: a held-out split of train_file (eval_fraction)
    text_column: str | list[str] = "text"  # a list is joined with spaces (e.g. title and description)
    label_column: str = "label"
    encoding: str = "utf-8"
    # lm:<dataset>: prompt with a "{text}" slot, and one word per label in label-id order; None: the dataset's own
    prompt: str | None = None
    label_words: list[str] | None = None
    # planted and profile
    k: int = 8  # rank of the planted change per target layer
    scale: float = 2.0  # planted singular values = scale * the layer's rms one; 2: argmax agreement before ~0.6-0.9
    target_modules: str | list[str] | None = None  # layers that get the planted change; None: the family's default
    num_labels: int = 4  # classes of an encoder's head (planted, profile)
    eval_batches: int = 4  # planted: fixed random eval batches of batch_size x seq_len

    def __post_init__(self):
        if self.padding not in ("longest", "max_length"):
            raise ValueError(f"padding={self.padding!r}: use 'longest' or 'max_length'")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction={self.eval_fraction!r} must be between 0 and 1, e.g. 0.2")
        for name in ("max_eval_examples", "eval_batch_size", "k", "num_labels", "eval_batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"task option {name}={getattr(self, name)!r} must be a positive integer")

    @classmethod
    def from_dict(cls, options: dict | None) -> "TaskOptions":
        known = [f.name for f in fields(cls)]
        unknown = [k for k in options or {} if k not in known]
        if unknown:
            raise ValueError(f"unknown task option {unknown[0]!r}; known options: {', '.join(known)}")
        return cls(**(options or {}))


@dataclass
class TaskSetup:
    model: nn.Module  # loaded with the head the task needs, on the device
    train_batches: Iterator[dict]  # endless, seeded order; dicts of tensors on the device; model(**batch) works
    loss_fn: Callable | None  # loss_fn(output, batch) -> scalar; None: the output's .loss
    evaluate: Callable[[nn.Module], dict] | None  # model -> {"accuracy", "loss"} on the eval split; None for profile
    trainable_modules: list[str]  # trained in full beside the adapter (a classification head)
    tokens_per_batch: int  # batch_size * seq_len (an upper bound with padding="longest")
    label_names: list[str] = field(default_factory=list)  # classes of text tasks, in id order
    num_eval_examples: int = 0  # predictions the accuracy counts (planted: tokens of a decoder); 0 for profile


def setup_task(task: str, model_name: str, *, batch_size: int, seq_len: int, seed: int, device="cpu",
               dtype: str = "float32", data_dir: str | None = None, options: dict | None = None) -> TaskSetup:
    """The model with the head `task` needs, its seeded train batches, loss and evaluation."""
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    opts = TaskOptions.from_dict(options)
    entry = get_entry(model_name)
    device = torch.device(device)
    common = dict(batch_size=batch_size, seq_len=seq_len, seed=seed, device=device, dtype=dtype)
    if task == "profile":
        return profile_setup(entry, opts, **common)
    if task == "planted":
        from .planted import planted_setup  # planted.py builds on this module's TaskSetup and helpers

        return planted_setup(entry, opts, **common)
    causal_lm = task_head(task, entry) == "causal_lm"  # raises where the model has no such head
    dataset = "sst2" if task == "sst2-lm" else task.removeprefix("lm:")
    tokenizer = load_tokenizer(entry)  # random models have none: raises with the fix
    data = load_text_data(dataset, data_dir, opts)
    if causal_lm:
        return lm_setup(entry, tokenizer, data, dataset, opts, **common)
    return classification_setup(entry, tokenizer, data, opts, **common)


def task_head(task: str, entry: ModelEntry) -> str:
    """The head `task` loads on this model: class labels need seq_cls, lm: tasks causal_lm, profile and
    planted the body's own (models.choose_head decides and checks)."""
    if task in ("profile", "planted"):
        return choose_head(entry, task, None)
    return choose_head(entry, task, "causal_lm" if task == "sst2-lm" or task.startswith("lm:") else "seq_cls")


def head_modules(model: nn.Module) -> list[str]:
    """The new head of a seq_cls model: every top-level part with parameters outside the pretrained body
    (classifier for BERT, pre_classifier and classifier for DistilBERT, score for decoders)."""
    return [name for name, child in model.named_children()
            if name != model.base_model_prefix and any(True for _ in child.parameters())]


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


def random_tokens(generator: torch.Generator, batch_size: int, seq_len: int, vocab_size: int, device) -> dict:
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator).to(device)  # (B, T)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


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


# --- classification --------------------------------------------------------------


def classification_setup(entry, tokenizer, data: TextData, opts, *, batch_size, seq_len, seed, device, dtype) -> TaskSetup:
    """A seq_cls head with one output per class (classifier for encoders, score for decoders), cross-entropy."""
    model = load_model(entry, "seq_cls", dtype=dtype, device=device, num_labels=len(data.label_names), seed=seed)
    model.config.pad_token_id = tokenizer.pad_token_id  # decoders classify at the last non-pad token

    def encode(texts, labels, padding):
        batch = tokenizer(texts, truncation=True, max_length=seq_len, padding=padding, return_tensors="pt")
        batch["labels"] = torch.tensor(labels)
        return {k: v.to(device) for k, v in batch.items()}

    def make_batch(indices):
        return encode([data.train_texts[i] for i in indices], [data.train_labels[i] for i in indices], opts.padding)

    eval_batches = [encode(*chunk, "longest") for chunk in length_sorted_chunks(tokenizer, data, opts.eval_batch_size)]

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        correct, loss_sum = 0, 0.0
        for batch in eval_batches:
            logits = model(**batch).logits.float()  # (B, classes)
            loss_sum += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
            correct += (logits.argmax(-1) == batch["labels"]).sum().item()
        n = len(data.eval_labels)
        return {"accuracy": correct / n, "loss": loss_sum / n}

    return TaskSetup(model, endless(len(data.train_texts), batch_size, seed, make_batch), None, evaluate,
                     head_modules(model), batch_size * seq_len, data.label_names, len(data.eval_labels))


def length_sorted_chunks(tokenizer, data: TextData, size: int) -> list[tuple[list[str], list[int]]]:
    """Eval examples in chunks of similar length (little padding); results do not depend on the order."""
    order = sorted(range(len(data.eval_texts)), key=lambda i: len(data.eval_texts[i]))
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    return [([data.eval_texts[i] for i in c], [data.eval_labels[i] for i in c]) for c in chunks]


# --- causal-LM classification ----------------------------------------------------


def lm_setup(entry, tokenizer, data: TextData, dataset: str, opts, *, batch_size, seq_len, seed, device, dtype) -> TaskSetup:
    """Prompt + label word; the loss covers the label word's tokens only.

    Accuracy: argmax of the next-token logits after the prompt, restricted to the
    first tokens of the label words (which must differ). Eval loss: mean
    cross-entropy over the label words' tokens, as in training.
    """
    prompt, words = LM_PROMPTS.get(dataset, ("{text}\nLabel:", [" " + n for n in data.label_names]))
    prompt, words = opts.prompt or prompt, opts.label_words or words
    if "{text}" not in prompt:
        raise ValueError(f"prompt {prompt!r} has no {{text}} slot; e.g. '{{text}}\\nSentiment:'")
    if len(words) != len(data.label_names):
        raise ValueError(f"{len(words)} label_words for {len(data.label_names)} labels {data.label_names}; give one per label")
    before, after = prompt.split("{text}", 1)
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

    def encode(texts, labels, padding):
        """input_ids = text + prompt tail + label word; labels = -100 except on the label word."""
        heads = tokenizer([before + t for t in texts], truncation=True, max_length=budget)["input_ids"]
        seqs = [h + tail + word_ids[y] for h, y in zip(heads, labels)]
        width = seq_len if padding == "max_length" else max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad)
        mask = torch.zeros_like(ids)
        targets = torch.full_like(ids, -100)
        for i, (seq, h, y) in enumerate(zip(seqs, heads, labels)):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            targets[i, len(seq) - len(word_ids[y]) : len(seq)] = torch.tensor(word_ids[y])
        answer_at = torch.tensor([len(h) + len(tail) - 1 for h in heads])  # last prompt token
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": targets.to(device)}, answer_at

    def make_batch(indices):
        return encode([data.train_texts[i] for i in indices], [data.train_labels[i] for i in indices], opts.padding)[0]

    eval_batches = [(*encode(t, y, "longest"), torch.tensor(y))
                    for t, y in length_sorted_chunks(tokenizer, data, opts.eval_batch_size)]

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict:
        model.eval()
        correct, loss_sum, tokens = 0, 0.0, 0
        for batch, answer_at, labels in eval_batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()  # (B, T, V)
            rows = torch.arange(len(labels))
            predicted = logits[rows, answer_at.to(device)][:, first_ids].argmax(-1).cpu()
            correct += (predicted == labels).sum().item()
            shifted = batch["labels"][:, 1:]
            loss_sum += F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=-100, reduction="sum").item()
            tokens += (shifted != -100).sum().item()
        return {"accuracy": correct / len(data.eval_labels), "loss": loss_sum / tokens}

    return TaskSetup(model, endless(len(data.train_texts), batch_size, seed, make_batch), None, evaluate, [],
                     batch_size * seq_len, data.label_names, len(data.eval_labels))
