"""What the regression tracking costs and how well it detects, on the real runs of tests/data/history_runs:

    false alarms   change points reported on the 24 noise-only runs
    delay          runs after a planted 5%, 10% or 20% step-time slowdown (from run k on) until it is reported
    scale          `run_bench.py history regressions` (wall, its own process) and its page, on 1,000 runs x 12 points
    bisect         `run_bench.py bisect` over 64 commits by estimate, every commit touching the code

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/history_detection.py [--skip-bisect | --bisect-only] [--judge-busy]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))

from bench.track.changes import find_changes  # noqa: E402
from bench.track.history import HISTORY_COLUMNS, append_history, read_history  # noqa: E402

STEP = "step_time_ms_p50"


JUDGE_BUSY = False  # --judge-busy: judge runs of a busy machine as if quiet (what the detector makes of that noise)


def detection_of(tmp: str, runs: list[str]):
    path = os.path.join(tmp, "history.csv")
    if os.path.exists(path):
        os.remove(path)
    append_history(runs, path)
    history = read_history(path)
    if JUDGE_BUSY:
        history["busy"] = 0
    return find_changes(history)


def false_alarms(tmp: str) -> int:
    from test_history import NOISE_RUNS, run_dirs

    return len(detection_of(tmp, run_dirs(range(NOISE_RUNS))).changes)


def delays(tmp: str, factor: float, k: int) -> list[int | None]:
    """Per series: how many runs from k on the history needs before the slowdown at k is reported (None: never)."""
    from pathlib import Path

    from test_history import NOISE_RUNS, copy_runs

    base = Path(tmp) / f"x{factor}-{k}"
    runs = copy_runs(base, range(NOISE_RUNS), lambda i: factor if i >= k else 1.0)
    found = {}
    for end in range(k + 1, NOISE_RUNS + 1):
        detection = detection_of(str(base), runs[:end])
        for c in detection.changes:
            if c.metric == STEP and c.direction == "regression" and abs(c.index - k) <= 1:
                found.setdefault(c.series, end - k)
        if len(found) == len(detection.series):
            break
    names = sorted(detection.series)
    return [found.get(name) for name in names]


def big_history(tmp: str, runs: int, points: int) -> str:
    """runs x points history rows: the real rows, cycled, each run a commit of its own, points varied by rank."""
    from test_history import NOISE_RUNS, run_dirs

    source = os.path.join(tmp, "source.csv")
    append_history(run_dirs(range(NOISE_RUNS)), source)
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    by_run = [[r for r in rows if r["run_dir"].endswith(f"run-{i:02d}")] for i in range(NOISE_RUNS)]
    path = os.path.join(tmp, "big.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for run in range(runs):
            real = by_run[run % NOISE_RUNS]
            for p in range(points):
                row = dict(real[p % len(real)])
                row.update(run_dir=f"{row['run_dir']}-{run}", commit=f"{run:040x}", commit_position=str(1000 + run),
                           rank=str(int(row["rank"]) + p // len(real)), point_id=f"{p:016x}",
                           busy="0")  # every metric judged: the time of the whole detection
                writer.writerow(row)
    return path


def time_cli(args: list[str]) -> tuple[float, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, os.path.join(REPO, "run_bench.py"), *args], env=env, capture_output=True,
                          text=True)
    return time.perf_counter() - start, done.returncode


def bisect_64(tmp: str) -> str:
    repo = os.path.join(tmp, "repo")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode()
    for name in filter(None, files.split("\0")):
        if os.path.isfile(os.path.join(REPO, name)) and not name.startswith("tests/data/history_runs"):
            os.makedirs(os.path.dirname(os.path.join(repo, name)) or repo, exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(repo, name))

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "--quiet")
    git("config", "user.name", "bench")
    git("config", "user.email", "bench@localhost")
    for i in range(64):
        path = os.path.join(repo, "bench", "__init__.py")
        with open(path, "a") as f:
            f.write(f"# commit {i}\n")  # every commit touches the code: every probe is measured
        if i == 41:
            targets = os.path.join(repo, "giva", "targets.py")
            text = open(targets).read().replace('"v_proj", "up_proj"', '"v_proj", "o_proj", "up_proj"')
            open(targets, "w").write(text)
        git("add", "-A")
        git("commit", "--quiet", "-m", f"commit {i}")
    sweep = os.path.join(tmp, "sweep.toml")
    with open(sweep, "w") as f:
        f.write('models = ["llama-2m"]\ntasks = ["profile"]\nmethods = ["lora"]\nranks = [4]\nbatch_sizes = [1]\n'
                'seq_lens = [8]\nthreads = 1\n')
    first = git("rev-list", "--max-parents=0", "HEAD")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": repo}
    done = subprocess.run([sys.executable, "run_bench.py", "bisect", first, "HEAD", "--config", sweep, "--metric",
                           "flops_per_step"], cwd=repo, env=env, capture_output=True, text=True)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-bisect", action="store_true")
    parser.add_argument("--bisect-only", action="store_true")
    parser.add_argument("--judge-busy", action="store_true", help="treat runs recorded on a busy machine as quiet")
    args = parser.parse_args()
    global JUDGE_BUSY
    JUDGE_BUSY = args.judge_busy
    print(f"load average at start: {os.getloadavg()}")
    if args.bisect_only:
        with tempfile.TemporaryDirectory() as tmp:
            print(bisect_64(tmp))
        print(f"load average at end: {os.getloadavg()}")
        return
    from test_history import NOISE_RUNS, run_dirs

    with tempfile.TemporaryDirectory() as tmp:
        print(f"false alarms on {NOISE_RUNS} noise-only runs: {false_alarms(tmp)}")
        for factor in (1.05, 1.10, 1.20):
            for k in (8, 12):
                print(f"x{factor} from run {k}: runs until reported, per series: {delays(tmp, factor, k)}")
        path = big_history(tmp, 1000, 12)
        seconds, code = time_cli(["history", "regressions", "--file", path, "--acknowledged", "none"])
        print(f"history regressions on 1,000 runs x 12 points: {seconds:.1f} s wall (exit {code})")
        site = os.path.join(tmp, "site")
        seconds, code = time_cli(["history", "--file", path, "--html", site, "--acknowledged", "none"])
        print(f"its page: {os.path.getsize(os.path.join(site, 'index.html')) / 2**20:.2f} MiB, {seconds:.1f} s")
        small = os.path.join(tmp, "small")
        append_history(run_dirs(range(NOISE_RUNS + 6)), os.path.join(tmp, "h30.csv"))
        time_cli(["history", "--file", os.path.join(tmp, "h30.csv"), "--html", small, "--acknowledged", "none"])
        print(f"page of the 30 real runs: {os.path.getsize(os.path.join(small, 'index.html')) / 1024:.0f} KiB")
        if not args.skip_bisect:
            print(bisect_64(tmp))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
