"""`run_bench.py ab BASE HEAD --preset P`: the PR gate. Is HEAD slower than BASE, point by point, on this machine?

    result = run_gate("main", "HEAD", preset="ab", budget_min=10, seed=0)
    print(format_gate(result)); exit_code(result)  # 0 same or faster, 1 slower, 3 undecided

Both commits are checked out in temporary worktrees (track/worktrees.py) and run the same sweep file: the one
given, or this checkout's preset file (bench/presets/, which an older commit may lack), copied once to a temporary
path that both read with --config (a size ladder dropped: its rows are estimated, not timed).
The process is the unit of replication. Each round runs, for each arm, one short fresh process of that commit's
own run_bench.py (`run --in-process --threads 1`: every point of the sweep in that process, one torch thread);
the order of the two arms within a round is drawn from a generator seeded with --seed, so both arms see the same
minutes. A point's value in a process is its median step time (step_time_ms_p50; the rows have no CPU time per
step); a pair is the BASE and HEAD processes of one round.

The rule is rules.py's judge_pairs on each point's pairs' log(HEAD / BASE): the ratio's estimate exp(mean) and its
99% t-interval; with the minimum effect e (--min-effect, AB_MIN_EFFECT = 5%) *slower* when the interval lies above
1 and the estimate above 1 + e, *faster* symmetrically, *same* when the interval lies inside [1/(1+e), 1+e], else
*undecided*; no verdict under AB_MIN_PAIRS pairs. Adaptive: after each round a point that is decided keeps its
verdict (the pairs it was decided on) and leaves the stopping decision; rounds go on while a point is undecided and
the next round fits in the --budget minutes (and --max-rounds, where given). An undecided point reports the pairs
that would likely decide it. Every process runs every point (the decided ones too): one process per arm and round.

Exact counts: `estimate` of the sweep at both commits (shapes only, seconds); every count that differs is listed
beside the point's timing verdict, and a slower or faster point is *explained* when the count that predicts step
time (FLOPs) moved, *efficiency* when it did not (changes.explain, the history's wording).

Exit codes: 0 every point same or faster, 1 a point slower, 3 undecided within the budget (none slower); bad input
(a dirty tree, an unknown commit, a sweep without timed points, a budget <= 0) raises ValueError before anything
runs: the CLI prints one line and exits 2. With `out`, ab.csv holds every process's value per point and ab.json
what produced them (commits, sweep, seed, machine, versions) and the verdicts.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..config.presets import load_sweep_file, make_sweep_config, preset_file
from ..results.environment import REPO_ROOT, utc_now
from ..results.read import Run
from .changes import explain
from .rules import AB_MIN_EFFECT, AB_MIN_PAIRS, CONFIDENCE, EXACT, PairedVerdict, judge_pairs
from .worktrees import Worktrees, require_clean, resolve

EXIT_SLOWER, EXIT_UNDECIDED = 1, 3
BUDGET_MIN = 10.0  # default --budget: minutes of rounds
PRESET = "ab"  # the sweep made for the gate (bench/presets/ab.toml)
TIMED_TASK = "profile"  # the timing-only task: warm-up and timed steps, no training run for a score
METRIC = "step_time_ms_p50"
COUNTED = [m for m in EXACT if m != "adapter_file_bytes"]  # what estimate fills (it saves no adapter file)
ARMS = ("BASE", "HEAD")
CSV_COLUMNS = ["commit", "arm", "round", "position", "point_id", "point", METRIC]


@dataclass
class PointVerdict:
    point: str
    base_ms: float  # median over BASE's processes of the point's median step time
    head_ms: float
    verdict: PairedVerdict
    decided_round: int | None = None  # the round whose pairs decided it (None: undecided)
    counts: list[str] = field(default_factory=list)  # exact counts that differ: "flops_per_step +12.0%"
    kind: str = ""  # slower or faster: "explained" (the count that predicts step time moved) or "efficiency"
    why: str = ""


@dataclass
class GateResult:
    base: str
    head: str
    sweep: str  # "preset ab" or "sweep FILE"
    seed: int
    min_effect: float
    budget_min: float
    points: dict[str, PointVerdict]
    rounds: int
    seconds: float
    out: str | None = None


def check_gate(base: str, head: str, preset: str | None, config: str | None, budget_min: float,
               min_effect: float, repo: str) -> tuple[str, str, str]:
    """Both commits' hashes and the sweep file; a one-line ValueError (nothing run) for each bad input."""
    if budget_min <= 0:
        raise ValueError(f"--budget {budget_min:g}: give the minutes the gate may run, above 0 (default "
                         f"{BUDGET_MIN:g})")
    if not 0 < min_effect < 1:
        raise ValueError(f"--min-effect {min_effect:.0%}: give a fraction between 0% and 100%, e.g. 5%")
    if preset is not None and config is not None:
        raise ValueError("give the sweep as --preset NAME or --config FILE (one of them)")
    path = config or preset_file(preset or PRESET)  # an unknown preset fails here
    swept = make_sweep_config(None, load_sweep_file(path))  # bad keys and values fail here
    untimed = [t for t in swept.tasks if t != TIMED_TASK]
    if untimed:
        name = f"sweep {config}" if config else f"preset {preset or PRESET}"
        raise ValueError(f"{name} has points the gate cannot time: tasks {', '.join(untimed)} train for a score; "
                         f"the gate times only the {TIMED_TASK} task's steps, in short processes: use --preset "
                         f"{PRESET} or a sweep with tasks = [\"{TIMED_TASK}\"]")
    require_clean(repo, "the gate compares commits")
    return resolve(base, repo), resolve(head, repo), path


