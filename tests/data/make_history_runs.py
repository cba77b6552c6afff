"""How tests/data/history_runs/ was made: real runs of this machine, one per commit.

    .venv/bin/python tests/data/make_history_runs.py tests/data/history_runs --runs 24 --target-runs 6

A temporary clone of this checkout's HEAD gets one commit per run, and each run is the sweep below (llama-2m,
profile task: LoRA, VeRA and GiVA at r64, 20 timed steps, one thread) run by the clone's own
`run_bench.py run --in-process` (a fresh process per run, its points in it), so every run records its own commit,
first-parent position and the machine's load. Each run waits until the 1-minute load average is under --max-load
(a machine shared with other jobs is timed when it is quiet; after --max-wait-min it runs anyway, and meta.json
says it was busy); --realtime runs it at real-time priority. Only results.csv and meta.json of each run are kept.
The first --runs runs differ by nothing but the machine's noise (empty commits; tests/bench/track/test_history.py reads them
as a noise-only history and plants changes in copies); the commit of the next run adds lm_head to Llama's default
target modules, a real change of code and work that the last --target-runs runs carry.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEP = """
models = ["llama-2m"]
tasks = ["profile"]
methods = ["lora", "vera", "giva"]
ranks = [64]
batch_sizes = [4]
seq_lens = [32]
warmup_steps = 3
timed_steps = 20
threads = 1
"""
# The commit of run --runs: lm_head joins Llama's default target modules (a change of code and of work, +41% FLOPs
# per step here; the points keep their identity, so their series go on).
DEFAULTS = '"llama": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]'
WITH_HEAD = '"llama": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj", "lm_head"]'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder for run-00, run-01, ...")
    parser.add_argument("--runs", type=int, default=24, help="noise-only runs")
    parser.add_argument("--target-runs", type=int, default=6, help="runs after the commit that adds lm_head to the "
                        "target modules (a change of work: FLOPs and step time)")
    parser.add_argument("--max-load", type=float, default=1.5, help="start a run when the 1-minute load is under this")
    parser.add_argument("--max-wait-min", type=float, default=20, help="per run; then it runs on a busy machine")
    parser.add_argument("--realtime", action="store_true", help="run each run at real-time priority (chrt -f 1, as "
                        "root): on a machine shared with other jobs, the run then has a core to itself")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clone = os.path.join(tmp, "clone")
        subprocess.run(["git", "clone", "--quiet", REPO, clone], check=True)
        for key, value in (("user.name", "history runs"), ("user.email", "history-runs@localhost")):
            subprocess.run(["git", "config", key, value], cwd=clone, check=True)
        # The sweep file and the runs lie inside the clone (untracked: the tree stays clean), named relatively, so
        # meta.json records no path of this machine; each run is moved to `out` once written.
        with open(os.path.join(clone, "sweep.toml"), "w") as f:
            f.write(SWEEP)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": clone}
        for i in range(args.runs + args.target_runs):
            waited = time.time()
            while os.getloadavg()[0] >= args.max_load and time.time() - waited < args.max_wait_min * 60:
                time.sleep(10)
            if i == args.runs:
                path = os.path.join(clone, "giva", "targets.py")
                with open(path) as f:
                    text = f.read()
                assert DEFAULTS in text, "giva/targets.py no longer lists Llama's defaults as this script expects"
                with open(path, "w") as f:
                    f.write(text.replace(DEFAULTS, WITH_HEAD))
            message = f"run {i:02d}: " + ("noise only" if i < args.runs else "lm_head among Llama's default targets")
            subprocess.run(["git", "commit", "--quiet", "--allow-empty", "-am", message], cwd=clone, check=True)
            name = f"run-{i:02d}"
            run_dir = os.path.join(clone, "runs", name)
            priority = ["chrt", "-f", "1"] if args.realtime else []
            subprocess.run([*priority, sys.executable, "run_bench.py", "run", "--config", "sweep.toml", "--in-process",
                            "--no-report", "--out", os.path.join("runs", name)], cwd=clone, env=env, check=True,
                           capture_output=True)
            for extra in ("logs", "curves"):
                shutil.rmtree(os.path.join(run_dir, extra), ignore_errors=True)
            if os.path.exists(os.path.join(run_dir, ".lock")):
                os.remove(os.path.join(run_dir, ".lock"))
            shutil.move(run_dir, os.path.join(out, name))
            print(f"run {i:02d} written after waiting {time.time() - waited:.0f} s for a load under {args.max_load}",
                  flush=True)
    shutil.rmtree(os.path.join(out, "__pycache__"), ignore_errors=True)


if __name__ == "__main__":
    main()
