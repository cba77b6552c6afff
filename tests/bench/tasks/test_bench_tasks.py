"""bench.tasks, bench.textdata and bench.planted: the datasets as read from ../shared/data, the generic loader, the hub conversion,
synthetic tasks, and a clear error for every bad input."""

from __future__ import annotations

import json

import pytest
import torch

from bench.tasks import TASK_NAMES, setup_task
from bench.tasks.base import TaskOptions
from bench.tasks.textdata import LABEL_NAMES, load_text_data, text_data_from_hf, to_text_data


def write(path, text: str, encoding="utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


ROWS = [(f"example number {i} is {'great' if i % 3 == 0 else 'bad' if i % 3 == 1 else 'fine'}",
         ["pos", "neg", "mid"][i % 3]) for i in range(40)]


def csv_text(rows, sep=",") -> str:
    return "\n".join([f"text{sep}label"] + [f"{t}{sep}{y}" for t, y in rows]) + "\n"


def jsonl_text(rows) -> str:
    return "\n".join(json.dumps({"text": t, "label": y, "id": i}) for i, (t, y) in enumerate(rows)) + "\n"


# --- the shared datasets ---------------------------------------------------------


@pytest.mark.parametrize("name, train_n, eval_n, classes", [
    ("sst2", 67349, 872, 2), ("trec", 5452, 500, 6), ("emotion", 16000, 2000, 6), ("agnews", 6080, 1520, 4)])
def test_shared_datasets_read_whole(data_dir, name, train_n, eval_n, classes):
    opts = TaskOptions(max_eval_examples=10_000)
    data = load_text_data(name, data_dir, opts)
    assert (len(data.train_texts), len(data.eval_texts)) == (train_n, eval_n)
    assert data.label_names == LABEL_NAMES[name]
    assert set(data.train_labels) == set(data.eval_labels) == set(range(classes))
    assert all(isinstance(t, str) and t.strip() for t in data.train_texts + data.eval_texts)


def test_shared_datasets_parse_known_lines(data_dir):
    sst2 = load_text_data("sst2", data_dir, TaskOptions(max_eval_examples=10_000))
    assert (sst2.train_texts[0], sst2.train_labels[0]) == ("hide new secretions from the parental units", 0)
    assert (sst2.eval_texts[0], sst2.eval_labels[0]) == ("one long string of cliches .", 0)
    trec = load_text_data("trec", data_dir, TaskOptions(max_eval_examples=10_000))
    assert trec.train_texts[0] == "How did serfdom develop in and then leave Russia ?"
    assert trec.label_names[trec.train_labels[0]] == "DESC"
    emotion = load_text_data("emotion", data_dir, TaskOptions(max_eval_examples=10_000))
    assert (emotion.train_texts[0], emotion.label_names[emotion.train_labels[0]]) == ("i didnt feel humiliated", "sadness")


def test_agnews_held_out_split_is_fixed_and_disjoint(data_dir):
    a = load_text_data("agnews", data_dir, TaskOptions(max_eval_examples=10_000))
    b = load_text_data("agnews", data_dir, TaskOptions(max_eval_examples=10_000))
    assert a == b
    assert not set(a.train_texts) & set(a.eval_texts) - {t for t in a.train_texts if a.train_texts.count(t) > 1}
    assert "Fears for T N pension after talks Unions representing workers" in " ".join(a.train_texts + a.eval_texts)


def test_eval_subset_is_fixed_whatever_the_seed(data_dir):
    opts = TaskOptions(max_eval_examples=100, max_train_examples=500)
    data = load_text_data("emotion", data_dir, opts)
    assert (len(data.train_texts), len(data.eval_texts)) == (500, 100)
    assert data == load_text_data("emotion", data_dir, opts)


# --- setups on the real model ------------------------------------------------------


def test_sst2_setup_on_minilm(data_dir):
    setup = setup_task("sst2", "minilm", batch_size=4, seq_len=16, seed=0, data_dir=data_dir,
                       options={"max_eval_examples": 40})
    assert setup.trainable_modules == ["classifier"]
    assert setup.model.config.num_labels == 2 and setup.label_names == ["negative", "positive"]
    assert setup.tokens_per_batch == 64 and setup.loss_fn is None and setup.num_eval_examples == 40
    batch = next(setup.train_batches)
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] <= 16
    assert batch["labels"].tolist() != [] and set(batch["labels"].tolist()) <= {0, 1}
    assert torch.isfinite(setup.model(**batch).loss)
    metrics = setup.evaluate(setup.model)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0.0
    again = setup_task("sst2", "minilm", batch_size=4, seq_len=16, seed=0, data_dir=data_dir,
                       options={"max_eval_examples": 40, "padding": "max_length"})
    fixed = next(again.train_batches)
    assert fixed["input_ids"].shape == (4, 16)
    assert fixed["labels"].tolist() == batch["labels"].tolist()  # same seed, same order
    other = setup_task("sst2", "minilm", batch_size=4, seq_len=16, seed=1, data_dir=data_dir,
                       options={"max_eval_examples": 40})
    assert [next(other.train_batches)["input_ids"].tolist() for _ in range(2)] != \
           [batch["input_ids"].tolist(), next(setup.train_batches)["input_ids"].tolist()]


