"""How tests/data/history_runs/ was made: real runs of this machine, one per commit, code unchanged.

    .venv/bin/python tests/data/make_history_runs.py tests/data/history_runs --runs 24

A temporary clone of this checkout's HEAD gets one empty commit per run, and each run is the sweep below
(llama-2m, profile task: LoRA r8, VeRA r64, GiVA r8, 20 timed steps, one thread) run by the clone's own code, in
one process (the points in-process), so every run records its own commit, first-parent position and the machine's
load. Each run waits until the 1-minute load average is under --max-load (a machine shared with other jobs is
timed when it is quiet; after --max-wait-min it runs anyway, and meta.json says it was busy). Only results.csv and
meta.json of each run are kept. The runs differ by nothing but the machine's noise:
the history tests (tests/test_history.py) read them as a noise-only history and plant changes in copies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = """
models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora", "vera", "giva"]
ranks = [8]
batch_sizes = [4]
seq_lens = [32]
warmup_steps = 3
timed_steps = 20
threads = 1
isolate = false

[method_options.vera]
ranks = [64]
"""
# Runs in the clone (its own bench package first on sys.path): one empty commit, then one run, per run.
LOOP = """
import os, shutil, subprocess, sys, time
from bench.config.presets import load_sweep_file, make_sweep_config
from bench.run.sweep import run_sweep

sweep_file, out, runs, max_load, max_wait_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
config = make_sweep_config(None, load_sweep_file(sweep_file))
for i in range(runs):
    waited = time.time()
    while os.getloadavg()[0] >= max_load and time.time() - waited < max_wait_s:
        time.sleep(10)
    subprocess.run(["git", "commit", "--quiet", "--allow-empty", "-m", f"noise run {i:02d}"], check=True)
    run_dir = os.path.join(out, f"run-{i:02d}")
    run_sweep(config, run_dir, ["tests/data/make_history_runs.py", "run", str(i)], log=lambda *_: None)
    for extra in ("logs", "curves", ".lock"):
        path = os.path.join(run_dir, extra)
        shutil.rmtree(path) if os.path.isdir(path) else os.path.exists(path) and os.remove(path)
    print(f"run {i:02d} written after waiting {time.time() - waited:.0f} s for a load under {max_load}", flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for run-00, run-01, ...")
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--max-load", type=float, default=1.5, help="start a run when the 1-minute load is under this")
    parser.add_argument("--max-wait-min", type=float, default=20, help="per run; then it runs on a busy machine")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clone = os.path.join(tmp, "clone")
        subprocess.run(["git", "clone", "--quiet", REPO, clone], check=True)
        for key, value in (("user.name", "history runs"), ("user.email", "history-runs@localhost")):
            subprocess.run(["git", "config", key, value], cwd=clone, check=True)
        sweep_file = os.path.join(tmp, "sweep.toml")
        with open(sweep_file, "w") as f:
            f.write(SWEEP)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": clone}
        subprocess.run([sys.executable, "-c", LOOP, sweep_file, out, str(args.runs), str(args.max_load),
                        str(args.max_wait_min * 60)], cwd=clone, env=env, check=True)
    shutil.rmtree(os.path.join(out, "__pycache__"), ignore_errors=True)


if __name__ == "__main__":
    main()
