"""profile-quick (12 points) on the local, pool and Ray executors: wall time of each run and the step-time
medians of the same points side by side (are timings of points run in parallel still faithful?).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/executors_wall.py --out reports/runs/executors-wall
    ... --local-threads 2     # the issue's local baseline (2 threads, one point at a time)

Runs the three one after another, each from a fresh run directory, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from bench.results.read import read_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the three run directories (must not exist)")
    parser.add_argument("--preset", default="profile-quick")
    parser.add_argument("--local-threads", type=int, default=1)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    runs = [(f"local ({args.local_threads} thread{'s' * (args.local_threads > 1)})",
             ["--threads", str(args.local_threads)]),
            (f"pool ({cores} workers x 1 thread)", ["--executor", "pool", "--workers", str(cores), "--threads", "1"]),
            (f"Ray local ({cores} CPUs, 1 per point)", ["--executor", "ray", "--ray-num-cpus", str(cores),
                                                         "--threads", "1"])]
    walls, medians = {}, {}
    for i, (name, flags) in enumerate(runs):
        run_dir = os.path.join(args.out, f"run{i}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "run_bench.py", "run", "--preset", args.preset, "--out", run_dir,
                        "--no-report", *flags], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        walls[name] = time.perf_counter() - start
        rows = read_rows(os.path.join(run_dir, "results.csv"))
        medians[name] = {(r["model"], r["method"], r["rank"]): float(r["step_time_ms_p50"]) for r in rows
                         if r["status"] == "ok"}
    names = [name for name, _ in runs]
    print(f"{args.preset} on {cores} cores, {os.uname().nodename}\n")
    print("| executor | wall (s) | step p50 vs the first, median ratio over points |\n|---|---:|---:|")
    first = medians[names[0]]
    for name in names:
        ratios = [medians[name][k] / first[k] for k in first if k in medians[name]]
        print(f"| {name} | {walls[name]:.1f} | {statistics.median(ratios):.2f} |")
    print("\n| point | " + " | ".join(f"step p50 ms, {n}" for n in names) + " |\n|---|" + "---:|" * len(names))
    for k in sorted(first):
        print(f"| {' '.join(k)} | " + " | ".join(f"{medians[n].get(k, float('nan')):.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