def run_gate(base: str, head: str, preset: str | None = None, config: str | None = None,
             budget_min: float = BUDGET_MIN, seed: int = 0, min_effect: float = AB_MIN_EFFECT, out: str | None = None,
             max_rounds: int | None = None, repo: str = REPO_ROOT, log=print) -> GateResult:
    """Check the inputs, then run rounds of paired processes until every point is decided, the budget is used or
    max_rounds rounds ran."""
    if max_rounds is not None and max_rounds < 1:
        raise ValueError(f"--max-rounds {max_rounds}: give at least 1 (each round is one process per arm)")
    commits = check_gate(base, head, preset, config, budget_min, min_effect, repo)
    start = time.perf_counter()
    base_hash, head_hash, path = commits
    rng = np.random.default_rng(seed)
    sink = Sink(out, base_hash, head_hash, f"sweep {config}" if config else f"preset {preset or PRESET}", seed,
                min_effect, budget_min)
    with Worktrees(repo, prefix="ab-") as trees:
        sweep = sweep_arguments(path, trees.tmp)
        arms = [trees.add(c) for c in (base_hash, head_hash)]
        counts = {arm: labelled(trees.run_bench(tree, "estimate", sweep).rows)
                  for arm, tree in zip(ARMS, arms)}
        log(f"exact counts estimated at both commits ({time.perf_counter() - start:.0f} s)")
        values_ms: dict[str, dict[str, list[float]]] = {arm: {} for arm in ARMS}
        logs: dict[str, list[float]] = {}
        decided: dict[str, tuple[PairedVerdict, int]] = {}
        rounds, last = 0, 0.0
        while rounds == 0 or (undecided(logs, decided, values_ms) and rounds != max_rounds and
                              time.perf_counter() - start + last <= budget_min * 60):
            rounds += 1
            begun = time.perf_counter()
            order = [int(i) for i in rng.permutation(2)]
            medians = {}
            for position, i in enumerate(order):
                run, medians[ARMS[i]] = run_process(trees, arms[i], sweep)
                sink.add(run, ARMS[i], rounds, position, medians[ARMS[i]])
            for point in set(medians["BASE"]) & set(medians["HEAD"]):
                b, h = medians["BASE"][point][METRIC], medians["HEAD"][point][METRIC]
                logs.setdefault(point, []).append(math.log(h / b))
            for arm in ARMS:
                for point, row in medians[arm].items():
                    values_ms[arm].setdefault(point, []).append(row[METRIC])
            for point, x in logs.items():
                verdict = judge_pairs(np.array(x), min_effect)
                if point not in decided and verdict.verdict != "undecided":
                    decided[point] = (verdict, rounds)
            last = time.perf_counter() - begun
            log(f"round {rounds} ({''.join('AB'[i] for i in order)}, {last:.0f} s): {len(decided)} of "
                f"{len(set(values_ms['BASE']) | set(values_ms['HEAD']))} points decided")
    points = {}
    for point in sorted(set(values_ms["BASE"]) | set(values_ms["HEAD"])):
        verdict, when = decided.get(point, (judge_pairs(np.array(logs.get(point, [math.nan])), min_effect), None))
        median = {arm: float(np.median(values_ms[arm].get(point, [math.nan]))) for arm in ARMS}
        points[point] = describe_counts(PointVerdict(point, median["BASE"], median["HEAD"], verdict, when),
                                        counts["BASE"].get(point), counts["HEAD"].get(point))
    result = GateResult(base_hash, head_hash, sink.sweep, seed, min_effect, budget_min, points, rounds,
                        time.perf_counter() - start, out)
    sink.finish(result)
    return result


