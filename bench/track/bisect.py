"""`run_bench.py bisect GOOD BAD (--preset P | --config F) --metric M`: the first commit of GOOD..BAD (git's
first-parent order) where M changed, each commit checked out in a temporary git worktree.

    result = bisect("v1", "HEAD", "flops_per_step", preset="counts")
    print(format_bisect(result))

Exact metrics (FLOPs, tensor bytes, parameters) are read from `run_bench.py estimate` of each commit's own code: a
shapes-only trace, seconds per commit, no hardware; a commit changed M when any point's value differs from GOOD's.
Timings are measured: at each step the commit's points and GOOD's are run alternately, --repeats times each (one
thread, in-process), and a commit changed M when the 99% bootstrap interval of the ratio of median step times
(every raw step time of the repeats pooled) lies beyond the minimum effect for some point: the rule of
`history regressions` and `compare`. GOOD is taken as unchanged and BAD as changed, so a range of n commits costs
GOOD's probe and ceil(log2 n) more; BAD itself is probed only when every commit before it is unchanged (one more).
A commit whose code (bench/, giva/, run_bench.py, pyproject.toml: their git trees) equals one measured already is
not run again. The sweep is the preset as each commit defines it, or the sweep file given (the same file for
every commit).

It runs each commit's own run_bench.py in a subprocess and judges with
track/rules.py's rule.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np

from ..columns import BY_NAME, COLUMNS
from ..results.environment import REPO_ROOT, git
from .rules import CONFIDENCE, MIN_EFFECT, bootstrap_ratio_ci, parse_times
from .worktrees import Worktrees, require_clean, resolve

CODE = ("bench", "giva", "run_bench.py", "pyproject.toml")  # what a commit's results depend on: same trees, same results
ESTIMATED = [c.name for c in COLUMNS if c.compare == "exact" and c.name != "adapter_file_bytes"]  # estimate fills
TIMED = ["step_time_ms_p50"]
REPEATS = 3


@dataclass
class Probe:
    commit: str
    changed: bool
    values: dict[str, float]  # point label -> M (timings: median of the pooled raw step times)
    ratios: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # timings: ratio, CI low, CI high
    seconds: float = 0.0
    same_code_as: str = ""  # a commit already measured whose code (CODE) this commit shares: not run again


@dataclass
class BisectResult:
    metric: str
    good: str
    bad: str
    commits: list[str]  # GOOD..BAD, oldest first (BAD last)
    probes: dict[str, Probe]  # commit -> its probe, GOOD's included
    first: str | None  # the first commit where the metric changed; None: it did not change in GOOD..BAD
    seconds: float
    repo: str

    @property
    def measured(self) -> int:
        """Probes that ran their commit (the others share their code with one that did)."""
        return sum(not p.same_code_as for p in self.probes.values())


def bisect(good: str, bad: str, metric: str, preset: str | None = None, config: str | None = None,
           repeats: int = REPEATS, log=print, repo: str = REPO_ROOT) -> BisectResult:
    """Check the inputs (one-line ValueError for each bad one, nothing written), then bisect GOOD..BAD of the git
    repository `repo` (this checkout's by default)."""
    if metric not in ESTIMATED + TIMED:
        raise ValueError(f"bisect cannot judge {metric!r}; exact metrics (by estimate): {', '.join(ESTIMATED)}; "
                         f"timings (run): {', '.join(TIMED)}")
    if (preset is None) == (config is None):
        raise ValueError("give the sweep as --preset NAME or --config FILE (one of them)")
    if config is not None and not os.path.isfile(config):
        raise FileNotFoundError(f"sweep file {config!r} not found; give the path of a TOML file")
    if repeats < 2:
        raise ValueError(f"--repeats {repeats}: timings need at least 2 runs per commit")
    require_clean(repo, "bisect compares commits")
    good_hash, bad_hash = (resolve(rev, repo) for rev in (good, bad))
    if subprocess.run(["git", "merge-base", "--is-ancestor", good_hash, bad_hash], cwd=repo).returncode != 0:
        raise ValueError(f"GOOD {good} is not an ancestor of BAD {bad}; give a GOOD older than BAD, on BAD's history")
    commits = git("rev-list", "--first-parent", "--reverse", f"{good_hash}..{bad_hash}", cwd=repo).split()
    if not commits:
        raise ValueError(f"GOOD {good} and BAD {bad} are the same commit: nothing to bisect")
    start = time.perf_counter()
    sweep = ["--config", os.path.abspath(config)] if config else ["--preset", preset]
    with Worktrees(repo, prefix="bisect-") as trees:
        prober = Prober(trees, metric, sweep, repeats, log)
        probes = {good_hash: prober.baseline(good_hash)}
        lo, hi = -1, len(commits) - 1  # commits[lo] unchanged (-1: GOOD), commits[hi] taken as changed
        while hi - lo > 1:
            mid = (lo + hi) // 2
            probes[commits[mid]] = prober.probe(commits[mid])
            lo, hi = (lo, mid) if probes[commits[mid]].changed else (mid, hi)
        if commits[hi] not in probes:  # every commit before BAD is unchanged: is BAD?
            probes[commits[hi]] = prober.probe(commits[hi])
        first = commits[hi] if probes[commits[hi]].changed else None
    return BisectResult(metric, good_hash, bad_hash, commits, probes, first, time.perf_counter() - start, repo)


class Prober:
    """Runs a commit's points in a temporary worktree and judges them against GOOD's."""

    def __init__(self, trees: Worktrees, metric: str, sweep: list[str], repeats: int, log):
        self.trees, self.metric, self.sweep, self.repeats, self.log = trees, metric, sweep, repeats, log
        self.repo = trees.repo
        self.timed = metric in TIMED
        self.good: dict[str, np.ndarray] = {}  # point -> GOOD's values (exact: one; timings: raw step times)
        self.good_tree = ""
        self.by_code: dict[tuple, tuple[str, dict]] = {}  # code trees -> (commit, its values) measured already

    def baseline(self, commit: str) -> Probe:
        start = time.perf_counter()
        tree = self.trees.add(commit)
        self.good = self.measure(tree)
        self.by_code[code_trees(commit, self.repo)] = (commit, (self.good, self.good) if self.timed else self.good)
        if all(np.isnan(v).all() for v in self.good.values()):
            raise ValueError(f"the points of this sweep produce no {self.metric} at GOOD {commit[:8]}; choose a "
                             f"metric they produce ({', '.join(ESTIMATED if not self.timed else TIMED)})")
        if self.timed:
            self.good_tree = tree  # run again beside every probe, alternately
        else:
            self.trees.remove(tree)
        values = {p: float(np.median(v)) for p, v in self.good.items()}
        self.log(f"GOOD {commit[:8]}: {summary(values)} ({time.perf_counter() - start:.1f} s)")
        return Probe(commit, False, values, seconds=time.perf_counter() - start)

    def probe(self, commit: str) -> Probe:
        start = time.perf_counter()
        code = code_trees(commit, self.repo)
        same_code_as = self.by_code[code][0] if code in self.by_code else ""
        if same_code_as and not self.timed:
            good, now = self.good, self.by_code[code][1]
        elif same_code_as:  # timings: the ratio against GOOD measured for that commit
            good, now = self.by_code[code][1]
        else:
            tree = self.trees.add(commit)
            try:
                if self.timed:
                    good, now = self.measure_alternately(self.good_tree, tree)
                else:
                    good, now = self.good, self.measure(tree)
            finally:
                self.trees.remove(tree)
            self.by_code[code] = (commit, (good, now) if self.timed else now)
        probe = Probe(commit, False, {p: float(np.median(v)) for p, v in now.items()}, same_code_as=same_code_as)
        for point in sorted(set(good) & set(now)):
            if self.timed:
                low, high = bootstrap_ratio_ci(good[point], now[point])
                limit = MIN_EFFECT[self.metric].limit
                probe.ratios[point] = (float(np.median(now[point]) / np.median(good[point])), low, high)
                probe.changed |= low > 1 + limit or high < 1 - limit
            else:
                probe.changed |= not np.array_equal(good[point], now[point], equal_nan=True)
        probe.changed |= set(good) != set(now)  # points appeared or vanished: the sweep itself changed
        probe.seconds = time.perf_counter() - start
        how = f"code of {same_code_as[:8]}" if same_code_as else f"{probe.seconds:.1f} s"
        self.log(f"{commit[:8]}: {'changed' if probe.changed else 'unchanged'}; {summary(probe.values)} ({how})")
        return probe

    def measure(self, tree: str) -> dict[str, np.ndarray]:
        """One estimate (exact metrics) or one run (timings) of the sweep with the tree's own code."""
        command, extra = ("run", ["--in-process"]) if self.timed else ("estimate", [])
        rows = self.trees.run_bench(tree, command, [*self.sweep, *extra]).rows
        if self.timed:
            return {f"{r['model']}/{r['method']}/r{r['rank']}/{r['point_id'][:8]}": parse_times(r["step_times_ms"])
                    for r in rows.to_dict("records")}
        return {f"{r['model']}/{r['method']}/r{r['rank']}/{r['point_id'][:8]}": np.array([r[self.metric]])
                for r in rows.to_dict("records")}

    def measure_alternately(self, good_tree: str, tree: str) -> tuple[dict, dict]:
        good, now = {}, {}
        for _ in range(self.repeats):
            for side, where in ((good, good_tree), (now, tree)):
                for point, times in self.measure(where).items():
                    side[point] = np.concatenate([side.get(point, np.array([])), times])
        return good, now


def code_trees(commit: str, repo: str) -> tuple[str, ...]:
    """The git tree (or blob) ids of a commit's CODE paths: equal ids, equal code."""
    return tuple(git("rev-parse", "--verify", "--quiet", f"{commit}:{path}", cwd=repo) for path in CODE)


def summary(values: dict[str, float]) -> str:
    return ", ".join(f"{p.rsplit('/', 1)[0]} {v:,.4g}" for p, v in sorted(values.items())[:4]) + \
        (f", ... ({len(values)} points)" if len(values) > 4 else "")


def format_bisect(result: BisectResult) -> str:
    unit = BY_NAME[result.metric].unit
    out = [f"{len(result.commits)} commits in {result.good[:8]}..{result.bad[:8]} (first-parent), "
           f"{len(result.probes)} probes including GOOD (ceil(log2 n) + 1 = "
           f"{math.ceil(math.log2(len(result.commits))) + 1}, one more when BAD itself must be probed), "
           f"{result.measured} measured (the others share their {', '.join(CODE)} with one measured), "
           f"{result.seconds:.1f} s"]
    if result.first is None:
        out.append(f"{result.metric} did not change in {result.good[:8]}..{result.bad[:8]}: BAD equals GOOD")
        return "\n".join(out)
    subject = git("log", "-1", "--format=%h %s", result.first, cwd=result.repo)
    index = result.commits.index(result.first)
    parent = result.commits[index - 1] if index else result.good
    out.append(f"first commit where {result.metric} changed: {subject}")
    before, after = result.probes[parent].values, result.probes[result.first].values
    for point in sorted(set(before) | set(after)):
        a, b = before.get(point, math.nan), after.get(point, math.nan)
        number = ",.0f" if unit in ("FLOPs", "bytes", "count") else ",.4g"
        line = f"  {point}: {a:{number}} -> {b:{number}} {unit}"
        if a == a and b == b and a and a != b:
            line += f" ({b / a - 1:+.2%})"
        ratios = result.probes[result.first].ratios.get(point)
        if ratios:
            line += f"; vs GOOD x{ratios[0]:.3f} ({CONFIDENCE:.0%} CI {ratios[1]:.3f}-{ratios[2]:.3f})"
            parent_ratios = result.probes.get(parent) and result.probes[parent].ratios.get(point)
            if parent_ratios:
                line += f", its parent x{parent_ratios[0]:.3f} ({parent_ratios[1]:.3f}-{parent_ratios[2]:.3f})"
        out.append(line)
    return "\n".join(out)
