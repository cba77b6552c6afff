"""What a task takes (TaskOptions) and gives the trainer (TaskSetup), and the helpers every task builder shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn

from giva.config import check_field_types

from .answers import ANSWER_RULES
from .metrics import METRICS

LABEL_TYPES = ("classification", "regression")


@dataclass
class TaskOptions:
    """Task settings; a sweep's task_options override these by name (unknown names are an error)."""

    # text tasks
    max_train_examples: int | None = None  # None: the whole train split (a fixed, seeded subset otherwise)
    max_eval_examples: int = 1000  # a fixed subset keeps evaluation affordable on CPU; SST-2 dev (872) fits whole
    eval_fraction: float = 0.2  # held-out share where there is no eval split (AG News here, a lone csv file)
    eval_batch_size: int = 32  # small enough for a 49k-word LM head on 64 tokens (200 MB of logits)
    padding: str = "longest"  # pad each batch to its longest text (fast on CPU); "max_length": seq_len (fixed shapes)
    metric: str | None = None  # the row's eval_score; None: GLUE's for its tasks, else accuracy / pearson (regression)
    # csv: the user's own dataset
    train_file: str | None = None  # .csv, .tsv or .jsonl
    eval_file: str | None = None  # None: a held-out split of train_file (eval_fraction)
    text_column: str | list[str] = "text"  # a list is joined with spaces (e.g. title and description)
    text_pair_column: str | None = None  # a second text: the two go to the tokenizer as a pair (segment ids)
    label_column: str = "label"
    label_type: str = "classification"  # or "regression": real-valued labels, one-output head, MSE loss
    encoding: str = "utf-8"
    # lm:<dataset>: prompt with a "{text}" slot (and "{text_pair}" for pairs), one word per label in
    # label-id order; None: the dataset's own
    prompt: str | None = None
    label_words: list[str] | None = None
    # image tasks (image.py): "images" reads a folder of class subfolders (image_dir) or a csv / jsonl file
    # (train_file, eval_file) of image paths (image_column, relative to the file) and labels (label_column)
    image_dir: str | None = None
    image_column: str = "image"
    augment: bool = False  # train batches: a random crop of 50-100% of the area and a horizontal flip (the authors')
    # gen:<dataset> tasks (gen.py): csv / jsonl columns of gen:csv; the answer's extraction rule (None: the data's
    # kind decides: last_number, option_letter or exact_match); decoding settings over greedy (gen.GENERATION)
    question_column: str = "question"
    answer_column: str = "answer"
    options_column: str | None = None  # multiple choice: a list (jsonl) or "|"-separated options (csv)
    solution_column: str | None = None  # the completion trained on (a worked solution); None: the answer itself
    answer_rule: str | None = None
    generation: dict = field(default_factory=dict)  # e.g. {max_new_tokens = 64, num_beams = 4}
    # planted and profile
    k: int = 8  # rank of the planted change per target layer
    scale: float = 2.0  # planted singular values = scale * the layer's rms one; 2: argmax agreement before ~0.6-0.9
    target_modules: str | list[str] | None = None  # layers that get the planted change; None: the family's default
    num_labels: int = 4  # classes of an encoder's head (planted, profile)
    eval_batches: int = 4  # planted: fixed random eval batches of batch_size x seq_len

    def __post_init__(self):
        check_field_types(self, "task option")
        if self.padding not in ("longest", "max_length"):
            raise ValueError(f"padding={self.padding!r}: use 'longest' or 'max_length'")
        if self.answer_rule is not None and self.answer_rule not in ANSWER_RULES:
            raise ValueError(f"unknown answer_rule {self.answer_rule!r}; choose one of {', '.join(ANSWER_RULES)}")
        if self.label_type not in LABEL_TYPES:
            raise ValueError(f"label_type={self.label_type!r}: use {' or '.join(map(repr, LABEL_TYPES))}")
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
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
    evaluate: Callable[[nn.Module], dict] | None  # model -> {"loss", and every metric that fits}; None for profile
    trainable_modules: list[str]  # trained in full beside the adapter (a classification head)
    tokens_per_batch: int  # batch_size * seq_len (an upper bound with padding="longest")
    label_names: list[str] = field(default_factory=list)  # classes of text tasks, in id order; [] for regression
    num_eval_examples: int = 0  # predictions each evaluation scores
    metric: str = ""  # the task's own metric, a key of evaluate()'s dict ("" for profile)
    steps_per_epoch: int = 0  # full batches in one pass over the train split (train epochs); 0: no finite split
    # Results columns the task fills itself, by name (bench/columns.py): how images became pixels
    # (image_transform), the answer rule and decoding of gen: tasks, and the last evaluation's generation figures
    # (gen_time_s, gen_new_tokens), which evaluate() updates.
    task_columns: dict = field(default_factory=dict)


def head_modules(model: nn.Module) -> list[str]:
    """The new head of a seq_cls or img_cls model: every top-level part with parameters outside the pretrained body
    (classifier for BERT and ViT, pre_classifier and classifier for DistilBERT, score for decoders). The body is
    the child named base_model_prefix, else (CLIPForImageClassification: prefix "clip", child "vision_model") the
    child with the most parameters."""
    children = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    body = model.base_model_prefix if model.base_model_prefix in children else max(children, key=children.get)
    return [name for name, count in children.items() if name != body and count]


def random_tokens(generator: torch.Generator | None, batch_size: int, seq_len: int, vocab_size: int, device) -> dict:
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator).to(device)  # (B, T)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


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


def input_shape(batch: dict) -> tuple:
    """The shape of a batch's model input: input_ids (B, T) for text, pixel_values (B, C, H, W) for images."""
    return tuple((batch["input_ids"] if "input_ids" in batch else batch["pixel_values"]).shape)


def load_hub_dataset(name: str, args: tuple, instead: str):
    """datasets.load_dataset(*args) for the named dataset; a missing package or an unreachable or unknown hub
    dataset is a one-line error that says what to give `instead` (a local folder or file)."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise ImportError(f"loading {name!r} from the hub needs the datasets package (pip install datasets); or "
                          f"{instead}") from None
    try:
        return load_dataset(*args)
    except Exception as e:  # no network, no such dataset, no access: each library raises its own kind
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FileNotFoundError(f"{name!r} could not be loaded from the Hugging Face hub ({'/'.join(args)}: "
                                f"{type(e).__name__}: {reason}); {instead}") from None
