"""Bad sweep input is refused before any point runs: one line, exit 2, nothing written."""

import os

import pytest
from cli_runs import REPO, run_main

from bench.config.presets import make_sweep_config
from bench.measure.memory import cgroup_memory_available
from bench.results.read import read_meta


SMALL = """
models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora", "vera"]
ranks = [2]
batch_sizes = [2]
seq_lens = [8]
"""


@pytest.mark.parametrize("extra, message", [
    ("[method_options.vera]\nranks = 16\n", "method_options.vera.ranks=16 must be a list of positive integers"),
    ("[method_options.vera]\nranks = [0]\n", "method_options.vera.ranks=[0] must be a list of positive integers"),
    ("[train]\nlr = \"fast\"\n", "train setting lr='fast' must be a number or None"),
    ("[train]\nsteps = 2.5\n", "train setting steps=2.5 must be an integer"),
    ("[method_options.lora]\nalpha = \"x\"\n", "lora option alpha='x' must be a number"),
    ("[method_options.lora]\ntarget_modules = 3\n", "lora option target_modules=3 must be a string or a list of strings"),
    ("[task_options]\nk = \"x\"\n", "task option k='x' must be an integer"),
    ("method_options = { lora = 3 }\n", "method_options.lora must be a table of options"),
])
def test_a_bad_sweep_file_value_is_one_line_exit_2_and_nothing_runs(tmp_path, extra, message):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SMALL + extra)
    out = tmp_path / "run"
    result = run_main("run", "--config", str(sweep), "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()  # refused before the run directory was made


TINY = """
models = ["llama-2m"]
tasks = ["profile"]
batch_sizes = [2]
seq_lens = [8]
"""


@pytest.mark.parametrize("sweep_text, message", [
    (TINY + 'methods = ["lora"]\nranks = [200]\n', "model llama-2m: LoRA rank r=200 exceeds min(out, in)=128"),
    (TINY + 'methods = ["giva"]\nranks = [2]\n[method_options.giva]\ntarget_modules = ["nope"]\n',
     "model llama-2m: target_modules=['nope'] matched no layer"),
])
def test_a_rank_or_targets_that_do_not_fit_the_model_are_refused_before_any_point(tmp_path, sweep_text, message):
    """Known once the model's shapes are (built on the meta device, no weights): one line, nothing run."""
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(sweep_text)
    out = tmp_path / "run"
    result = run_main("run", "--config", str(sweep), "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (out / "results.csv").exists()


def test_an_empty_out_is_refused_rather_than_writing_to_the_default_folder(tmp_path):
    result = run_main("run", "--preset", "quick", "--out", "")
    assert result.returncode == 2 and "--out is empty" in result.stderr.strip(), result.stderr


def test_a_broken_meta_json_is_named_in_the_error(tmp_path):
    (tmp_path / "meta.json").write_text("{ not json")
    with pytest.raises(ValueError, match=f"{tmp_path / 'meta.json'} is not valid JSON"):
        read_meta(str(tmp_path))
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds no JSON object"):
        read_meta(str(tmp_path))


def test_good_values_of_every_type_are_accepted():
    config = make_sweep_config(None, {
        "models": ["llama-2m"], "methods": ["lora", "giva"], "ranks": [2],
        "method_options": {"lora": {"alpha": 4, "target_modules": ["q_proj"], "use_rslora": True},
                           "giva": {"autocast_dtype": "bfloat16", "train": {"lr": 1}}},
        "train": {"steps": 5, "lr": 0.01}, "task_options": {"k": 2, "target_modules": "q_proj|v_proj"}})
    assert config.ranks_for("lora") == [2] and config.train_for("giva")["lr"] == 1


@pytest.mark.parametrize("layout", ["v2", "v1"])
def test_the_cgroup_limit_caps_the_memory_a_point_may_count_on(tmp_path, layout):
    """A 1.5 GiB container on a large host: the limit minus usage is what is free, not the host's memory."""
    limit, usage = 1536 * 2**20, 512 * 2**20
    if layout == "v2":
        (tmp_path / "memory.max").write_text(f"{limit}\n")
        (tmp_path / "memory.current").write_text(f"{usage}\n")
    else:
        (tmp_path / "memory").mkdir()
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (tmp_path / "memory" / "memory.usage_in_bytes").write_text(f"{usage}\n")
    assert cgroup_memory_available(str(tmp_path)) == limit - usage


def test_no_cgroup_limit_means_none(tmp_path):
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("123\n")
    assert cgroup_memory_available(str(tmp_path)) is None
    assert cgroup_memory_available(str(tmp_path / "absent")) is None

