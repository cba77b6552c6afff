"""Where the A/B gate's noise lives on this machine (issue 32, item 1): an A/A study of fresh interleaved processes.

One commit (this checkout's HEAD, copied into a temporary repository) is checked out in two worktrees, A and B, and
run as the gate runs it (bench/track/ab.py run_process: `run --in-process --threads 1` of the sweep, one process at
a time), in --blocks blocks of --per-block processes each, A and B alternating. Per point, the variance of the log
step time is split into Kalibera and Jones's levels (nested, method of moments):

    step      within a process: step to step
    process   between processes of one block, beyond what the steps explain
    block     between blocks (minutes apart), beyond what the processes explain

printed as coefficients of variation (%), with the gate's own figure: the spread of log(B/A) of consecutive A/B
processes. Wall against CPU time is read per process: wall time and CPU time (user + system, from getrusage of the
finished child) of the whole process; the rows record no CPU time per step.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/ab_noise.py [--preset ab | --config F]
        [--blocks 5] [--per-block 6]

Run it on a quiet machine: other work on the cores is what it measures.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))

from git_clones import clone_checkout  # noqa: E402

from bench.config.presets import preset_file  # noqa: E402
from bench.results.environment import git  # noqa: E402
from bench.track.ab import METRIC, run_process, sweep_arguments  # noqa: E402
from bench.track.rules import parse_times  # noqa: E402
from bench.track.worktrees import Worktrees  # noqa: E402


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(repo: str, sweep_file: str, blocks: int, per_block: int) -> list[dict]:
    """One record per process: block, arm, wall and CPU seconds, {point: (median ms, raw step times)}."""
    records = []
    with Worktrees(repo, prefix="ab-noise-") as trees:
        sweep = sweep_arguments(sweep_file, trees.tmp)
        head = git("rev-parse", "HEAD", cwd=repo)
        arms = {"A": trees.add(head), "B": trees.add(head)}
        for block in range(blocks):
            for i in range(per_block):
                arm = "AB"[i % 2] if block % 2 == 0 else "BA"[i % 2]
                wall, cpu = time.perf_counter(), child_cpu_s()
                _, rows = run_process(trees, arms[arm], sweep)
                wall, cpu = time.perf_counter() - wall, child_cpu_s() - cpu
                records.append(dict(block=block, arm=arm, wall_s=wall, cpu_s=cpu, points={
                    p: (row[METRIC], parse_times(row["step_times_ms"])) for p, row in rows.items()}))
                print(f"block {block} process {i} ({arm}): {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr)
    return records


def levels(records: list[dict], point: str) -> dict[str, float]:
    """CoV (%) of each level, from the log step times of the point in every process (nested method of moments)."""
    by_block: dict[int, list[np.ndarray]] = {}
    for r in records:
        if point in r["points"]:
            by_block.setdefault(r["block"], []).append(np.log(r["points"][point][1]))
    processes = [x for block in by_block.values() for x in block]
    steps = float(np.mean([x.var(ddof=1) for x in processes]))
    n_steps = float(np.mean([len(x) for x in processes]))
    within = [np.var([x.mean() for x in block], ddof=1) for block in by_block.values() if len(block) > 1]
    process = max(float(np.mean(within)) - steps / n_steps, 0.0) if within else math.nan
    block_means = [np.mean([x.mean() for x in block]) for block in by_block.values()]
    per_block = float(np.mean([len(b) for b in by_block.values()]))
    block = (max(float(np.var(block_means, ddof=1)) - (process + steps / n_steps) / per_block, 0.0)
             if len(block_means) > 1 and not math.isnan(process) else math.nan)
    return {name: 100 * math.sqrt(v) if v == v else math.nan
            for name, v in (("step", steps), ("process", process), ("block", block))}


def pair_spread(records: list[dict], point: str) -> float:
    """CoV (%) of log(B/A) over consecutive A, B processes: the spread the gate's pairs see."""
    logs = []
    for first, second in zip(records[::2], records[1::2]):
        if point in first["points"] and point in second["points"]:
            a, b = (r["points"][point][0] for r in sorted((first, second), key=lambda r: r["arm"]))
            logs.append(math.log(b / a))
    return 100 * float(np.std(logs, ddof=1)) if len(logs) > 1 else math.nan


def cov(values: list[float]) -> float:
    x = np.log(values)
    return 100 * float(np.std(x, ddof=1)) if len(x) > 1 else math.nan


def sweep_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser with the sweep it times: --preset (default ab) or --config FILE."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument("--preset", default="ab")
    sweep.add_argument("--config", metavar="FILE")
    return parser


def sweep_file(args) -> str:
    return os.path.abspath(args.config) if args.config else preset_file(args.preset)


def main() -> None:
    parser = sweep_parser(__doc__)
    parser.add_argument("--blocks", type=int, default=5, help="blocks (minutes apart: one after another)")
    parser.add_argument("--per-block", type=int, default=6, help="processes per block, A and B alternating")
    args = parser.parse_args()
    path = sweep_file(args)
    with tempfile.TemporaryDirectory(prefix="ab-noise-") as tmp:
        repo = clone_checkout(os.path.join(tmp, "repo"))
        records = measure(repo, path, args.blocks, args.per_block)
    points = sorted({p for r in records for p in r["points"]})
    print(f"{len(records)} processes in {args.blocks} blocks of {args.per_block}; CoV of log step time by level (%)")
    print(f"{'point':44s} {'step':>6s} {'process':>8s} {'block':>6s} {'pair B/A':>9s}")
    for point in points:
        v = levels(records, point)
        print(f"{point:44s} {v['step']:6.2f} {v['process']:8.2f} {v['block']:6.2f} {pair_spread(records, point):9.2f}")
    print(f"whole process: wall CoV {cov([r['wall_s'] for r in records]):.2f}%, CPU CoV "
          f"{cov([r['cpu_s'] for r in records]):.2f}% (median {np.median([r['wall_s'] for r in records]):.1f} s wall, "
          f"{np.median([r['cpu_s'] for r in records]):.1f} s CPU)")


if __name__ == "__main__":
    main()
