"""Generation scored by its answers (gen:<dataset>, for decoders): train on prompt + solution, then generate an
answer for each eval question, read it out by a stated rule (answers.py) and score accuracy.

    setup = setup_task("gen:arithmetic", "smollm2-135m", batch_size=8, seq_len=64, seed=0)
    setup.evaluate(setup.model)     # {"accuracy", "answered", "loss"}; setup.task_columns["gen_time_s"], ...

Training: the prompt ("Question: {question}\\nAnswer:", the options lettered A, B, ... for multiple choice) followed
by " " + the example's solution and the end-of-sequence token; the loss covers the solution and that token only.
Evaluation: greedy decoding by default (task option `generation` changes it: max_new_tokens, num_beams, do_sample,
temperature, top_p, top_k, repetition_penalty, stop), prompts left-padded in batches of eval_batch_size; the text is
cut at the first stop string and the end-of-sequence token, and the answer rule reads the answer out of it. The
metric is accuracy over the eval questions (a binomial count, so the report marks changes within its noise);
"answered" is the share of generations the rule found an answer in. The generation's wall time and new tokens (of
the last evaluation) go to the row apart from the training step's time; the eval loss is the teacher-forced
cross-entropy of the eval solutions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from giva import synchronize

from ..models import load_model, load_tokenizer
from .answers import RULES, extract, is_correct
from .base import TaskOptions, TaskSetup, endless
from .gendata import LETTERS, GenData, GenExample, load_gen_data
from .teacher_forced import teacher_forced_batch, teacher_forced_loss

PROMPTS = {"number": "Question: {question}\nAnswer:", "text": "Question: {question}\nAnswer:",
           "choice": "Question: {question}\n{options}\nAnswer:"}
DEFAULT_RULE = {"number": "last_number", "choice": "option_letter", "text": "exact_match"}
# Decoding: greedy unless the task option `generation` says otherwise. max_new_tokens None: the longest train
# solution's tokens plus 8 (at most 512); stop None: a line break, or a blank line where solutions span lines.
GENERATION = {"max_new_tokens": None, "do_sample": False, "num_beams": 1, "temperature": 1.0, "top_p": 1.0,
              "top_k": 50, "repetition_penalty": 1.0, "stop": None}


def answer_rule(data: GenData, opts: TaskOptions) -> str:
    """The task option answer_rule, else the data's kind's (last_number, option_letter, exact_match)."""
    rule = opts.answer_rule or DEFAULT_RULE[data.kind]
    if rule == "option_letter" and data.kind != "choice":
        raise ValueError("answer_rule option_letter needs multiple-choice examples (options_column); these have none: "
                         "use last_number or exact_match")
    return rule


def decoding_settings(generation: dict) -> dict:
    """GENERATION with the task option's values over it; unknown keys are an error."""
    unknown = sorted(set(generation) - set(GENERATION))
    if unknown:
        raise ValueError(f"unknown generation setting {unknown[0]!r}; known: {', '.join(GENERATION)}")
    return {**GENERATION, **generation}


def prompt_template(data: GenData, opts: TaskOptions) -> str:
    prompt = opts.prompt or PROMPTS[data.kind]
    slots = ["{question}", "{options}"] if data.kind == "choice" else ["{question}"]
    missing = [s for s in slots if s not in prompt]
    if missing:
        raise ValueError(f"prompt {prompt!r} lacks the slot {missing[0]}; e.g. {PROMPTS[data.kind]!r}")
    return prompt


def check(task, data_dir: str | None, opts: TaskOptions) -> None:
    """The errors a point would raise about the data and the settings, without a model."""
    data = load_gen_data(task.dataset, data_dir, opts)
    answer_rule(data, opts)
    prompt_template(data, opts)
    decoding_settings(opts.generation)


def fill(prompt: str, example: GenExample) -> str:
    options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(example.options))
    return prompt.replace("{question}", example.question).replace("{options}", options)


