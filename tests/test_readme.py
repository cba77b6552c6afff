"""The README's code, run as written: the library example (its printed output as the README shows it), and the
recipes' sweep file and column read-out (on fewer models, ranks and steps, to fit the suite). The CI recipe's
script is run by tests/ci/test_perf_gate.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from cli_runs import OFFLINE, REPO, run_cli

with open(os.path.join(REPO, "README.md")) as f:
    README = f.read()


def block(name: str) -> str:
    """The fenced block right after the README's `<!-- readme: NAME -->` marker."""
    found = re.search(rf"<!-- readme: {re.escape(name)} -->\n```\w*\n(.*?)```", README, re.S)
    assert found, f"README.md has no block marked <!-- readme: {name} -->"
    return found.group(1)


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def shape(text: str) -> list[str]:
    """The lines with every number replaced, so a last digit that differs between builds of torch does not count."""
    return [re.sub(r"\d+(\.\d+)?", "N", line) for line in text.strip().splitlines()]


def test_the_library_example_prints_what_the_readme_shows(tmp_path):
    done = run_python(block("library"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert shape(done.stdout) == shape(block("library output"))
    assert done.stdout.strip().splitlines()[2:] == block("library output").strip().splitlines()[2:]
    assert sorted(os.listdir(tmp_path / "out")) == ["adapter.safetensors", "adapter_config.json"]


@pytest.mark.slow
def test_the_rank_sweep_file_runs_and_draws_the_accuracy_plot(tmp_path, data_dir):
    sweep = tmp_path / "rank_accuracy.toml"
    text = block("rank sweep")
    assert "max_eval_examples = 872" in text
    sweep.write_text(text.replace("max_eval_examples = 872", "max_eval_examples = 64"))  # a shorter evaluation
    out = tmp_path / "rank-accuracy"
    done = run_cli("run", "--config", str(sweep), "--data-dir", data_dir, "--ranks", "2", "--steps", "4", "--warmup-steps", "1",
                   "--in-process", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "plots" / "rank_score.png").stat().st_size > 0 and (out / "plots" / "params_score.png").exists()
    assert "### minilm · task sst2" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_the_sizes_preset_gives_the_init_phases_in_seconds_and_in_lora_steps(tmp_path):
    out = tmp_path / "reports" / "runs" / "sizes"
    done = run_cli("run", "--preset", "sizes", "--models", "llama-2m,llama-12m", "--timed-steps", "2",
                   "--in-process", "--out", str(out))
    assert done.returncode == 0, done.stderr
    read = run_python(block("sizes columns"), tmp_path)
    assert read.returncode == 0, read.stderr
    header, *rows = read.stdout.strip().splitlines()
    assert header.split() == ["model", "method", "init_grad_s", "init_svd_s", "init_inject_s", "init_total_s",
                              "step_time_ms_p50"]
    assert len(rows) == 6 and all(re.search(r"llama-(2|12)m\s+(lora|vera|giva)\s", row) for row in rows)
    assert "](plots/init_overhead.png)" in (out / "summary.md").read_text()  # the plot the recipe names
    assert (out / "plots" / "init_overhead.png").stat().st_size > 0