# --- the generic loader --------------------------------------------------------------


@pytest.mark.parametrize("suffix, make", [(".csv", csv_text), (".tsv", lambda r: csv_text(r, "\t")), (".jsonl", jsonl_text)])
def test_generic_loader_held_out_split(tmp_path, suffix, make):
    path = write(tmp_path / f"data{suffix}", make(ROWS))
    data = load_text_data("csv", None, TaskOptions(train_file=path, eval_fraction=0.25))
    assert data.label_names == ["mid", "neg", "pos"]  # sorted
    assert (len(data.train_texts), len(data.eval_texts)) == (30, 10)
    texts = dict(ROWS)
    for text, label in zip(data.train_texts + data.eval_texts, data.train_labels + data.eval_labels):
        assert data.label_names[label] == texts[text]
    assert sorted(data.train_texts + data.eval_texts) == sorted(texts)
    assert data == load_text_data("csv", None, TaskOptions(train_file=path, eval_fraction=0.25))


@pytest.mark.parametrize("suffix, make", [(".csv", csv_text), (".tsv", lambda r: csv_text(r, "\t")), (".jsonl", jsonl_text)])
def test_generic_loader_with_eval_file(tmp_path, suffix, make):
    train = write(tmp_path / f"train{suffix}", make(ROWS[:30]))
    eval_ = write(tmp_path / f"eval{suffix}", make(ROWS[30:]))
    data = load_text_data("csv", None, TaskOptions(train_file=train, eval_file=eval_))
    assert data.train_texts == [t for t, _ in ROWS[:30]] and data.eval_texts == [t for t, _ in ROWS[30:]]
    assert [data.label_names[y] for y in data.eval_labels] == [y for _, y in ROWS[30:]]


def test_generic_loader_quoted_csv_joined_text_columns_and_numeric_labels(tmp_path):
    rows = ['title,body,stars'] + [f'"Title, {i}","body {i}",{[2, 10, 1][i % 3]}' for i in range(12)]
    path = write(tmp_path / "reviews.csv", "\n".join(rows))
    data = load_text_data("csv", None, TaskOptions(train_file=path, text_column=["title", "body"],
                                                  label_column="stars", eval_fraction=0.25))
    assert data.label_names == ["1", "2", "10"]  # numeric order
    assert "Title, 0 body 0" in data.train_texts + data.eval_texts