@dataclass
class GenTokens:
    """The token ids of prompts and solutions, and the batches made of them."""

    tokenizer: object
    prompt: str  # the template (prompt_template)
    seq_len: int
    device: torch.device

    @property
    def eos(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad(self) -> int:
        return self.tokenizer.pad_token_id

    def prompt_ids(self, example: GenExample) -> list[int]:
        return self.tokenizer(fill(self.prompt, example))["input_ids"][-self.seq_len :]  # a long prompt loses its beginning

    def solution_ids(self, example: GenExample) -> list[int]:
        return self.tokenizer(" " + example.solution, add_special_tokens=False)["input_ids"] + [self.eos]

    def training_batch(self, examples: list[GenExample]) -> dict:
        """input_ids = prompt + solution + eos, right-padded; labels = -100 except on the solution and eos. Too long
        for seq_len: the solution keeps at most half of it, the prompt loses its beginning."""
        rows = []
        for example in examples:
            head, tail = self.prompt_ids(example), self.solution_ids(example)
            if len(head) + len(tail) > self.seq_len:
                tail = tail[: max(self.seq_len // 2, self.seq_len - len(head))]
                head = head[len(head) + len(tail) - self.seq_len :] if len(head) + len(tail) > self.seq_len else head
            rows.append((head, tail))
        return teacher_forced_batch(rows, self.pad, self.device)

    def prompt_batch(self, examples: list[GenExample]) -> dict:
        """The prompts left-padded (generation continues every row from its last column)."""
        rows = [self.prompt_ids(e) for e in examples]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.pad)  # (B, T)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}


def generate_texts(model: nn.Module, batch: dict, tokens: GenTokens, settings: dict,
                   seed: int) -> tuple[list[str], int, float]:
    """(the texts generated for the batch's prompts, cut at stop strings and eos; new tokens; seconds generating)."""
    device, eos, pad = tokens.device, tokens.eos, tokens.pad
    generate_kwargs = {k: v for k, v in settings.items() if k != "stop"}  # the stop strings are cut after, too
    synchronize(device)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # sampling, if asked for, draws the same answers at every evaluation
        output = model.generate(**batch, **generate_kwargs, pad_token_id=pad, eos_token_id=eos,
                                stop_strings=settings["stop"], tokenizer=tokens.tokenizer)
    synchronize(device)
    seconds = time.perf_counter() - start
    texts, new_tokens = [], 0
    for row in output[:, batch["input_ids"].shape[1] :].tolist():
        # up to the end-of-sequence token; a row stopped by a stop string is padded after it
        length = next((i + 1 if token == eos else i for i, token in enumerate(row) if token in (eos, pad)), len(row))
        new_tokens += length
        text = tokens.tokenizer.decode(row[:length], skip_special_tokens=True)
        for stop in settings["stop"]:
            text = text.split(stop, 1)[0]
        texts.append(text)
    return texts, new_tokens, seconds


@dataclass
class GenEvaluation:
    """evaluate(model) -> {accuracy, answered, loss} over the eval questions, in chunks of eval_batch_size; the last
    evaluation's generation time and new tokens go to task_columns (gen_time_s, gen_new_tokens)."""

    examples: list[GenExample]
    tokens: GenTokens
    rule: str
    settings: dict  # decoding_settings, with max_new_tokens and stop resolved
    seed: int
    eval_batch_size: int
    task_columns: dict

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict:
        model.eval()
        correct = answered = new_tokens = 0
        seconds = loss_sum = 0.0
        tokens = 0
        for start in range(0, len(self.examples), self.eval_batch_size):
            examples = self.examples[start : start + self.eval_batch_size]
            texts, count, spent = generate_texts(model, self.tokens.prompt_batch(examples), self.tokens, self.settings,
                                                 self.seed)
            new_tokens, seconds = new_tokens + count, seconds + spent
            for text, example in zip(texts, examples):
                found = extract(self.rule, text, LETTERS[: len(example.options)])
                answered += found is not None
                correct += is_correct(self.rule, found, example.answer)
            batch = self.tokens.training_batch(examples)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            batch_loss_sum, batch_tokens = teacher_forced_loss(logits, batch["labels"])
            loss_sum, tokens = loss_sum + batch_loss_sum, tokens + batch_tokens
        self.task_columns.update(gen_time_s=seconds, gen_new_tokens=new_tokens)
        n = len(self.examples)
        return {"accuracy": correct / n, "answered": answered / n, "loss": loss_sum / tokens}


def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """A causal LM trained on prompt + solution and scored on the answers it generates (see the module doc)."""
    task.head_for(entry)  # raises where the model has no causal-LM head
    tokenizer = load_tokenizer(entry)  # random models have none: raises with the fix
    data = load_gen_data(task.dataset, data_dir, opts)
    rule = answer_rule(data, opts)
    tokens = GenTokens(tokenizer, prompt_template(data, opts), seq_len, device)
    settings = decoding_settings(opts.generation)
    if settings["max_new_tokens"] is None:
        settings["max_new_tokens"] = min(512, max(len(tokens.solution_ids(e)) for e in data.train) + 8)
    if settings["stop"] is None:
        settings["stop"] = ["\n\n"] if any("\n" in e.solution for e in data.train) else ["\n"]
    model = load(entry, "causal_lm", dtype=dtype, device=device, seed=seed)
    task_columns = {"answer_rule": RULES[rule], "decoding": json.dumps(settings, sort_keys=True)}
    evaluate = GenEvaluation(data.eval, tokens, rule, settings, seed, opts.eval_batch_size, task_columns)

    def make_batch(indices: list[int]) -> dict:
        return tokens.training_batch([data.train[i] for i in indices])

    return TaskSetup(model, endless(len(data.train), batch_size, seed, make_batch), None, evaluate, [],
                     batch_size * seq_len, num_eval_examples=len(data.eval), metric="accuracy",
                     steps_per_epoch=len(data.train) // batch_size, task_columns=task_columns)
