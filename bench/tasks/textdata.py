"""Labelled text datasets read into one shape, TextData, whatever their source.

    data = load_text_data("sst2", "../shared/data", TaskOptions())   # or data_dir=None: the Hugging Face hub
    data.train_texts[0], data.label_names[data.train_labels[0]]

Sources: the datasets in the formats of docs/tasks.md (sst2, trec, emotion,
agnews, and the sentence pairs mrpc and stsb), a user's own .csv / .tsv / .jsonl
files (task "csv"), and Hugging Face datasets by name (the GLUE tasks among
them); after loading, all take the same path (to_text_data), so the same checks
apply: empty splits, label sets that differ between train and eval, undecodable
text. A sentence-pair task keeps its second texts apart (train_pairs), for the
tokenizer to encode as a pair; a regression task keeps its labels as floats.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass

import torch

from .base import TaskOptions, load_hub_dataset

SPLIT_SEED = 0  # held-out splits and eval subsets: the same examples for every run seed and method

# A row as read: (text, the pair's second text or None, label name or real value).
Row = tuple[str, "str | None", "str | float"]

# Label names in the Hugging Face datasets' order, so both sources give the same ids.
LABEL_NAMES = {
    "sst2": ["negative", "positive"],
    "trec": ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"],
    "emotion": ["sadness", "joy", "love", "anger", "fear", "surprise"],
    "agnews": ["World", "Sports", "Business", "Sci/Tech"],
    "mrpc": ["not_equivalent", "equivalent"],
}
# The files of each dataset in data_dir (DATA.md).
LOCAL_FILES = {"sst2": "train.tsv and dev.tsv", "trec": "train.txt and test.txt", "emotion": "train.txt and val.txt",
               "agnews": "test.csv and classes.txt", "mrpc": "train.tsv and dev.tsv", "stsb": "train.tsv and dev.tsv"}
REGRESSION_DATASETS = ("stsb",)
# name -> (load_dataset arguments, train split, eval split, text column, pair column or None, label column)
HF_SOURCES = {
    "sst2": (("glue", "sst2"), "train", "validation", "sentence", None, "label"),
    "cola": (("glue", "cola"), "train", "validation", "sentence", None, "label"),
    "mrpc": (("glue", "mrpc"), "train", "validation", "sentence1", "sentence2", "label"),
    "qqp": (("glue", "qqp"), "train", "validation", "question1", "question2", "label"),
    "stsb": (("glue", "stsb"), "train", "validation", "sentence1", "sentence2", "label"),
    "mnli": (("glue", "mnli"), "train", "validation_matched", "premise", "hypothesis", "label"),
    "qnli": (("glue", "qnli"), "train", "validation", "question", "sentence", "label"),
    "rte": (("glue", "rte"), "train", "validation", "sentence1", "sentence2", "label"),
    "trec": (("trec",), "train", "test", "text", None, "coarse_label"),
    "emotion": (("dair-ai/emotion",), "train", "validation", "text", None, "label"),
    "agnews": (("ag_news",), "train", "test", "text", None, "label"),
}
DATASETS = tuple(dict.fromkeys([*LOCAL_FILES, *HF_SOURCES]))  # the named ones; "csv" is the user's own


@dataclass
class TextData:
    """A labelled text dataset: two splits, the class names (label id = index), and the pairs' second texts."""

    train_texts: list[str]
    train_labels: list  # class ids (int), or real values (float) when regression
    eval_texts: list[str]
    eval_labels: list
    label_names: list[str]  # [] for regression
    train_pairs: list[str] | None = None  # the second text of each sentence pair; None for single texts
    eval_pairs: list[str] | None = None
    regression: bool = False


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


