"""Labelled text datasets read into one shape, TextData, whatever their source.

    data = load_text_data("sst2", "../shared/data", TaskOptions())   # or data_dir=None: the Hugging Face hub
    data.train_texts[0], data.label_names[data.train_labels[0]]

Sources: the four datasets in the formats of ../shared/DATA.md, a user's own
.csv / .tsv / .jsonl files (task "csv"), and Hugging Face datasets by name; after
loading, all take the same path (to_text_data), so the same checks apply: empty
splits, label sets that differ between train and eval, undecodable text.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .tasks import TaskOptions

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

@dataclass
class TextData:
    """A labelled text dataset: two splits and the class names (label id = index)."""

    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]
    label_names: list[str]


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
        try:
            from datasets import load_dataset
        except ImportError:
            raise ImportError(f"loading {dataset!r} from the hub needs the datasets package (pip install datasets); "
                              "or give data_dir (--data-dir) with the files of DATA.md") from None
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
