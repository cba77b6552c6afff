"""Classification as a causal LM: a prompt ending in one label word per class (lm:<dataset>, for decoders)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..models import load_model, load_tokenizer
from .base import TaskSetup, endless
from .metrics import compute_metrics, label_kind
from .teacher_forced import teacher_forced_batch, teacher_forced_loss
from .text import examples, length_sorted_chunks, load_task_data

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



def setup(task, entry, opts, *, batch_size, seq_len, seed, device, dtype, data_dir=None, load=load_model) -> TaskSetup:
    """Prompt + label word; the loss covers the label word's tokens only.

    Prediction: argmax of the next-token logits after the prompt, restricted to the
    first tokens of the label words (which must differ); the task's metrics score
    those predictions. Eval loss: mean cross-entropy over the label words' tokens,
    as in training. A pair fills the prompt's "{text}" and "{text_pair}" slots; when
    the whole is too long for seq_len, its end (the second text first) is cut.
    """
    task.head_for(entry)  # raises where the model has no causal-LM head
    tokenizer = load_tokenizer(entry)  # random models have none: raises with the fix
    data, metric = load_task_data(task, data_dir, opts)
    pairs = data.train_pairs is not None
    prompt, words = LM_PROMPTS.get(task.dataset, (PAIR_PROMPT if pairs else "{text}\nLabel:", [" " + n for n in data.label_names]))
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
    model = load(entry, "causal_lm", dtype=dtype, device=device, seed=seed)
    pad = tokenizer.pad_token_id
    first_ids = torch.tensor(first, device=device)
    kind = label_kind(len(data.label_names), False)

    def encode(texts, second, labels, padding):
        """input_ids = filled prompt + tail + label word; labels = -100 except on the label word."""
        filled = [head_template.replace("{text}", t).replace("{text_pair}", p or "")
                  for t, p in zip(texts, second or [None] * len(texts))]
        heads = tokenizer(filled, truncation=True, max_length=budget)["input_ids"]
        rows = [(h + tail, word_ids[y]) for h, y in zip(heads, labels)]
        batch = teacher_forced_batch(rows, pad, device, seq_len if padding == "max_length" else None)
        answer_at = torch.tensor([len(h) + len(tail) - 1 for h in heads])  # last prompt token
        return batch, answer_at

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
            batch_loss_sum, batch_tokens = teacher_forced_loss(logits, batch["labels"])
            loss_sum, tokens = loss_sum + batch_loss_sum, tokens + batch_tokens
        labels = torch.cat([labels for *_, labels in eval_batches])
        return {**compute_metrics(torch.cat(predictions), labels, kind), "loss": loss_sum / tokens}

    return TaskSetup(model, endless(len(data.train_texts), batch_size, seed, make_batch), None, evaluate, [],
                     batch_size * seq_len, data.label_names, len(data.eval_labels), metric)