def real_value(value, path: str, line: int, column: str) -> float:
    """A regression label as a float, or an error naming the file and row."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{path} line {line}: label {value!r} in column {column!r} is not a number; "
                         "a regression task needs a real-valued label on every row (fix or drop that row)")
    return number


def glue_tsv(path: str, text: str, pair: str, label: str, parse_label) -> list[Row]:
    """Rows of a GLUE-layout .tsv (header line, tab-separated, no quoting) by column name."""
    lines = read_text(path).splitlines()
    header = lines[0].split("\t") if lines else []
    missing = [c for c in (text, pair, label) if c not in header]
    if missing:
        raise ValueError(f"{path}: columns {missing} are not in its header {header}; is it the GLUE layout of DATA.md?")
    at = [header.index(c) for c in (text, pair, label)]
    rows = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise ValueError(f"{path} line {number} has {len(cells)} tab-separated cells where the header has "
                             f"{len(header)}; fix that line")
        rows.append((cells[at[0]], cells[at[1]], parse_label(cells[at[2]], number)))
    return rows


def read_local(dataset: str, data_dir: str, opts: TaskOptions) -> tuple[list[Row], list[Row]]:
    """(train, eval) rows from the DATA.md formats."""
    folder = os.path.join(data_dir, dataset)
    if dataset not in LOCAL_FILES:
        raise FileNotFoundError(f"{dataset} is not among the datasets of data_dir ({', '.join(LOCAL_FILES)}); it is "
                                "read from the Hugging Face hub: leave data_dir empty (no --data-dir)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no folder {folder}: data_dir should hold {dataset}/ with {LOCAL_FILES[dataset]} "
                                "(see DATA.md), or pass data_dir=None to load the dataset by name from the hub")

    def lines(name, encoding="utf-8", header=True):
        text = read_text(os.path.join(folder, name), encoding).splitlines()
        return [line for line in text[1 if header else 0 :] if line.strip()]

    if dataset == "sst2":  # label<TAB>sentence, no quoting
        names = LABEL_NAMES["sst2"]
        parse = lambda name: [(t, None, names[int(y)]) for y, t in (line.split("\t", 1) for line in lines(name))]  # noqa: E731
        return parse("train.tsv"), parse("dev.tsv")
    if dataset == "trec":  # COARSE:fine question text
        parse = lambda name: [(line.split(" ", 1)[1], None, line.split(":", 1)[0])  # noqa: E731
                              for line in lines(name, "latin-1", header=False)]
        return parse("train.txt"), parse("test.txt")
    if dataset == "emotion":  # text;label_name
        parse = lambda name: [(t, None, y) for t, y in (line.rsplit(";", 1) for line in lines(name))]  # noqa: E731
        return parse("train.txt"), parse("val.txt")
    if dataset == "mrpc":  # Quality, #1 ID, #2 ID, #1 String, #2 String
        parse = lambda name: glue_tsv(os.path.join(folder, name), "#1 String", "#2 String", "Quality",  # noqa: E731
                                      lambda y, _: LABEL_NAMES["mrpc"][int(y)])
        return parse("train.tsv"), parse("dev.tsv")
    if dataset == "stsb":  # ..., sentence1, sentence2, score (a real number from 0 to 5)
        def parse(name):
            path = os.path.join(folder, name)
            return glue_tsv(path, "sentence1", "sentence2", "score", lambda y, line: real_value(y, path, line, "score"))
        return parse("train.tsv"), parse("dev.tsv")
    # agnews: "Class Index,Title,Description"; classes.txt names ids 1-4; only a test split exists
    reader = csv.reader(io.StringIO(read_text(os.path.join(folder, "test.csv"))))
    next(reader)
    rows = [(f"{title} {description}".replace("\\", " "), None, LABEL_NAMES["agnews"][int(y) - 1])
            for y, title, description in reader]
    return split_rows(rows, opts.eval_fraction, f"{folder}/test.csv")


def line_list(numbers: list[int]) -> str:
    """'lines 3, 7 and 9' (the first five, then a count)."""
    shown = ", ".join(map(str, numbers[:5])) + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
    return f"line{'s' if len(numbers) > 1 else ''} {shown}"


def read_records(path: str, encoding: str = "utf-8") -> tuple[list[dict], list[int], list[str]]:
    """(records, the file line of each, column names) of a .csv, .tsv or .jsonl file."""
    text = read_text(path, encoding)
    records, numbers = [], []
    if path.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), 1):
            try:
                if line.strip():
                    records.append(json.loads(line))
                    numbers.append(number)
            except json.JSONDecodeError:
                raise ValueError(f"{path} line {number}: not valid JSON; a .jsonl file holds one object per line") from None
        if not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{path}: every line must be a JSON object with the columns the task reads")
        return records, numbers, list(records[0]) if records else []
    if path.endswith((".csv", ".tsv")):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.endswith(".tsv") else ",")
        for record in reader:
            records.append(record)
            numbers.append(reader.line_num)  # the file line where the record ends
        return records, numbers, list(reader.fieldnames or [])
    raise ValueError(f"{path}: unknown file type; give a .csv, .tsv or .jsonl file")


def read_columns(path: str, encoding: str, named: list[tuple[str, str]]) -> tuple[list[dict], list[int]]:
    """(records, their file lines) of a table that has every named column, (kind, column name) with the first one
    filled in on every row (the label, the answer); errors name the file, its lines and the task option to set."""
    records, numbers, columns = read_records(path, encoding)
    if not records:
        raise ValueError(f"{path} has no examples; give a file with a header line and at least one row")
    for kind, name in named:
        if name not in columns:
            raise ValueError(f"{kind} column {name!r} is not in {path}; its columns are {columns}; "
                             f"pass task option {kind}_column=...")
    kind, name = named[0]
    empty = [n for n, r in zip(numbers, records) if r.get(name) is None or str(r.get(name)).strip() == ""]
    if empty:
        raise ValueError(f"{path}: {line_list(empty)} have no {kind} in column {name!r}; fill them in or drop those "
                         "rows" + (" (an empty label is not a class)" if kind == "label" else ""))
    return records, numbers


def read_table(path: str, opts: TaskOptions) -> list[Row]:
    """(text, pair, label) rows of a .csv, .tsv or .jsonl file; labels as strings, or floats for regression.

    Refused, naming the file and its lines: a missing or empty label, a regression label that is not a
    number, a classification file with a single class, or labels that all look real-valued (regression?).
    """
    text_columns = [opts.text_column] if isinstance(opts.text_column, str) else list(opts.text_column)
    named = [("label", opts.label_column)] + [("text", c) for c in text_columns]
    named += [("text_pair", opts.text_pair_column)] if opts.text_pair_column else []
    records, numbers = read_columns(path, opts.encoding, named)
    labels = [r.get(opts.label_column) for r in records]
    if opts.label_type == "regression":
        labels = [real_value(y, path, n, opts.label_column) for y, n in zip(labels, numbers)]
    else:
        labels = [str(y).strip() for y in labels]
        check_classes(labels, numbers, path, opts.label_column)
    pairs = [str(r[opts.text_pair_column]) for r in records] if opts.text_pair_column else [None] * len(records)
    texts = [" ".join(str(r[c]) for c in text_columns) for r in records]
    return list(zip(texts, pairs, labels))


def check_classes(labels: list[str], numbers: list[int], path: str, column: str) -> None:
    """A classification file needs two classes or more, and class names that are not real numbers."""
    classes = set(labels)
    if len(classes) < 2:
        raise ValueError(f"{path}: all {len(labels)} rows ({line_list(numbers)}) have the label {labels[0]!r} in "
                         f"column {column!r}; a classifier needs at least two classes: check label_column or the file")

    def real_not_integer(y):
        try:
            return not float(y).is_integer()
        except ValueError:
            return False

    if all(real_not_integer(y) or y.lstrip("-").isdigit() for y in classes) and any(map(real_not_integer, classes)):
        example = next(y for y in classes if real_not_integer(y))
        raise ValueError(f"{path}: the labels of column {column!r} are real numbers (e.g. {example!r}), which would make "
                         f"{len(classes)} classes; pass task option label_type='regression', or integer class labels")


def sorted_labels(names) -> list[str]:
    """Label names in sorted order; numerically when all are integers ("2" before "10")."""
    names = set(names)
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def to_text_data(train: list[Row], eval_: list[Row], label_names: list[str] | None, what: str,
                 regression: bool = False) -> TextData:
    """TextData from (text, pair, label) rows; class names from the rows (sorted) unless given, none for regression."""
    for split, rows in (("train", train), ("eval", eval_)):
        if not rows:
            raise ValueError(f"the {split} split of {what} has no examples; check the file or the split")
    pairs = any(p is not None for _, p, _ in train + eval_)

    def second(rows):
        return [p for _, p, _ in rows] if pairs else None

    if regression:
        return TextData([t for t, _, _ in train], [float(y) for *_, y in train], [t for t, _, _ in eval_],
                        [float(y) for *_, y in eval_], [], second(train), second(eval_), regression=True)
    train_set, eval_set = {y for *_, y in train}, {y for *_, y in eval_}
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
    return TextData([t for t, _, _ in train], [index[y] for *_, y in train], [t for t, _, _ in eval_],
                    [index[y] for *_, y in eval_], list(label_names), second(train), second(eval_))


def rows_from_hf(dataset, text_column: str, label_column: str, pair_column: str | None = None,
                 regression: bool = False) -> tuple[list[Row], list[str] | None]:
    """(text, pair, label) rows of a Hugging Face Dataset; ClassLabel names when the column has them."""
    for name in (text_column, label_column, *([pair_column] if pair_column else [])):
        if name not in dataset.column_names:
            raise ValueError(f"column {name!r} is not in the dataset; its columns are {dataset.column_names}")
    names = getattr(dataset.features[label_column], "names", None)
    labels = dataset[label_column]
    if regression:
        labels = [real_value(y, "the dataset", i + 1, label_column) for i, y in enumerate(labels)]
    elif names is not None:
        if any(y < 0 for y in labels):
            raise ValueError("the split has unlabelled examples (label -1); use a labelled split")
        labels = [names[y] for y in labels]
    else:
        labels = list(map(str, labels))
    pairs = dataset[pair_column] if pair_column else [None] * len(labels)
    return list(zip(dataset[text_column], pairs, labels)), names


def text_data_from_hf(train, eval_, text_column: str = "text", label_column: str = "label", what: str = "dataset",
                      pair_column: str | None = None, regression: bool = False) -> TextData:
    """TextData from two Hugging Face Datasets (e.g. load_dataset("glue", "mrpc")["train"] and ["validation"])."""
    train_rows, names = rows_from_hf(train, text_column, label_column, pair_column, regression)
    eval_rows, _ = rows_from_hf(eval_, text_column, label_column, pair_column, regression)
    return to_text_data(train_rows, eval_rows, names, what, regression)


def load_text_data(dataset: str, data_dir: str | None, opts: TaskOptions) -> TextData:
    """One of the named datasets (from data_dir, or the hub when it is None), or the csv task's files."""
    regression = opts.label_type == "regression" if dataset == "csv" else dataset in REGRESSION_DATASETS
    if dataset != "csv" and (opts.text_pair_column or opts.label_type != "classification"):
        raise ValueError(f"task options text_pair_column and label_type are for the csv task; {dataset} has its own "
                         "columns and label type: drop them")
    if dataset == "csv":
        if not opts.train_file:
            raise ValueError("task csv needs task option train_file (a .csv, .tsv or .jsonl file), "
                             "and optionally eval_file, text_column, text_pair_column, label_column, label_type")
        train = read_table(opts.train_file, opts)
        label_names = None  # two files: their label sets must agree
        if opts.eval_file:
            eval_ = read_table(opts.eval_file, opts)
        else:  # one file: its labels, though a small held-out split may miss a rare one
            label_names = None if regression else sorted_labels(y for *_, y in train)
            train, eval_ = split_rows(train, opts.eval_fraction, opts.train_file)
        data = to_text_data(train, eval_, label_names, opts.train_file, regression)
    elif data_dir is None:
        args, train_split, eval_split, text_column, pair_column, label_column = HF_SOURCES[dataset]
        loaded = load_hub_dataset(dataset, args, "or give data_dir (--data-dir) with the files of DATA.md")
        data = text_data_from_hf(loaded[train_split], loaded[eval_split], text_column, label_column, dataset,
                                 pair_column, regression)
    else:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir {data_dir} does not exist; give the folder that holds "
                                    f"{dataset}/ (e.g. ../shared/data), or data_dir=None to load from the hub")
        train, eval_ = read_local(dataset, data_dir, opts)
        data = to_text_data(train, eval_, LABEL_NAMES.get(dataset), os.path.join(data_dir, dataset), regression)
    return subsample(data, opts)


def subsample(data: TextData, opts: TaskOptions) -> TextData:
    """Fixed, seeded subsets (the same for every run seed) within max_train_examples and max_eval_examples."""
    def pick(columns: list, limit):
        n = len(columns[0])
        if limit is None or n <= limit:
            return columns
        keep = sorted(torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))[:limit].tolist())
        return [None if c is None else [c[i] for i in keep] for c in columns]

    train_texts, train_labels, train_pairs = pick([data.train_texts, data.train_labels, data.train_pairs],
                                                  opts.max_train_examples)
    eval_texts, eval_labels, eval_pairs = pick([data.eval_texts, data.eval_labels, data.eval_pairs], opts.max_eval_examples)
    return TextData(train_texts, train_labels, eval_texts, eval_labels, data.label_names, train_pairs, eval_pairs,
                    data.regression)
