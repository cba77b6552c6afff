"""Tasks a sweep can name, each turned into a ready-to-train TaskSetup for one model.

    setup = setup_task("sst2", "minilm", batch_size=16, seq_len=64, seed=0, data_dir="../shared/data")
    batch = next(setup.train_batches); loss = setup.model(**batch).loss; setup.evaluate(setup.model)

- profile: random token batches for timing only (no evaluation); works on random models.
- planted: recover a planted rank-k change of the target layers from a teacher; needs no data.
- sst2, trec, emotion, agnews: text classification from data_dir (../shared/data/DATA.md formats),
  or by name from the Hugging Face hub when data_dir is None. csv: a user's own CSV / TSV / JSONL files.
- lm:<dataset> (and sst2-lm): the same data as a causal-LM prompt ending in a label word (decoders).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from giva.targets import find_targets, linear_shape

from .models import ModelEntry, get_entry, load_model, load_tokenizer

TEXT_DATASETS = ("sst2", "trec", "emotion", "agnews", "csv")
TASK_NAMES = ("profile", "planted", *TEXT_DATASETS, "sst2-lm", *(f"lm:{d}" for d in TEXT_DATASETS))
ENCODER_FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2")
SPLIT_SEED = 0  # held-out splits and eval subsets: the same examples for every run seed and method

# Label names in the Hugging Face datasets' order, so both sources give the same ids.
LABEL_NAMES = {
    "sst2": ["negative", "positive"],
    "trec": ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"],
    "emotion": ["sadness", "joy", "love", "anger", "fear", "surprise"],
    "agnews": ["World", "Sports", "Business", "Sci/Tech"],
}
# name -> (load_dataset arguments, train split, eval split, text column, label column)
HF_SOURCES = {
    "sst2": (("glue", "sst2"), "train", "validation", "sentence", "label"),
    "trec": (("trec",), "train", "test", "text", "coarse_label"),
    "emotion": (("dair-ai/emotion",), "train", "validation", "text", "label"),
    "agnews": (("ag_news",), "train", "test", "text", "label"),
}
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
    num_eval_examples: int = 0


@dataclass
class TextData:
    """A labelled text dataset: two splits and the class names (label id = index)."""

    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]
    label_names: list[str]


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
        return planted_setup(entry, opts, **common)
    causal_lm = task == "sst2-lm" or task.startswith("lm:")
    dataset = "sst2" if task == "sst2-lm" else task.removeprefix("lm:")
    if causal_lm and is_encoder(entry):
        raise ValueError(f"task {task!r} trains a causal LM but model {entry.name!r} is an encoder ({model_family(entry)}); "
                         f"use a decoder such as smollm2-135m, or the classification task {dataset!r}")
    tokenizer = load_tokenizer(entry)  # random models have none: raises with the fix
    data = load_text_data(dataset, data_dir, opts)
    if causal_lm:
        return lm_setup(entry, tokenizer, data, dataset, opts, **common)
    return classification_setup(entry, tokenizer, data, opts, **common)


def model_family(entry: ModelEntry) -> str:
    if entry.family:
        return entry.family
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(entry.path).model_type


def is_encoder(entry: ModelEntry) -> bool:
    return model_family(entry) in ENCODER_FAMILIES


def head_modules(model: nn.Module) -> list[str]:
    """The new classification head of a seq_cls model: classifier (BERT family) or score (decoders)."""
    return [name for name in ("classifier", "score") if isinstance(getattr(model, name, None), nn.Module)]


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
    encoder = is_encoder(entry)
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


# --- text data -------------------------------------------------------------------


def read_text(path: str, encoding: str = "utf-8") -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path} not found; check the path (and data_dir)")
    try:
        with open(path, encoding=encoding, newline="") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} cannot be decoded as {encoding} (byte {e.start}); "
                         "pass task option encoding='latin-1' (or the file's encoding)") from None


def split_rows(rows: list, fraction: float, what: str) -> tuple[list, list]:
    """A fixed held-out split: (train rows, eval rows)."""
    n_eval = round(len(rows) * fraction)
    if n_eval < 1 or n_eval >= len(rows):
        raise ValueError(f"{what} has {len(rows)} examples: too few for a held-out split of eval_fraction={fraction}; "
                         "give an eval file or more examples")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return [rows[i] for i in order[n_eval:]], [rows[i] for i in order[:n_eval]]


def read_local(dataset: str, data_dir: str, opts: TaskOptions) -> tuple[list, list]:
    """(train, eval) lists of (text, label name) from the DATA.md formats."""
    folder = os.path.join(data_dir, dataset)
    expected = {"sst2": "train.tsv and dev.tsv", "trec": "train.txt and test.txt",
                "emotion": "train.txt and val.txt", "agnews": "test.csv and classes.txt"}[dataset]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no folder {folder}: data_dir should hold {dataset}/ with {expected} "
                                "(see DATA.md), or pass data_dir=None to load the dataset by name from the hub")

    def lines(name, encoding="utf-8", header=True):
        text = read_text(os.path.join(folder, name), encoding).splitlines()
        return [line for line in text[1 if header else 0 :] if line.strip()]

    if dataset == "sst2":  # label<TAB>sentence, no quoting
        names = LABEL_NAMES["sst2"]
        parse = lambda name: [(t, names[int(y)]) for y, t in (line.split("\t", 1) for line in lines(name))]  # noqa: E731
        return parse("train.tsv"), parse("dev.tsv")
    if dataset == "trec":  # COARSE:fine question text
        parse = lambda name: [(line.split(" ", 1)[1], line.split(":", 1)[0])  # noqa: E731
                              for line in lines(name, "latin-1", header=False)]
        return parse("train.txt"), parse("test.txt")
    if dataset == "emotion":  # text;label_name
        parse = lambda name: [tuple(line.rsplit(";", 1)) for line in lines(name)]  # noqa: E731
        return parse("train.txt"), parse("val.txt")
    # agnews: "Class Index,Title,Description"; classes.txt names ids 1-4; only a test split exists
    reader = csv.reader(io.StringIO(read_text(os.path.join(folder, "test.csv"))))
    next(reader)
    rows = [(f"{title} {description}".replace("\\", " "), LABEL_NAMES["agnews"][int(y) - 1])
            for y, title, description in reader]
    return split_rows(rows, opts.eval_fraction, f"{folder}/test.csv")


def read_table(path: str, opts: TaskOptions) -> list[tuple[str, str]]:
    """(text, label) rows of a .csv, .tsv or .jsonl file; labels as strings."""
    text = read_text(path, opts.encoding)
    if path.endswith(".jsonl"):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                records += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError:
                raise ValueError(f"{path} line {number}: not valid JSON; a .jsonl file holds one object per line") from None
        if not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{path}: every line must be a JSON object with the text and label columns")
        columns = list(records[0]) if records else []
    elif path.endswith((".csv", ".tsv")):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.endswith(".tsv") else ",")
        records, columns = list(reader), reader.fieldnames or []
    else:
        raise ValueError(f"{path}: unknown file type; give a .csv, .tsv or .jsonl file")
    if not records:
        raise ValueError(f"{path} has no examples; give a file with a header line and at least one row")
    text_columns = [opts.text_column] if isinstance(opts.text_column, str) else list(opts.text_column)
    for kind, name in [("label", opts.label_column)] + [("text", c) for c in text_columns]:
        if name not in columns:
            raise ValueError(f"{kind} column {name!r} is not in {path}; its columns are {columns}; "
                             f"pass task option {kind}_column=...")
    return [(" ".join(str(r[c]) for c in text_columns), str(r[opts.label_column])) for r in records]


def sorted_labels(names) -> list[str]:
    """Label names in sorted order; numerically when all are integers ("2" before "10")."""
    names = set(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def to_text_data(train: list, eval_: list, label_names: list[str] | None, what: str) -> TextData:
    """TextData from (text, label name) rows; label names from the rows (sorted) unless given."""
    for split, rows in (("train", train), ("eval", eval_)):
        if not rows:
            raise ValueError(f"the {split} split of {what} has no examples; check the file or the split")
    train_set, eval_set = {y for _, y in train}, {y for _, y in eval_}
    if label_names is None:
        if train_set != eval_set:
            raise ValueError(f"{what}: the label sets of train and eval differ (only in train: "
                             f"{sorted(train_set - eval_set)}, only in eval: {sorted(eval_set - train_set)}); "
                             "use files with the same classes")
        label_names = sorted_labels(train_set)
    unknown = sorted((train_set | eval_set) - set(label_names))
    if unknown:
        raise ValueError(f"{what}: labels {unknown[:5]} are not among {label_names}")
    index = {name: i for i, name in enumerate(label_names)}
    return TextData([t for t, _ in train], [index[y] for _, y in train],
                    [t for t, _ in eval_], [index[y] for _, y in eval_], list(label_names))


def rows_from_hf(dataset, text_column: str, label_column: str) -> tuple[list, list[str] | None]:
    """(text, label name) rows of a Hugging Face Dataset; ClassLabel names when the column has them."""
    for name in (text_column, label_column):
        if name not in dataset.column_names:
            raise ValueError(f"column {name!r} is not in the dataset; its columns are {dataset.column_names}")
    names = getattr(dataset.features[label_column], "names", None)
    labels = dataset[label_column]
    if names is not None:
        if any(y < 0 for y in labels):
            raise ValueError("the split has unlabelled examples (label -1); use a labelled split")
        labels = [names[y] for y in labels]
    return list(zip(dataset[text_column], map(str, labels))), names


def text_data_from_hf(train, eval_, text_column: str = "text", label_column: str = "label", what: str = "dataset") -> TextData:
    """TextData from two Hugging Face Datasets (e.g. load_dataset("glue", "sst2")["train"] and ["validation"])."""
    train_rows, names = rows_from_hf(train, text_column, label_column)
    eval_rows, _ = rows_from_hf(eval_, text_column, label_column)
    return to_text_data(train_rows, eval_rows, names, what)


def load_text_data(dataset: str, data_dir: str | None, opts: TaskOptions) -> TextData:
    """One of the known datasets (from data_dir, or the hub when it is None), or the csv task's files."""
    if dataset == "csv":
        if not opts.train_file:
            raise ValueError("task csv needs task option train_file (a .csv, .tsv or .jsonl file), "
                             "and optionally eval_file, text_column, label_column")
        train = read_table(opts.train_file, opts)
        label_names = None  # two files: their label sets must agree
        if opts.eval_file:
            eval_ = read_table(opts.eval_file, opts)
        else:  # one file: its labels, though a small held-out split may miss a rare one
            label_names = sorted_labels(y for _, y in train)
            train, eval_ = split_rows(train, opts.eval_fraction, opts.train_file)
        data = to_text_data(train, eval_, label_names, opts.train_file)
    elif data_dir is None:
        from datasets import load_dataset

        args, train_split, eval_split, text_column, label_column = HF_SOURCES[dataset]
        loaded = load_dataset(*args)
        data = text_data_from_hf(loaded[train_split], loaded[eval_split], text_column, label_column, dataset)
    else:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir {data_dir} does not exist; give the folder that holds "
                                    f"{dataset}/ (e.g. ../shared/data), or data_dir=None to load from the hub")
        train, eval_ = read_local(dataset, data_dir, opts)
        data = to_text_data(train, eval_, LABEL_NAMES[dataset], os.path.join(data_dir, dataset))
    return subsample(data, opts)


def subsample(data: TextData, opts: TaskOptions) -> TextData:
    """Fixed, seeded subsets (the same for every run seed) within max_train_examples and max_eval_examples."""
    def pick(texts, labels, limit):
        if limit is None or len(texts) <= limit:
            return texts, labels
        keep = sorted(torch.randperm(len(texts), generator=torch.Generator().manual_seed(SPLIT_SEED))[:limit].tolist())
        return [texts[i] for i in keep], [labels[i] for i in keep]

    train = pick(data.train_texts, data.train_labels, opts.max_train_examples)
    eval_ = pick(data.eval_texts, data.eval_labels, opts.max_eval_examples)
    return TextData(*train, *eval_, data.label_names)


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


# --- planted rank-k change -------------------------------------------------------


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


def planted_setup(entry, opts, *, batch_size, seq_len, seed, device, dtype) -> TaskSetup:
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
    encoder = is_encoder(entry)
    student = load_model(entry, "seq_cls" if encoder else "causal_lm", dtype=dtype, device=device,
                         num_labels=opts.num_labels, seed=seed)
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
        return (centered(logits) - target).pow(2).mean() / logit_ms

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

    return TaskSetup(student, batches(), loss_fn, evaluate, [], batch_size * seq_len)
