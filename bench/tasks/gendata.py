"""Question-answer data for gen: tasks, read into one shape (GenData) whatever the source.

    data = load_gen_data("arithmetic", None, TaskOptions())      # the generated word problems (no files)
    data.train[0].question, data.train[0].solution, data.train[0].answer

Sources: word problems this module generates (arithmetic: seeded, exact answers), a user's .csv / .jsonl file
(gen:csv: a question and an answer column, optionally options and a worked solution), and Hugging Face datasets by
name (gsm8k and the commonsense sets), for users with the hub. An example is a question, its options (multiple
choice) or none, the gold answer (a number, an option letter, or text) and the completion trained on (the
solution: a worked answer that ends in the gold one, or the answer itself).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import TaskOptions, load_hub_dataset
from .textdata import SPLIT_SEED, line_list, read_columns, split_rows

LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class GenExample:
    question: str
    answer: str  # the gold answer: a number, an option letter, or text
    solution: str  # what the model is trained to generate after the prompt; ends in the answer
    options: tuple[str, ...] = ()  # multiple choice: the options, lettered A, B, ... in the prompt


@dataclass
class GenData:
    train: list[GenExample]
    eval: list[GenExample]
    kind: str  # "number", "choice" or "text": what the answers are (the default answer rule follows)


# --- generated arithmetic word problems ---------------------------------------------

NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kofi", "Lea"]
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "shells", "pencils", "cards"]
ARITHMETIC_SIZES = (500, 200)  # train and eval problems: a few hundred, disjoint


def arithmetic_problem(rng: random.Random) -> GenExample:
    """One word problem of five kinds (add, take away, groups of, share equally, two steps) with its worked answer."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    friend = rng.choice([n for n in NAMES if n != name])
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(2, 60), rng.randint(2, 40)
        question, work, answer = f"{name} has {a} {item} and finds {b} more. How many {item} does {name} have now?", f"{a} + {b}", a + b
    elif kind == 1:
        a = rng.randint(10, 90)
        b = rng.randint(1, a - 1)
        question, work, answer = f"{name} had {a} {item} and gave {b} to {friend}. How many {item} are left?", f"{a} - {b}", a - b
    elif kind == 2:
        a, b = rng.randint(2, 9), rng.randint(2, 12)
        question, work, answer = f"{name} buys {a} boxes with {b} {item} in each box. How many {item} is that?", f"{a} * {b}", a * b
    elif kind == 3:
        each, b = rng.randint(2, 12), rng.randint(2, 9)
        question, work, answer = (f"{name} shares {each * b} {item} equally among {b} friends. How many {item} does "
                                  f"each friend get?"), f"{each * b} / {b}", each
    else:
        a, b = rng.randint(5, 50), rng.randint(2, 30)
        c = rng.randint(1, a + b - 1)
        question, work, answer = (f"{name} has {a} {item}, gets {b} more, then loses {c}. How many {item} does {name} "
                                  f"have?"), f"{a} + {b} - {c}", a + b - c
    return GenExample(question, str(answer), f"{work} = {answer}.")


def arithmetic_data(sizes: tuple[int, int] = ARITHMETIC_SIZES) -> GenData:
    """Seeded (the same problems for every run seed and method), each question once, train and eval disjoint."""
    rng, seen, examples = random.Random(SPLIT_SEED), set(), []
    while len(examples) < sum(sizes):
        example = arithmetic_problem(rng)
        if example.question not in seen:
            seen.add(example.question)
            examples.append(example)
    return GenData(examples[: sizes[0]], examples[sizes[0] :], "number")


# --- a user's file (gen:csv) --------------------------------------------------------


def read_gen_file(path: str, opts: TaskOptions) -> list[GenExample]:
    """Examples of a question-answer file; refused, naming the file and its lines: a missing column, an empty
    answer, an option letter beyond the options."""
    named = [("answer", opts.answer_column), ("question", opts.question_column)]
    named += [(kind, c) for kind, c in (("options", opts.options_column), ("solution", opts.solution_column)) if c]
    records, numbers = read_columns(path, opts.encoding, named)
    examples, bad = [], []
    for number, record in zip(numbers, records):
        answer = str(record[opts.answer_column]).strip()
        options: tuple[str, ...] = ()
        if opts.options_column:
            raw = record[opts.options_column]
            options = tuple(str(o).strip() for o in (raw if isinstance(raw, list) else str(raw).split("|")))
            if answer in options:  # the answer given as the option's text: its letter
                answer = LETTERS[options.index(answer)]
            if len(options) < 2 or len(options) > len(LETTERS) or answer not in LETTERS[: len(options)]:
                bad.append(number)
                continue
        solution = str(record[opts.solution_column]).strip() if opts.solution_column else answer
        examples.append(GenExample(str(record[opts.question_column]).strip(), answer, solution, options))
    if bad:
        raise ValueError(f"{path}: {line_list(bad)} have an answer that is neither an option's letter nor its text, or "
                         f"not 2 to {len(LETTERS)} options (column {opts.options_column!r}, '|'-separated in csv)")
    return examples


