"""Two planted efficiency regressions committed for real in a copy of this checkout, each named with its size by an
exact count at its commit: by `counts` (the count guard), by `compare` of runs of the commits before and after,
and by `history regressions`. Commit 1 copies each adapted layer's input (giva/layer.py AdapterLayer.forward);
commit 2 adds a finiteness check of it, a host read (`.item()`) per layer. Each commit's own run_bench.py runs.
tests/bench/measure/test_operator_counts.py traces all six planted regressions."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from git_clones import clone_checkout, commit, edit, git
from real_run import copy_run, rewrite_rows, scale_step_times

from bench.results.read import load_run

SWEEP = """models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora"]
ranks = [4]
batch_sizes = [2]
seq_lens = [16]
warmup_steps = 1
timed_steps = 8
threads = 1
"""
FORWARD = "        result = self.base_layer(x)\n"
COPY = "        x = x.clone()  # planted: a copy of each adapted layer's input\n"
FINITE_CHECK = ("        if not torch.isfinite(x).all():  # planted: a host read per layer\n"
             "            raise ValueError('the input is not finite')\n")


def cli(repo: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": repo}
    return subprocess.run([sys.executable, "run_bench.py", *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """Commits 0 (this checkout), 1 (a copy per layer) and 2 (and a finiteness check per layer): each one's `counts`
    output and a run of SWEEP."""
    tmp = tmp_path_factory.mktemp("planted")
    repo = clone_checkout(str(tmp / "repo"))
    sweep = str(tmp / "sweep.toml")
    with open(sweep, "w") as f:
        f.write(SWEEP)
    commits, counts, runs = [git(repo, "rev-parse", "HEAD")], [None], []
    for message, old, new in (("copies each adapted layer's input", FORWARD, COPY + FORWARD),
                              ("checks that each adapted layer's input is finite", COPY, COPY + FINITE_CHECK)):
        edit(repo, "giva/layer.py", old, new)
        commits.append(commit(repo, message))
        counts.append(cli(repo, "counts"))
    for i, sha in enumerate(commits):
        git(repo, "checkout", "--quiet", sha)
        runs.append(str(tmp / f"run{i}"))
        done = cli(repo, "run", "--config", sweep, "--out", runs[-1], "--no-report", "--in-process")
        assert done.returncode == 0, done.stderr[-2000:]
    return {"repo": repo, "commits": commits, "counts": counts, "runs": runs, "tmp": tmp}


def row(run_dir: str) -> dict:
    (r,) = load_run(run_dir).rows.to_dict("records")
    return r


def test_each_commit_s_counts_name_its_count_and_size(planted):
    layers = int(row(planted["runs"][0])["adapted_layers"])  # the counts preset's llama-2m adapts as many
    first, second = planted["counts"][1:]
    assert first.returncode == second.returncode == 1
    lora = "llama-2m/profile/lora/r8/s0/b2x16"
    assert re.search(rf"{lora}: copies_per_step \d+ -> \d+ \(\+{layers},", first.stdout + first.stderr)
    assert f"{lora}: syncs_per_step" not in first.stdout + first.stderr
    assert re.search(rf"{lora}: syncs_per_step \d+ -> \d+ \(\+{layers},", second.stdout + second.stderr)


def test_compare_names_the_count_each_commit_moved_and_explains_a_slowdown_by_it(planted, tmp_path):
    base, copied, checked = (row(r) for r in planted["runs"])
    layers = int(base["adapted_layers"])
    assert copied["copies_per_step"] - base["copies_per_step"] == layers
    assert checked["syncs_per_step"] - copied["syncs_per_step"] == layers
    assert checked["copies_per_step"] == copied["copies_per_step"]
    runs = planted["runs"]
    done = cli(planted["repo"], "compare", runs[0], runs[1])
    assert done.returncode == 1
    assert re.search(rf"copies_per_step changed \d+ -> \d+ \(\+{layers} count", done.stdout)
    assert "syncs_per_step changed" not in done.stdout
    done = cli(planted["repo"], "compare", runs[1], runs[2])
    assert done.returncode == 1 and re.search(rf"syncs_per_step changed \d+ -> \d+ \(\+{layers} count", done.stdout)
    assert "copies_per_step changed" not in done.stdout
    # a slowdown beside the copies (the planted commit's run, its step times 3x): explained by them, with sizes
    slower = copy_run(runs[1], tmp_path / "slower")
    rewrite_rows(slower, lambda rows: [scale_step_times(r, 3.0) for r in rows])
    done = cli(planted["repo"], "compare", runs[0], slower)
    copied_bytes = (copied["copy_bytes_per_step"] - base["copy_bytes_per_step"]) / 1024
    line = next(line for line in done.stdout.splitlines() if "step_time_ms_p50" in line and "explained" in line)
    assert f"explained: +{layers} operator calls per step, +{layers} copies per step, +{copied_bytes:,.1f} KiB copied " \
           f"per step, +{layers} allocations per step" in line


def test_history_regressions_names_each_commit_s_count(planted):
    history = str(planted["tmp"] / "history.csv")
    assert cli(planted["repo"], "history", "--append", *planted["runs"], "--file", history).returncode == 0
    done = cli(planted["repo"], "history", "regressions", "--file", history)
    layers = int(row(planted["runs"][0])["adapted_layers"])
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for metric, sha in (("copies_per_step", planted["commits"][1]), ("syncs_per_step", planted["commits"][2])):
        assert any(metric in line and sha[:8] in line and f"+{layers} count" in line for line in lines), done.stdout