def test_csv_task_trains_minilm_head(tmp_path):
    path = write(tmp_path / "data.csv", csv_text(ROWS))
    setup = setup_task("csv", "minilm", batch_size=8, seq_len=16, seed=0, options={"train_file": path})
    assert setup.model.config.num_labels == 3 and setup.label_names == ["mid", "neg", "pos"]
    assert setup.num_eval_examples == 8
    assert torch.isfinite(setup.model(**next(setup.train_batches)).loss)
    assert 0.0 <= setup.evaluate(setup.model)["accuracy"] <= 1.0


# --- Hugging Face datasets path -----------------------------------------------------


def test_hf_dataset_conversion_matches_the_local_reader(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    train = Dataset.from_dict({"sentence": ["good film", "bad film", "great", "awful"], "label": [1, 0, 1, 0]},
                              features=features)
    eval_ = Dataset.from_dict({"sentence": ["fine", "poor"], "label": [1, 0]}, features=features)
    data = text_data_from_hf(train, eval_, "sentence", "label")
    assert data.label_names == ["negative", "positive"]  # the ClassLabel's names, in its order
    assert data.train_texts == ["good film", "bad film", "great", "awful"] and data.train_labels == [1, 0, 1, 0]
    assert data.eval_labels == [1, 0]
    # Same rows through the generic file reader: the same TextData.
    local = to_text_data([("good film", None, "positive"), ("bad film", None, "negative"), ("great", None, "positive"),
                          ("awful", None, "negative")], [("fine", None, "positive"), ("poor", None, "negative")], None, "local")
    assert local == data


def test_hf_dataset_string_labels_and_unlabelled_split():
    from datasets import ClassLabel, Dataset, Features, Value

    train = Dataset.from_dict({"text": ["a", "b", "c"], "topic": ["zeta", "alpha", "zeta"]})
    data = text_data_from_hf(train, train, label_column="topic")
    assert data.label_names == ["alpha", "zeta"] and data.train_labels == [1, 0, 1]
    unlabelled = Dataset.from_dict({"text": ["x"], "label": [-1]},
                                   features=Features({"text": Value("string"), "label": ClassLabel(names=["n", "p"])}))
    with pytest.raises(ValueError, match="unlabelled"):
        text_data_from_hf(unlabelled, unlabelled)
    with pytest.raises(ValueError, match="column 'sentence' is not in the dataset"):
        text_data_from_hf(train, train, text_column="sentence", label_column="topic")


# --- synthetic tasks ----------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["llama-2m", "gpt2-tiny"])
def test_profile_decoder_batches_are_seeded(model_name):
    a = setup_task("profile", model_name, batch_size=2, seq_len=8, seed=3)
    b = setup_task("profile", model_name, batch_size=2, seq_len=8, seed=3)
    c = setup_task("profile", model_name, batch_size=2, seq_len=8, seed=4)
    batch = next(a.train_batches)
    assert a.evaluate is None and a.trainable_modules == [] and a.tokens_per_batch == 16
    assert torch.equal(batch["input_ids"], next(b.train_batches)["input_ids"])
    assert not torch.equal(batch["input_ids"], next(c.train_batches)["input_ids"])
    assert torch.equal(batch["labels"], batch["input_ids"])
    assert torch.isfinite(a.model(**batch).loss)


def test_profile_encoder_gets_random_labels_and_head():
    setup = setup_task("profile", "minilm", batch_size=4, seq_len=8, seed=0, options={"num_labels": 3})
    batch = next(setup.train_batches)
    assert batch["labels"].shape == (4,) and int(batch["labels"].max()) < 3
    assert setup.trainable_modules == ["classifier"] and setup.model.config.num_labels == 3
    assert torch.isfinite(setup.model(**batch).loss)


@pytest.mark.parametrize("model_name", ["llama-2m", "gpt2-tiny", "minilm"])
def test_planted_teacher_differs_and_student_is_the_base(model_name):
    from bench.models import get_entry, load_model

    setup = setup_task("planted", model_name, batch_size=2, seq_len=8, seed=0, options={"k": 2, "eval_batches": 2})
    assert setup.trainable_modules == [] and setup.loss_fn is not None
    head = "seq_cls" if model_name == "minilm" else "causal_lm"
    base = load_model(get_entry(model_name), head, num_labels=4, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(base.state_dict().values(), setup.model.state_dict().values()))
    before = setup.evaluate(setup.model)
    assert 0.0 <= before["accuracy"] < 1.0 and before["loss"] > 0.01  # the teacher predicts differently
    batch = next(setup.train_batches)
    loss = setup.loss_fn(setup.model(**batch), batch)
    assert loss.ndim == 0 and loss.item() > 0
    copied = {k: v.clone() for k, v in batch.items()}  # not the cached tensors: the teacher runs again
    assert torch.allclose(setup.loss_fn(setup.model(**copied), copied), loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_planted_loss_gives_autograd_s_value_and_gradient(dtype):
    """CenteredMSE, the planted loss in a few passes, against the same loss written out for autograd, on a target
    centered (as the teacher's) and not (its gradient then still goes through the centering)."""
    from bench.tasks.planted import CenteredMSE, centered

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 200, generator=generator).mul(4).to(dtype).requires_grad_()
    for target in (centered(torch.randn(3, 5, 200, generator=generator)), torch.randn(3, 5, 200, generator=generator) + 2):
        expected = (centered(logits) - target).pow(2).mean()
        (expected_grad,) = torch.autograd.grad(expected, logits)
        value = CenteredMSE.apply(logits, target)
        (grad,) = torch.autograd.grad(value * 3, logits)
        assert grad.dtype == dtype and torch.allclose(value, expected, rtol=1e-5)
        assert torch.allclose(grad.float(), 3 * expected_grad.float(), rtol=1e-2 if dtype == torch.bfloat16 else 1e-4,
                              atol=1e-6)


def test_planted_scale_controls_the_change():
    small = setup_task("planted", "llama-2m", batch_size=2, seq_len=8, seed=0, options={"scale": 0.5, "eval_batches": 1})
    large = setup_task("planted", "llama-2m", batch_size=2, seq_len=8, seed=0, options={"scale": 8.0, "eval_batches": 1})
    assert small.evaluate(small.model)["loss"] < large.evaluate(large.model)["loss"]


# --- bad input: one clear error each --------------------------------------------------


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'sst3'; choose one of profile, planted, sst2"):
        setup_task("sst3", "minilm", batch_size=2, seq_len=8, seed=0)
    assert "lm:sst2" in TASK_NAMES and "csv" in TASK_NAMES


def test_unknown_or_bad_task_option():
    with pytest.raises(ValueError, match="unknown task option 'max_eval'; known options: max_train_examples"):
        setup_task("profile", "llama-2m", batch_size=2, seq_len=8, seed=0, options={"max_eval": 3})
    with pytest.raises(ValueError, match="padding='short'"):
        TaskOptions(padding="short")


def test_missing_data_dir_and_dataset_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_dir .*nowhere does not exist; give the folder that holds sst2/"):
        setup_task("sst2", "minilm", batch_size=2, seq_len=8, seed=0, data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"no folder .*trec: data_dir should hold trec/ with train.txt and test.txt"):
        load_text_data("trec", str(tmp_path), TaskOptions())
    (tmp_path / "sst2").mkdir()
    with pytest.raises(FileNotFoundError, match=r"data file .*train.tsv not found"):
        load_text_data("sst2", str(tmp_path), TaskOptions())


def test_csv_task_errors(tmp_path):
    good = write(tmp_path / "good.csv", csv_text(ROWS))
    cases = [
        ({}, ValueError, "task csv needs task option train_file"),
        ({"train_file": str(tmp_path / "missing.csv")}, FileNotFoundError, "missing.csv not found"),
        ({"train_file": good, "label_column": "stars"}, ValueError,
         r"label column 'stars' is not in .*good.csv; its columns are \['text', 'label'\]"),
        ({"train_file": good, "text_column": "body"}, ValueError, "text column 'body' is not in"),
        ({"train_file": write(tmp_path / "notes.txt", "x")}, ValueError, "unknown file type"),
        ({"train_file": write(tmp_path / "empty.csv", "text,label\n")}, ValueError, "empty.csv has no examples"),
        ({"train_file": good, "eval_file": write(tmp_path / "other.csv", csv_text([("x", "pos"), ("y", "other")]))},
         ValueError, r"label sets of train and eval differ \(only in train: \['mid', 'neg'\], only in eval: \['other'\]\)"),
        ({"train_file": write(tmp_path / "two.csv", csv_text(ROWS[:2]))}, ValueError, "too few for a held-out split"),
        ({"train_file": write(tmp_path / "bad.jsonl", '{"text": "a", "label": 1}\n{oops}\n')}, ValueError,
         "bad.jsonl line 2: not valid JSON"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            load_text_data("csv", None, TaskOptions(**options))


def test_undecodable_text_names_file_and_encoding(tmp_path):
    path = write(tmp_path / "latin.csv", csv_text([("café crème", "pos"), ("naïve", "neg")] * 5), encoding="latin-1")
    with pytest.raises(ValueError, match=r"latin.csv cannot be decoded as utf-8 .*encoding='latin-1'"):
        load_text_data("csv", None, TaskOptions(train_file=path))
    data = load_text_data("csv", None, TaskOptions(train_file=path, encoding="latin-1"))
    assert "café crème" in data.train_texts + data.eval_texts


def test_text_task_on_random_model_without_tokenizer(data_dir):
    with pytest.raises(ValueError, match="'llama-2m' is randomly initialised and has no tokenizer"):
        setup_task("sst2", "llama-2m", batch_size=2, seq_len=8, seed=0, data_dir=data_dir)


def test_causal_lm_task_on_an_encoder(data_dir):
    with pytest.raises(ValueError, match=r"task 'lm:sst2' trains a causal LM but model 'minilm' is an encoder \(bert\)"):
        setup_task("lm:sst2", "minilm", batch_size=2, seq_len=8, seed=0, data_dir=data_dir)


def test_too_few_train_examples_for_the_batch(tmp_path):
    train = write(tmp_path / "train.csv", csv_text(ROWS[:3]))
    with pytest.raises(ValueError, match="train split has 3 examples, fewer than batch_size=8"):
        setup_task("csv", "minilm", batch_size=8, seq_len=8, seed=0, options={"train_file": train, "eval_file": train})


def test_planted_rank_larger_than_a_layer():
    with pytest.raises(ValueError, match=r"planted rank k=200 exceeds min\(out, in\)=128"):
        setup_task("planted", "llama-2m", batch_size=2, seq_len=8, seed=0, options={"k": 200})


# --- causal-LM variant on the pretrained decoder -----------------------------------------


@pytest.mark.slow
def test_lm_sst2_on_smollm2_masks_all_but_the_label_word(data_dir):
    from bench.models import get_entry, load_tokenizer

    setup = setup_task("sst2-lm", "smollm2-135m", batch_size=4, seq_len=48, seed=0, data_dir=data_dir,
                       options={"max_eval_examples": 8, "max_train_examples": 64})
    tokenizer = load_tokenizer(get_entry("smollm2-135m"))
    batch = next(setup.train_batches)
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        length = int(mask.sum())
        kept = labels[labels != -100]
        assert tokenizer.decode(kept) in (" negative", " positive")
        assert torch.equal(ids[length - len(kept) : length], kept)  # the label word ends the sequence
        assert tokenizer.decode(ids[:length]).endswith("\nSentiment:" + tokenizer.decode(kept))
    assert setup.trainable_modules == [] and torch.isfinite(setup.model(**batch).loss)
    metrics = setup.evaluate(setup.model)
    assert metrics["accuracy"] in {i / 8 for i in range(9)} and 0.0 < metrics["loss"] < 20.0
