"""PEFT's methods in the harness (`peft:<name>`): real PEFT on a tiny real model, measured like ours."""

from __future__ import annotations

import json
import os

import pytest
from cli_runs import REPO, run_cli
import torch

from bench.config.presets import make_sweep_config
from bench.report.summary import build_report
from bench.columns import COLUMN_NAMES
from bench.results.read import read_meta, read_rows
from bench.run.sweep import run_sweep
from bench.run.validate import check_config

peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore")  # PEFT's and transformers' deprecation chatter

# Filled by every method that ran: what the stock columns need.
MEASURED = ["model_params", "trainable_params", "adapter_params", "total_params", "adapted_layers",
            "adapter_buffer_bytes", "optimizer_state_bytes", "adapter_file_bytes", "init_total_s", "init_grad_s",
            "init_svd_s", "init_inject_s", "init_peak_mem_bytes", "step_time_ms_p50", "step_time_ms_p90",
            "step_times_ms", "tokens_per_s", "peak_mem_bytes", "lr", "train_time_s", "point_wall_s"]


def test_a_sweep_of_ours_and_peft_s_methods_writes_complete_rows(tmp_path):
    config = make_sweep_config(None, dict(
        models=["llama-2m"], tasks=["profile"], methods=["lora", "peft:lora", "vera", "peft:vera", "peft:pissa", "peft:eva",
                                                       "giva"],
        ranks=[4], batch_sizes=[2], seq_lens=[16], warmup_steps=1, timed_steps=2, threads=1, isolate=False,
        method_options={"peft:pissa": {"init_lora_weights": "pissa"}}))
    run_sweep(config, str(tmp_path), ["test"], log=lambda *_: None)
    rows = {r["method"]: r for r in read_rows(str(tmp_path / "results.csv"))}
    assert set(rows) == set(config.methods)
    for method, row in rows.items():
        assert row["status"] == "ok", (method, row["error"])
        assert [c for c in MEASURED if row[c] == ""] == [], method
        assert float(row["init_total_s"]) > 0 and float(row["step_time_ms_p50"]) > 0, method
    # PiSSA's init is an SVD of each target weight, EVA's a pass over the data with an SVD of the activations
    assert float(rows["peft:pissa"]["init_svd_s"]) > 0 and float(rows["peft:pissa"]["init_grad_s"]) == 0
    assert float(rows["peft:eva"]["init_grad_s"]) > 0
    # same method, same rank, same layers: the same trainable count from PEFT's own model
    for column in ("trainable_params", "adapter_params", "adapted_layers"):
        assert rows["peft:lora"][column] == rows["lora"][column] == rows["peft:pissa"][column], column
    assert float(rows["peft:lora"]["lr"]) == float(rows["lora"]["lr"]) == 1e-3
    assert json.loads(rows["peft:lora"]["method_options"]) == {"lora_alpha": 8}  # alpha = 2r, like ours
    assert 0 < int(rows["peft:vera"]["adapter_params"]) < int(rows["peft:lora"]["adapter_params"])
    assert read_meta(str(tmp_path))["environment"]["versions"]["peft"] == peft.__version__

    # the report: ours over PEFT's at the same rank, and GiVA's init beside PiSSA's and EVA's
    build_report([str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    section = summary.split("## Ours against PEFT, and data-driven inits", 1)[1].split("\n## ", 1)[0]

    def value(method, column):
        return float(rows[method][column])

    for ours, name in (("lora", "LoRA"), ("vera", "VeRA")):
        theirs = "peft:" + ours
        expected = (f"| {name} | 4 | {value(ours, 'trainable_params'):,.0f} / {value(theirs, 'trainable_params'):,.0f} | "
                    f"{value(ours, 'step_time_ms_p50') / value(theirs, 'step_time_ms_p50'):.2f}x | "
                    f"{value(ours, 'init_total_s') / value(theirs, 'init_total_s'):.2f}x |")
        assert expected in section, (expected, section)
    lora_step_s = value("lora", "step_time_ms_p50") / 1000
    for method, name in (("giva", "GiVA"), ("peft:pissa", "PEFT pissa"), ("peft:eva", "PEFT eva")):
        line = next(x for x in section.splitlines() if x.startswith(f"| {name} | 4 |"))
        assert line.endswith(f"| {value(method, 'init_total_s') / lora_step_s:.2g} |"), line


@pytest.mark.parametrize("methods, options, message", [
    (["peft:lorra"], {}, "unknown PEFT method 'peft:lorra'; did you mean peft:lora"),
    (["peft:lora"], {"peft:lora": {"lora_alfa": 16}},
     "unknown option 'lora_alfa' for peft:lora (LoraConfig); did you mean lora_alpha"),
    (["peft:vblora"], {"peft:vblora": {"train": {"lr": 1e-3}}},
     "peft:vblora cannot adapt llama-2m's layers ['q_proj', 'k_proj', 'v_proj', 'up_proj', 'down_proj']: "
     "`in_features` 128 must be divisible by `vector_length` 256"),
    (["peft:eva"], {"peft:eva": {"init_batches": 0}}, "peft:eva initializes from training data (eva) but init_batches=0"),
    (["peft:lora"], {"peft:lora": {"init_lora_weights": "lora_ga", "init_batches": 0}},
     "peft:lora initializes from training data (lora_ga) but init_batches=0"),
    (["peft:eva"], {"peft:eva": {"eva_config": {"rhoo": 2}}}, "peft:eva: PEFT refuses the options: "),
    (["peft:fourierft"], {}, "no default learning rate for method 'peft:fourierft'; set one"),
    (["peft:dora"], {"peft:dora": {"r": 4}}, "peft:dora: set the rank through the sweep's ranks, not r"),
])
def test_bad_peft_methods_fail_before_any_point(methods, options, message):
    """At validation (names, options, learning rate), or in the checks before any point runs (layers of the model
    built without weights)."""
    from bench.run.checks import check_inputs

    with pytest.raises(ValueError) as error:
        config = make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=methods,
                                              method_options=options))
        check_config(config)
        check_inputs(config)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_cli_says_it_in_one_line_exits_2_and_runs_nothing(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora", "peft:vblora"]\n'
                     '[method_options."peft:vblora"]\ntrain = {lr = 1e-3}\n')
    result = run_cli("run", "--config", str(sweep), "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "peft:vblora cannot adapt llama-2m's layers" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run").exists()  # nothing ran, not even the valid lora point


@pytest.mark.skipif(torch.cuda.is_available(), reason="LoftQ runs where bitsandbytes and a GPU are")
def test_loftq_without_a_gpu_says_what_it_needs():
    with pytest.raises(ValueError, match="peft:loftq: LoftQ quantizes the base weights with bitsandbytes on a GPU"):
        check_config(make_sweep_config(None, dict(models=["llama-2m"], tasks=["profile"], methods=["peft:loftq"])))