def sweep_arguments(path: str, folder: str) -> list[str]:
    """run_bench.py's arguments for the sweep file both arms run: a copy in `folder` (an absolute path, read the same
    from every worktree, whatever the commit's own presets), and --size-ladder '' where the sweep has a ladder."""
    copy = shutil.copy(path, os.path.join(folder, "sweep.toml"))
    ladder = make_sweep_config(None, load_sweep_file(path)).size_ladder
    return ["--config", copy, *(["--size-ladder", ""] if ladder else [])]


def run_process(trees: Worktrees, tree: str, sweep: list[str]) -> tuple[Run, dict[str, dict]]:
    """One process of a commit's own `run --in-process` of the sweep (sweep_arguments): its run, and its rows by
    point label."""
    run = trees.run_bench(tree, "run", [*sweep, "--in-process"])
    return run, labelled(run.rows)


def undecided(logs: dict, decided: dict, values_ms: dict) -> bool:
    """Whether a point is still open: measured by either arm and not decided."""
    return any(point not in decided for arm in ARMS for point in values_ms[arm]) or not logs


def labelled(rows) -> dict[str, dict]:
    """{point label: row}: model, task, method, rank, seed and shape (the point_id where those do not tell apart).
    Labels, not point ids, match the arms: a commit may hash its points differently."""
    out = {}
    for row in rows.to_dict("records"):
        label = (f"{row['model']} {row['task']} {row['method']} r={row['rank']:.0f} seed={row['seed']:.0f} "
                 f"{row['batch_size']:.0f}x{row['seq_len']:.0f}")
        out[f"{label} [{row['point_id'][:8]}]" if label in out else label] = row
    return out


def describe_counts(p: PointVerdict, base_row: dict | None, head_row: dict | None) -> PointVerdict:
    """The exact counts that differ between the arms' estimates, and why a slower or faster point moved."""
    moved = []
    for metric in COUNTED if base_row is not None and head_row is not None else []:
        old, new = base_row.get(metric, math.nan), head_row.get(metric, math.nan)
        if old == old and new == new and old != new:
            moved.append((metric, old, new))
            p.counts.append(f"{metric} {new / old - 1:+.1%}" if old else f"{metric} {old:,.0f} -> {new:,.0f}")
    if p.verdict.verdict in ("slower", "faster"):
        p.kind, _, p.why = explain(METRIC, p.base_ms, p.verdict.ratio, moved)
    return p