def answer_kind(examples: list[GenExample]) -> str:
    if examples[0].options:
        return "choice"
    numeric = all(e.answer.replace(",", "").lstrip("-").replace(".", "", 1).isdigit() for e in examples)
    return "number" if numeric else "text"


# --- the hub --------------------------------------------------------------------------


def gsm8k_example(row: dict) -> GenExample:
    """GSM8K: the solution ends in '#### N'; the answer is N."""
    answer = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
    return GenExample(row["question"], answer, row["answer"].strip())


def choice_example(question: str, options: list[str], index: int) -> GenExample:
    letter = LETTERS[index]
    return GenExample(question, letter, letter, tuple(options))


def keyed(row: dict, question_key: str) -> GenExample:
    """ARC / OpenBookQA: choices {text, label} and an answerKey among the labels (A-E, or 1-4)."""
    labels = list(row["choices"]["label"])
    return choice_example(row[question_key], list(row["choices"]["text"]), labels.index(row["answerKey"]))


# name -> (load_dataset arguments, train split, eval split, row -> GenExample)
HF_SOURCES = {
    "gsm8k": (("openai/gsm8k", "main"), "train", "test", gsm8k_example),
    "boolq": (("google/boolq",), "train", "validation",
              lambda r: choice_example(f"{r['passage']}\n{r['question']}?", ["yes", "no"], 0 if r["answer"] else 1)),
    "arc_easy": (("allenai/ai2_arc", "ARC-Easy"), "train", "test", lambda r: keyed(r, "question")),
    "arc_challenge": (("allenai/ai2_arc", "ARC-Challenge"), "train", "test", lambda r: keyed(r, "question")),
    "openbookqa": (("allenai/openbookqa", "main"), "train", "test", lambda r: keyed(r, "question_stem")),
    "piqa": (("ybisk/piqa",), "train", "validation",
             lambda r: choice_example(r["goal"], [r["sol1"], r["sol2"]], int(r["label"]))),
    "winogrande": (("allenai/winogrande", "winogrande_xl"), "train", "validation",
                   lambda r: choice_example(r["sentence"], [r["option1"], r["option2"]], int(r["answer"]) - 1)),
    "hellaswag": (("Rowan/hellaswag",), "train", "validation",
                  lambda r: choice_example(r["ctx"], list(r["endings"]), int(r["label"]))),
    "social_i_qa": (("allenai/social_i_qa",), "train", "validation",
                    lambda r: choice_example(f"{r['context']}\n{r['question']}", [r["answerA"], r["answerB"],
                                                                                 r["answerC"]], int(r["label"]) - 1)),
}
GEN_DATASETS = ("arithmetic", *HF_SOURCES, "csv")


def load_gen_data(dataset: str, data_dir: str | None, opts: TaskOptions) -> GenData:
    """The generated problems, a user's files (csv), or a dataset by name from the hub; subsets within
    max_train_examples and max_eval_examples (fixed, the same for every run seed)."""
    if dataset == "arithmetic":
        data = arithmetic_data()
    elif dataset == "csv":
        if not opts.train_file:
            raise ValueError("task gen:csv needs task option train_file (a .csv, .tsv or .jsonl file with question "
                             "and answer columns), and optionally eval_file, options_column, solution_column")
        train = read_gen_file(opts.train_file, opts)
        eval_ = read_gen_file(opts.eval_file, opts) if opts.eval_file else None
        if eval_ is None:
            train, eval_ = split_rows(train, opts.eval_fraction, opts.train_file)
        data = GenData(train, eval_, answer_kind(train + eval_))
    else:
        if data_dir:
            raise FileNotFoundError(f"gen:{dataset} is read from the Hugging Face hub: leave data_dir empty "
                                    "(no --data-dir), or give your own file as gen:csv")
        args, train_split, eval_split, convert = HF_SOURCES[dataset]
        loaded = load_hub_dataset(dataset, args, "or give your own file as gen:csv")
        train, eval_ = ([convert(row) for row in loaded[split]] for split in (train_split, eval_split))
        data = GenData(train, eval_, "choice" if train[0].options else "number")
    return GenData(pick(data.train, opts.max_train_examples), pick(data.eval, opts.max_eval_examples), data.kind)


def pick(examples: list, limit: int | None) -> list:
    """A fixed, seeded subset of at most `limit` examples, in their original order."""
    if limit is None or len(examples) <= limit:
        return examples
    keep = sorted(random.Random(SPLIT_SEED).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


if __name__ == "__main__":  # python -m bench.tasks.gendata: a few of the generated problems
    for example in arithmetic_data().train[:5]:
        print(f"{example.question}\n  -> {example.solution}")
