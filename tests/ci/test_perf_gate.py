"""ci/perf-gate.sh, the workflow's commands, on a temporary git history: each merge is a throwaway runner (a fresh
clone) that gets history.csv back from the previous one, as .github/workflows/perf.yml keeps it in the Actions
cache. The second merge adds o_proj to Llama's default targets, a change of work the history's exact counts catch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from git_clones import REPO, clone_checkout, commit, edit, git

from bench.track.history import read_history

SWEEP = """models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora"]
ranks = [4]
batch_sizes = [1]
seq_lens = [8]
warmup_steps = 1
timed_steps = 3
threads = 1
"""
TARGETS = '"llama": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]'


def gate(runner: str, *args: str, history: str, budget_min: int = 10) -> subprocess.CompletedProcess:
    """The script as the workflow calls it, in a runner's checkout, with this interpreter."""
    env = {**os.environ, "PY": sys.executable, "PYTHONPATH": runner, "OMP_NUM_THREADS": "1", "HISTORY": history,
           "BUDGET": str(budget_min), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(["bash", "ci/perf-gate.sh", *args], cwd=runner, env=env, capture_output=True, text=True,
                          timeout=900)


def fresh_runner(origin: str, path: str, cache: str) -> tuple[str, str]:
    """A clone of `origin` (the runner's checkout) and its history.csv restored from `cache` where there is one."""
    subprocess.run(["git", "clone", "--quiet", origin, path], check=True)
    with open(os.path.join(path, "sweep.toml"), "w") as f:  # untracked: the tree stays clean
        f.write(SWEEP)
    history = os.path.join(path, "reports", "history.csv")
    if os.path.exists(cache):
        shutil.copy(cache, history)
    return path, history


def test_the_history_route_keeps_its_csv_between_runners_and_fails_on_a_changed_count(tmp_path):
    origin = clone_checkout(str(tmp_path / "origin"))
    cache = str(tmp_path / "cache-history.csv")  # what actions/cache keeps between runners
    sweep = ["--config", "sweep.toml", "--in-process", "--no-report"]

    runner, history = fresh_runner(origin, str(tmp_path / "runner-1"), cache)
    first = gate(runner, "main", *sweep, history=history)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "rows added to" in first.stdout and os.path.exists(os.path.join(runner, "reports/runs/perf/site/index.html"))
    shutil.copy(history, cache)

    edit(origin, os.path.join("giva", "targets.py"), TARGETS, TARGETS.replace('"v_proj", ', '"v_proj", "o_proj", '))
    changed = commit(origin, "adds o_proj to llama's targets")
    runner, history = fresh_runner(origin, str(tmp_path / "runner-2"), cache)
    second = gate(runner, "main", *sweep, history=history)
    assert second.returncode == 1, second.stdout + second.stderr
    regressions = second.stdout.split("REGRESSIONS", 1)[1]
    assert "flops_per_step" in regressions and changed[:8] in regressions
    assert {c[:8] for c in read_history(history)["commit"]} == {git(origin, "rev-parse", "HEAD~1")[:8], changed[:8]}


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    done = gate(REPO, "nightly", history=str(tmp_path / "history.csv"))
    assert done.returncode == 2 and done.stderr.startswith("usage: ci/perf-gate.sh")


@pytest.mark.slow  # two commits' worktrees, their estimates and rounds of fresh processes
def test_the_pull_request_route_runs_the_ab_gate_on_base_and_head(tmp_path):
    origin = clone_checkout(str(tmp_path / "origin"))
    base = git(origin, "rev-parse", "HEAD")
    edit(origin, os.path.join("giva", "targets.py"), TARGETS, TARGETS.replace('"v_proj", ', '"v_proj", "o_proj", '))
    head = commit(origin, "adds o_proj to llama's targets")
    runner, history = fresh_runner(origin, str(tmp_path / "runner"), str(tmp_path / "none.csv"))
    done = gate(runner, "pr", base, head, "--config", "sweep.toml", "--max-rounds", "3", history=history,
                budget_min=3)
    assert done.returncode in (0, 1, 3), done.stdout + done.stderr
    assert "flops_per_step" in done.stdout  # the exact count that moved, beside the timing verdict
    assert os.path.exists(os.path.join(runner, "reports/runs/perf/ab/ab.json"))