class Sink:
    """ab.csv (every process's value per point, written as each process ends) and ab.json, under `out`."""

    def __init__(self, out: str | None, base: str, head: str, sweep: str, seed: int, min_effect: float,
                 budget_min: float):
        self.out, self.sweep, self.writer, self.environment = out, sweep, None, {}
        self.meta = dict(produced_by="run_bench.py ab (bench/track/ab.py)", command=sys.argv, started_at=utc_now(),
                         base=base, head=head, sweep=sweep, seed=seed, min_effect=min_effect, budget_min=budget_min,
                         metric=METRIC, confidence=CONFIDENCE, min_pairs=AB_MIN_PAIRS)
        if out:
            os.makedirs(out, exist_ok=True)
            self.file = open(os.path.join(out, "ab.csv"), "w", newline="")
            self.writer = csv.writer(self.file)
            self.writer.writerow(CSV_COLUMNS)

    def add(self, run, arm: str, round_: int, position: int, rows: dict[str, dict]) -> None:
        self.environment = self.environment or run.meta.get("environment") or {}
        if self.writer:
            commit = self.meta["base" if arm == "BASE" else "head"]
            for point, row in rows.items():
                self.writer.writerow([commit, arm, round_, position, row["point_id"], point, row[METRIC]])
            self.file.flush()

    def finish(self, result: GateResult) -> None:
        if not self.writer:
            return
        self.file.close()
        env = self.environment
        self.meta.update(ended_at=utc_now(), rounds=result.rounds, seconds=result.seconds,
                         machine={k: env.get(k) for k in ("cpu", "cpu_count", "platform", "device", "torch_threads")},
                         python=env.get("python"), versions=env.get("versions", {}),
                         verdicts={p: {**asdict(v.verdict), "counts": v.counts, "kind": v.kind, "why": v.why,
                                       "decided_round": v.decided_round} for p, v in result.points.items()})
        with open(os.path.join(self.out, "ab.json"), "w") as f:
            json.dump(self.meta, f, indent=1, default=float)


# --- output -------------------------------------------------------------------


def exit_code(result: GateResult) -> int:
    verdicts = [p.verdict.verdict for p in result.points.values()]
    return EXIT_SLOWER if "slower" in verdicts else EXIT_UNDECIDED if "undecided" in verdicts else 0


def format_gate(result: GateResult) -> str:
    out = [f"BASE {result.base[:8]}  HEAD {result.head[:8]}  {result.sweep}, seed {result.seed}: {result.rounds} "
           f"rounds of one process per arm in {result.seconds / 60:.1f} of {result.budget_min:g} min",
           f"rule: per point, the {CONFIDENCE:.0%} t-interval of the pairs' HEAD/BASE median step time; slower or "
           f"faster beyond {result.min_effect:.0%} and significant, same inside +-{result.min_effect:.0%}", "",
           f"{'point':44s} {'BASE ms':>9s} {'HEAD ms':>9s} {'ratio':>7s} {f'{CONFIDENCE:.0%} CI':>13s} {'pairs':>5s}  "
           "verdict"]
    for name, p in result.points.items():
        v = p.verdict
        ci = f"{v.low:.3f}-{v.high:.3f}" if math.isfinite(v.high) else "-"
        verdict = v.verdict + (f" ({p.kind}: {p.why})" if p.kind else "")
        if v.verdict == "undecided":
            verdict += f" (about {v.pairs_needed} pairs would decide it)" if v.pairs_needed else ""
        counts = f"; counts: {', '.join(p.counts)}" if p.counts else ""
        out.append(f"{name:44s} {p.base_ms:9.2f} {p.head_ms:9.2f} {v.ratio:7.3f} {ci:>13s} {v.pairs:5d}  "
                   f"{verdict}{counts}")
    tally = {k: sum(p.verdict.verdict == k for p in result.points.values())
             for k in ("slower", "faster", "same", "undecided")}
    code = exit_code(result)
    word = {0: "pass", EXIT_SLOWER: "SLOWER", EXIT_UNDECIDED: "undecided"}[code]
    out += ["", f"result: {word} (exit {code}): " + ", ".join(f"{n} {k}" for k, n in tally.items() if n)]
    if result.out:
        out.append(f"per-process values: {os.path.join(result.out, 'ab.csv')}")
    return "\n".join(out)
