"""`run_bench.py bisect` over a real linear git history: a copy of this checkout committed as the first of 16
commits, one of which adds o_proj to Llama's default target modules (more FLOPs per step). Each commit is checked
out in a temporary worktree and estimated by its own run_bench.py."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
from git_clones import clone_checkout, commit, edit, git
from waiting import HANG_GUARD_S

from bench.track.bisect import bisect as run_bisect

COMMITS = 16
CHANGING = 9  # the commit (0 = the first) that adds o_proj
SWEEP = """models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora"]
ranks = [4]
batch_sizes = [1]
seq_lens = [8]
threads = 1
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    """A fresh repository: this checkout's files as commit 0, then 15 commits, the CHANGING one adding o_proj."""
    tmp = tmp_path_factory.mktemp("bisect")
    repo = clone_checkout(str(tmp / "repo"))
    commits = [git(repo, "rev-parse", "HEAD")]
    for i in range(1, COMMITS):
        if i == CHANGING:
            old = '"llama": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]'
            edit(repo, os.path.join("giva", "targets.py"), old, old.replace('"v_proj", ', '"v_proj", "o_proj", '))
        else:
            with open(os.path.join(repo, "NOTES.txt"), "a") as f:
                f.write(f"note {i}\n")
        commits.append(commit(repo, "adds o_proj to llama's targets" if i == CHANGING else f"commit {i}"))
    sweep = str(tmp / "sweep.toml")
    with open(sweep, "w") as f:
        f.write(SWEEP)
    return {"repo": repo, "commits": commits, "sweep": sweep}


def bisect(history: dict, *args: str) -> subprocess.CompletedProcess:
    """The repository's own run_bench.py bisect, run in it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": history["repo"]}
    return subprocess.run([sys.executable, "run_bench.py", "bisect", *args], cwd=history["repo"], env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)


def test_bisect_finds_the_flops_changing_commit_within_log2_n_plus_1_estimates(history):
    good, bad = history["commits"][0], history["commits"][-1]
    done = bisect(history, good, bad, "--config", history["sweep"], "--metric", "flops_per_step")
    assert done.returncode == 0, done.stderr
    found = history["commits"][CHANGING]
    assert f"first commit where flops_per_step changed: {found[:7]} adds o_proj to llama's targets" in done.stdout
    probes, measured = map(int, re.search(r"(\d+) probes including GOOD.*?(\d+) measured", done.stdout).groups())
    assert probes <= math.ceil(math.log2(COMMITS)) + 1
    assert measured == 2  # GOOD's code and the changed code; the other commits touch NOTES.txt only
    assert re.search(r"llama-2m/lora/r4/\w+: [\d,]+ -> [\d,]+ FLOPs \(\+\d", done.stdout)
    assert git(history["repo"], "worktree", "list").count("\n") == 0  # the temporary worktrees are gone
    assert git(history["repo"], "status", "--porcelain") == ""


def test_bisect_bad_input_is_one_line_and_writes_nothing(history):
    good, bad = history["commits"][0], history["commits"][-1]
    sweep = history["sweep"]
    cases = [((bad, good, "flops_per_step"), dict(config=sweep), "is not an ancestor"),
             ((good, "no-such-rev", "flops_per_step"), dict(config=sweep), "is not a commit"),
             ((good, good, "flops_per_step"), dict(config=sweep), "the same commit"),
             ((good, bad, "eval_score"), dict(config=sweep), "cannot judge 'eval_score'"),
             ((good, bad, "adapter_file_bytes"), dict(config=sweep), "cannot judge"),  # estimate writes no file
             ((good, bad, "flops_per_step"), dict(config=sweep + ".missing"), "not found"),
             ((good, bad, "flops_per_step"), dict(config=sweep, preset="counts"), "one of them"),
             ((good, bad, "step_time_ms_p50"), dict(config=sweep, repeats=1), "at least 2 runs")]
    for args, options, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            run_bisect(*args, repo=history["repo"], log=None, **options)
    notes = os.path.join(history["repo"], "NOTES.txt")
    with open(notes, "a") as f:
        f.write("uncommitted\n")
    try:
        with pytest.raises(ValueError, match="uncommitted changes"):
            run_bisect(good, bad, "flops_per_step", config=sweep, repo=history["repo"], log=None)
        done = bisect(history, good, bad, "--config", sweep, "--metric", "flops_per_step")  # the CLI: exit 2
        assert done.returncode == 2 and "uncommitted changes" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    finally:
        git(history["repo"], "checkout", "--", "NOTES.txt")
    done = bisect(history, good, bad, "--metric", "flops_per_step")
    assert done.returncode == 2 and "one of the arguments --preset --config is required" in done.stderr
    assert git(history["repo"], "worktree", "list").count("\n") == 0
    assert git(history["repo"], "status", "--porcelain", "--untracked-files=all") == ""
