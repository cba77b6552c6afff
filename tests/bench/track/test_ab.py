"""`run_bench.py ab`, the PR gate, on a real git history: a copy of this checkout as commit 0, then a commit that
plants a slowdown in LoRA's forward (its delta applied again as a dense matrix, thirty times: about twelve times the
step's FLOPs). Every gate runs its commits' own run_bench.py in temporary worktrees, in real processes; timings are
asserted only as verdicts of the gate's rule, with a planted effect far beyond the noise, a fixed seed and a fixed
number of rounds. The gates run a sweep of their own (SWEEP: two cheap points, 1 warm-up and 8 timed steps): a
process costs its imports more than its steps, so the tests' time is the count of processes (two estimates and two
per round)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from git_clones import clone_checkout, commit, edit, git

from bench.config.presets import preset_file
from bench.track.ab import PRESET, run_gate, sweep_arguments
from bench.track.rules import judge_pairs

SWEEP = """models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora", "vera"]
ranks = [4]
batch_sizes = [2]
seq_lens = [16]
warmup_steps = 1
timed_steps = 8
threads = 1
"""
LORA_DELTA = "        return F.linear(project_in(x, self.lora_A), self.lora_B * self.scaling)\n"
PLANTED = """        out = F.linear(project_in(x, self.lora_A), self.lora_B * self.scaling)
        for _ in range(30):  # planted slowdown: the delta again, as a dense (out, in) matrix
            out = out + 0.0 * F.linear(x, self.delta_weight())
        return out
"""
LORA, VERA = "llama-2m profile lora r=4 seed=0 2x16", "llama-2m profile vera r=4 seed=0 2x16"


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ab")
    repo = clone_checkout(str(tmp / "repo"))
    base = git(repo, "rev-parse", "HEAD")
    edit(repo, os.path.join("giva", "lora.py"), LORA_DELTA, PLANTED)
    planted = commit(repo, "LoRA applies its delta thirty more times")
    sweep = str(tmp / "sweep.toml")
    with open(sweep, "w") as f:
        f.write(SWEEP)
    return {"repo": repo, "base": base, "planted": planted, "sweep": sweep, "tmp": str(tmp)}


def gate(history: dict, *args: str) -> subprocess.CompletedProcess:
    """The repository's own run_bench.py ab, run in it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": history["repo"]}
    return subprocess.run([sys.executable, "run_bench.py", "ab", *args], cwd=history["repo"], env=env,
                          capture_output=True, text=True, timeout=1800)


def verdict_line(stdout: str, point: str) -> tuple[str, str]:
    """The gate's verdict on a point (slower, faster, same or undecided) and its whole line of the table."""
    lines = [line for line in stdout.splitlines() if line.startswith(point)]
    assert len(lines) == 1, stdout
    return lines[0][len(point):].split()[5], lines[0]


@pytest.mark.slow  # 3 rounds: 8 processes
def test_a_commit_against_itself_is_never_slower(history):
    out = os.path.join(history["tmp"], "aa")
    done = gate(history, history["base"], history["base"], "--config", history["sweep"], "--seed", "0",
                "--max-rounds", "3", "--budget", "30", "--out", out)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    for point in (LORA, VERA):
        verdict, line = verdict_line(done.stdout, point)
        assert verdict in ("same", "undecided") and "counts:" not in line  # one commit: the same counts
    with open(os.path.join(out, "ab.csv")) as f:
        rows = list(csv.DictReader(f))
    rounds = {int(r["round"]) for r in rows}
    assert rows and rounds == set(range(1, max(rounds) + 1)) and max(rounds) <= 3
    assert {(r["arm"], r["point"]) for r in rows} == {(arm, p) for arm in ("BASE", "HEAD") for p in (LORA, VERA)}
    assert all(float(r["step_time_ms_p50"]) > 0 and r["commit"] == history["base"] for r in rows)
    with open(os.path.join(out, "ab.json")) as f:
        meta = json.load(f)
    assert meta["base"] == meta["head"] == history["base"] and meta["seed"] == 0 and meta["machine"]["cpu"]
    assert meta["versions"]["torch"] and meta["produced_by"].startswith("run_bench.py ab")
    assert git(history["repo"], "worktree", "list").count("\n") == 0  # the temporary worktrees are gone


