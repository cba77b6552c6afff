"""The A/B gate's false alarms and power on this machine (issue 32's goals), --runs gate runs of each case:

    A/A   the gate on one commit against itself: how often it says slower (goal: at most 1 in 20)
    10%   a committed change calibrated to cost 10% of the step time: how often slower within 6 minutes (>= 19/20)
    5%    the same at 5%, within 15 minutes (>= 16 of 20)

The planted change (committed in a temporary copy of this checkout, on a branch from its only commit): every
adapted layer's forward (giva/layer.py AdapterLayer.forward) multiplies its input by an extra (in, K) matrix of
ones and adds 0 x the product's row sums to its output: real extra work, in the forward and the backward, that
FLOPs count (the gate calls it explained). Calibration, measured: K0 and 2 K0 planted, each timed by
--calibrate-rounds paired rounds of the gate's processes (bench/track/ab.py run_process, seeded order), give the
mean over points of the ratio; the cost is taken as linear in K (r - 1 = a + b K: the op's fixed cost and its
work), solved for each target, and the K found is timed again (its measured cost is printed beside the target).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python tests/benchmarks/ab_power.py [--runs 20] [--preset ab]
        [--k0 32] [--calibrate-rounds 20] [--max-rounds N]

Run it on a quiet machine; at full size it takes hours (3 x 20 gate runs of up to 6-15 minutes, and the
calibration).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))

from ab_noise import sweep_file, sweep_parser  # noqa: E402
from git_clones import clone_checkout, commit, edit, git  # noqa: E402

from bench.track.ab import METRIC, exit_code, run_gate, run_process, sweep_arguments  # noqa: E402
from bench.track.worktrees import Worktrees  # noqa: E402

PLANT_AT = "        result = self.base_layer(x)\n"
CASES = [("A/A", 0.0, 10.0), ("10%", 0.10, 6.0), ("5%", 0.05, 15.0)]  # name, planted cost, the goal's budget (min)


def planted(repo: str, base: str, k: int) -> str:
    """A commit on a branch from `base` whose adapted layers do an extra (tokens, in) x (in, k) matmul; its hash."""
    git(repo, "checkout", "--quiet", "-B", f"plant-{k}", base)
    edit(repo, os.path.join("giva", "layer.py"), PLANT_AT, PLANT_AT + (
        f"        result = result + 0.0 * (x @ x.new_ones(x.shape[-1], {k})).sum(-1, keepdim=True)  # planted\n"))
    head = commit(repo, f"planted: an extra matmul of width {k} per adapted layer")
    git(repo, "checkout", "--quiet", "main")
    return head


def paired_ratio(repo: str, base: str, head: str, path: str, rounds: int, seed: int) -> float:
    """The mean over points of the geometric mean ratio HEAD/BASE of median step times, over paired rounds."""
    rng = np.random.default_rng(seed)
    logs: dict[str, list[float]] = {}
    with Worktrees(repo, prefix="ab-calibrate-") as trees:
        sweep = sweep_arguments(path, trees.tmp)
        arms = [trees.add(base), trees.add(head)]
        for _ in range(rounds):
            rows = {}
            for i in rng.permutation(2):
                rows[int(i)] = run_process(trees, arms[i], sweep)[1]
            for point in set(rows[0]) & set(rows[1]):
                logs.setdefault(point, []).append(math.log(rows[1][point][METRIC] / rows[0][point][METRIC]))
    return math.exp(float(np.mean([np.mean(x) for x in logs.values()])))


def calibrate(repo: str, base: str, path: str, k0: int, rounds: int) -> dict[float, tuple[int, float]]:
    """{target cost: (K, its measured ratio)} for the planted cases."""
    r1, r2 = (paired_ratio(repo, base, planted(repo, base, k), path, rounds, seed=k) for k in (k0, 2 * k0))
    slope = (r2 - r1) / k0  # r - 1 = a + slope * K
    fixed = r1 - 1 - slope * k0
    print(f"calibration: K={k0} costs {r1 - 1:+.1%}, K={2 * k0} {r2 - 1:+.1%} (fixed part {fixed:+.1%})")
    out = {}
    for _, target, _ in CASES[1:]:
        if slope <= 0 or target <= fixed:
            raise SystemExit(f"cannot plant {target:.0%}: the extra op alone costs {fixed:+.1%} and its width "
                             f"{slope * 100:+.3f}% per column; rerun with more --calibrate-rounds or a larger --k0")
        k = max(1, round((target - fixed) / slope))
        out[target] = (k, paired_ratio(repo, base, planted(repo, base, k), path, rounds, seed=k))
        print(f"  {target:.0%}: K={k}, measured {out[target][1] - 1:+.1%}")
    return out


def gate_runs(repo: str, base: str, head: str, sweep: dict, budget: float, runs: int, max_rounds: int | None):
    """Exit codes and per-point verdicts of `runs` gate runs, seeds 0..runs-1."""
    results = []
    for seed in range(runs):
        result = run_gate(base, head, budget_min=budget, seed=seed, max_rounds=max_rounds, repo=repo,
                          log=lambda line: print(f"  seed {seed}: {line}", file=sys.stderr), **sweep)
        results.append(result)
    return results


def main() -> None:
    parser = sweep_parser(__doc__)
    parser.add_argument("--runs", type=int, default=20, help="gate runs per case")
    parser.add_argument("--k0", type=int, default=32, help="the first calibration width")
    parser.add_argument("--calibrate-rounds", type=int, default=20, help="paired rounds per calibration size")
    parser.add_argument("--max-rounds", type=int, help="cap every gate run's rounds (a quick try; not the goals)")
    args = parser.parse_args()
    sweep = dict(config=os.path.abspath(args.config)) if args.config else dict(preset=args.preset)
    path = sweep_file(args)
    with tempfile.TemporaryDirectory(prefix="ab-power-") as tmp:
        repo = clone_checkout(os.path.join(tmp, "repo"))
        base = git(repo, "rev-parse", "HEAD")
        plants = calibrate(repo, base, path, args.k0, args.calibrate_rounds)
        lines = []
        for name, target, budget in CASES:
            head = base if not target else git(repo, "rev-parse", f"plant-{plants[target][0]}")
            results = gate_runs(repo, base, head, sweep, budget, args.runs, args.max_rounds)
            slower = sum(exit_code(r) == 1 for r in results)
            points = [p.verdict.verdict for r in results for p in r.points.values()]
            cost = f", planted K={plants[target][0]} measured {plants[target][1] - 1:+.1%}" if target else ""
            lines.append(f"{name}{cost}: slower in {slower} of {len(results)} gate runs within {budget:g} min "
                         f"(points: {', '.join(f'{points.count(v)} {v}' for v in dict.fromkeys(points))}; "
                         f"median {np.median([r.seconds for r in results]) / 60:.1f} min, "
                         f"{np.median([r.rounds for r in results]):.0f} rounds)")
            print(lines[-1])
    print("\n".join(["", *lines]))


if __name__ == "__main__":
    main()
