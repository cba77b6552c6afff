"""init_task: a data-driven init (GiVA's gradient) reads another task's batches through that task's own head.

MiniLM with SST-2 as the point's task; bases from TREC differ from SST-2's own, bases from SST-2 named as
init_task equal them bit for bit. Bad init tasks are one line and exit 2 before any point runs.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from bench.adapters import make_adapter
from bench.cli import main
from bench.config.grid import expand_grid
from bench.config.presets import make_sweep_config
from bench.run.point import run_point
from bench.run.validate import check_config
from bench.tasks import setup_task
from bench.tasks.init_task import InitTask, borrow_init_data

pytestmark = pytest.mark.usefixtures("single_thread")
SMALL = {"max_train_examples": 64, "max_eval_examples": 16}  # the point task's options (SST-2)
SHAPES = dict(batch_size=4, seq_len=32, seed=0)


def giva_bases(data_dir: str, init: InitTask | None) -> dict[str, torch.Tensor]:
    """GiVA r2's frozen bases of MiniLM set up for SST-2, from its own first batch or from `init`."""
    torch.manual_seed(0)
    setup = setup_task("sst2", "minilm", data_dir=data_dir, options=SMALL, **SHAPES)
    adapter = make_adapter("giva", 2, {}, seed=0, trainable_modules=setup.trainable_modules)
    if init is None:
        data = ([next(setup.train_batches)], setup.loss_fn)
    else:
        borrowed = borrow_init_data(init, setup.model, "minilm", num_batches=1, data_dir=data_dir, task_options=SMALL,
                                    **SHAPES)
        if init.task == "trec":  # TREC's own batch: its questions and its 6 classes, through a 6-way head
            assert borrowed.model.classifier.out_features == 6 and setup.model.classifier.out_features == 2
            assert borrowed.model.bert is setup.model.bert  # the body is the point's, not a copy
        data = (borrowed.train_step(), None)
    torch.manual_seed(0)
    model = adapter.apply(setup.model, *data)
    return {name: buffer.clone() for name, buffer in model.named_buffers() if name.endswith(("giva_A", "giva_B"))}


def test_bases_from_another_task_differ_and_from_the_same_task_and_data_are_equal(data_dir):
    own = giva_bases(data_dir, None)
    same = giva_bases(data_dir, InitTask.parse({"task": "sst2", **SMALL}))
    trec = giva_bases(data_dir, InitTask.parse("trec"))
    assert own.keys() == same.keys() == trec.keys() and len(own) == 2 * 36  # A and B of 36 layers
    assert all(torch.equal(own[name], same[name]) for name in own)
    # the input-space directions A (r, in): subspaces of TREC's gradient are not SST-2's (overlap 1 = the same)
    overlaps = [torch.linalg.matrix_norm(own[n] @ trec[n].T).item() ** 2 / 2 for n in own if n.endswith("giva_A")]
    assert max(overlaps) < 0.99 and sum(overlaps) / len(overlaps) < 0.9, overlaps


def test_a_point_with_an_init_task_records_it_and_trains(data_dir, tmp_path):
    (point,) = expand_grid(make_sweep_config(None, overrides=dict(
        models=["minilm"], tasks=["sst2"], methods=["giva"], ranks=[2], batch_sizes=[4], seq_lens=[32],
        warmup_steps=1, threads=1, data_dir=data_dir, task_options=SMALL, train={"steps": 2},
        method_options={"giva": {"init_task": "trec"}})))
    row = run_point(point, str(tmp_path))
    assert row["status"] == "ok", row["error"]
    assert row["init_task"] == "trec" and json.loads(row["method_options"]) == {"init_task": "trec"}
    assert row["init_grad_s"] > 0 and row["init_flops"] > 0 and row["eval_examples"] == 16
    assert "init=trec" in point.label


def write_sweep(tmp_path, data_dir: str, init_task: str, method: str = "giva") -> str:
    path = tmp_path / "sweep.toml"
    path.write_text(f'models = ["minilm"]\ntasks = ["sst2"]\nmethods = ["{method}"]\nranks = [2]\n'
                    f'data_dir = "{data_dir}"\ntask_options = {{max_train_examples = 64}}\n'
                    f"[method_options.{method}]\n{init_task}\n")
    return str(path)


def test_bad_init_tasks_are_one_line_and_exit_2_before_any_point(data_dir, tmp_path, capsys):
    only_sst2 = tmp_path / "data"  # the point's task has its data, TREC has none here
    only_sst2.mkdir()
    os.symlink(os.path.join(data_dir, "sst2"), only_sst2 / "sst2")
    one_class = tmp_path / "one_class.csv"
    one_class.write_text("text,label\n" + "".join(f"sentence {i},yes\n" for i in range(20)))
    cases = [
        ('init_task = "no-such-task"', "unknown task 'no-such-task'"),
        ('init_task = "planted"', "init_task 'planted' reads no labelled data"),
        ('init_task = {name = "trec"}', "must be a task name or a table {task = NAME"),
        ('init_task = {task = "trec", colour = "red"}', "unknown task option 'colour'"),
        ('init_task = "trec"', "init_task trec: no folder"),  # no trec/ in the data folder
        (f'init_task = {{task = "csv", train_file = "{one_class}"}}', "at least two classes"),  # labels that cannot be loaded
    ]
    for options, message in cases:
        out = tmp_path / "never"
        assert main(["run", "--config", write_sweep(tmp_path, str(only_sst2), options), "--out", str(out)]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error, (options, error)
        assert not (out / "results.csv").exists()
    lora = write_sweep(tmp_path, data_dir, 'init_task = "trec"', method="lora")  # LoRA's init reads no data
    assert main(["run", "--config", lora, "--out", str(tmp_path / "never")]) == 2
    assert "lora's init reads no training data" in capsys.readouterr().err


def test_a_peft_init_cannot_read_another_task():
    """PEFT's data-driven inits (EVA here) run their batches through the model's own head: no init_task."""
    pytest.importorskip("peft")
    with pytest.raises(ValueError, match="peft:eva runs its init batches through the model's own head"):
        check_config(make_sweep_config(None, overrides=dict(
            models=["minilm"], tasks=["sst2"], methods=["peft:eva"], ranks=[2],
            method_options={"peft:eva": {"init_task": "trec"}})))