@pytest.mark.slow  # 4 rounds: 10 processes
def test_a_planted_slowdown_is_slower_and_explained_by_its_flops(history):
    done = gate(history, history["base"], history["planted"], "--config", history["sweep"], "--seed", "1",
                "--max-rounds", "4", "--budget", "30")
    assert done.returncode == 1, done.stdout + done.stderr
    verdict, lora = verdict_line(done.stdout, LORA)
    assert verdict == "slower" and "(explained: flops_per_step moved" in lora and "counts: flops_per_step +" in lora
    verdict, vera = verdict_line(done.stdout, VERA)
    assert verdict in ("same", "undecided") and "counts:" not in vera  # VeRA's code did not change
    assert "result: SLOWER (exit 1): 1 slower" in done.stdout


def test_bad_input_is_one_line_exit_2_and_runs_nothing(history):
    repo, base, planted, sweep = history["repo"], history["base"], history["planted"], history["sweep"]
    untimed = os.path.join(history["tmp"], "untimed.toml")
    with open(untimed, "w") as f:
        f.write(SWEEP.replace('tasks = ["profile"]', 'tasks = ["planted"]'))
    cases = [((base, "no-such-rev"), dict(config=sweep), "is not a commit"),
             ((base, planted), dict(config=sweep, budget_min=0), "--budget 0"),
             ((base, planted), dict(config=untimed), "tasks planted train for a score"),
             ((base, planted), dict(preset="quick"), "preset quick has points the gate cannot time"),
             ((base, planted), dict(preset="no-such-preset"), "unknown preset"),
             ((base, planted), dict(config=sweep, min_effect=0.0), "--min-effect"),
             ((base, planted), dict(config=sweep, max_rounds=0), "--max-rounds 0")]
    out = os.path.join(history["tmp"], "not-written")
    for args, options, message in cases:
        with pytest.raises(ValueError, match=message):
            run_gate(*args, repo=repo, out=out, log=None, **options)
    notes = os.path.join(repo, "README.md")
    with open(notes, "a") as f:
        f.write("uncommitted\n")
    try:
        with pytest.raises(ValueError, match="uncommitted changes"):
            run_gate(base, planted, config=sweep, repo=repo, out=out, log=None)
        done = gate(history, base, planted, "--config", sweep, "--out", out)  # the CLI: one line, exit 2
        assert done.returncode == 2 and "uncommitted changes" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout
    finally:
        git(repo, "checkout", "--", "README.md")
    for args, message in [((base, planted, "--budget", "0"), "--budget 0"),
                          ((base, planted, "--min-effect", "5"), "not a percentage")]:
        done = gate(history, *args, "--config", sweep, "--out", out)
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not os.path.exists(out)
    assert git(repo, "worktree", "list").count("\n") == 0
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_both_arms_read_one_copy_of_the_sweep_file_its_size_ladder_dropped(tmp_path):
    """The preset's file of this checkout (an older BASE may lack it), copied to one absolute path; a sweep with a
    size ladder runs without it (those rows are estimated, not timed)."""
    flag, copy = sweep_arguments(preset_file(PRESET), str(tmp_path))
    assert flag == "--config" and os.path.isabs(copy)
    with open(copy) as f, open(preset_file(PRESET)) as g:
        assert f.read() == g.read()
    laddered = tmp_path / "laddered.toml"
    laddered.write_text(SWEEP + 'size_ladder = ["llama-1b"]\n')
    os.makedirs(tmp_path / "arms")
    assert sweep_arguments(str(laddered), str(tmp_path / "arms"))[2:] == ["--size-ladder", ""]


def test_the_rule_decides_slower_faster_same_and_undecided_from_paired_log_ratios():
    spread = np.array([-0.01, 0.0, 0.01, -0.005, 0.005])
    assert judge_pairs(math.log(1.3) + spread).verdict == "slower"
    assert judge_pairs(-math.log(1.3) + spread).verdict == "faster"
    assert judge_pairs(spread).verdict == "same"
    assert judge_pairs(math.log(1.3) + spread[:2]).verdict == "undecided"  # under AB_MIN_PAIRS pairs
    small = judge_pairs(math.log(1.03) + spread)  # above 1 and significant, but inside the 5% band: same
    assert small.verdict == "same" and small.low > 1
    straddling = judge_pairs(math.log(1.045) + 2 * spread)  # above 1, the interval across 1.05: neither
    assert straddling.verdict == "undecided" and straddling.low > 1 and straddling.high > 1.05
    x = np.array([0.1, -0.08, 0.09, -0.07])
    noisy = judge_pairs(x)
    assert noisy.verdict == "undecided" and noisy.pairs_needed > noisy.pairs
    wider = judge_pairs(x.mean() + 2 * (x - x.mean()))  # the same mean, twice the spread: about 4x the pairs
    assert 3 * noisy.pairs_needed < wider.pairs_needed < 5 * noisy.pairs_needed

