"""Compare two runs point by point: ratios, noise-aware timing regressions, exact counts.

    c = compare_runs("reports/runs/base", "reports/runs/new", parse_thresholds(["step_time_ms_p50:5%"]))
    print(format_comparison(c)); exit_code(c)  # 1 when c.regressions, else 0

Points are matched by point_id (a hash of the point's whole configuration);
points in one run only are listed as added or removed, rows that are not ok are
listed, never compared. The rule for timings, as asv's: a step-time change counts
only when it is both larger than its threshold and significant. Concretely, the
99% bootstrap confidence interval (2000 resamples, fixed seed) of the ratio of
median step times, current / baseline, computed from the raw per-step times in
step_times_ms, must lie entirely beyond 1 + threshold (a slowdown) or 1 - threshold
(a speed-up). Single-shot timings (init) and memory use their threshold, and count only
beyond a noise floor (64 MiB for memory read as process RSS); counts (parameters,
adapter sizes, FLOPs, tracked tensor bytes, operator-level counts) must not change at all. Which column is
judged how is its entry in bench/columns.py. The operator-level counts (copies, allocations, syncs, operator
calls) depend on the torch version that counted them (counts_torch): across two versions they are not compared,
and a warning says so; a change of aten_ops_per_step names the operators behind it.

Timings know the machine and its load. Timings and memory readings (is_machine_reading in
bench/columns.py) of two runs timed on different machines (processor, device or torch threads:
track/machine.py) are "not judged" and listed as NOT COMPARABLE with both machines named, unless
across_machines (`--across-machines`); the exact counts are judged all the same. A point one run
timed on a busy machine (1-minute load average above its cores: results/environment.py is_busy)
has a note beside each timing verdict, and a timing that got worse between a busy and a quiet run
is "not judged" unless across_loads (`--across-loads`). Either way compare exits 3 when nothing
else regressed.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from ..columns import BY_NAME, COMPARED, COUNTED_BY, MIB, by_op_counts, column
from ..results.read import Run, load_run
from .changes import explain
from .machine import Machine, differ, run_machine
from .rules import (CONFIDENCE, DEFAULT_THRESHOLDS, EXACT, MIN_SAMPLES, Threshold, judge, noise_floor,
                    parse_threshold, parse_thresholds, step_time_ci)

NOT_JUDGED = "not judged"  # the verdict of a machine reading of two machines, or of a timing regression between a
# busy and a quiet run
EXIT_NOT_JUDGED = 3  # compare's exit code when the only regressions are timings it would not judge


@dataclass
class MetricChange:
    """One metric of one matched point."""

    point_id: str
    point: str  # "model task method r=8 seed=0"
    metric: str
    baseline: float
    current: float
    ratio: float  # current / baseline; nan when the baseline is 0
    better: str  # "lower", "higher" or "exact"
    verdict: str  # "worse", "better", "same" or "changed" (an exact metric moved)
    ci: tuple[float, float] | None = None  # confidence interval of the ratio, timings with raw steps
    note: str = ""
    # "not judged" instead of a verdict: every timing and memory reading of two machines (unless across_machines),
    # and a timing "worse" between a quiet and a busy run (unless across_loads): the change may be the machine's.


@dataclass
class Comparison:
    baseline: str  # results.csv paths
    current: str
    thresholds: dict[str, Threshold]
    changes: list[MetricChange]
    added: list[str] = field(default_factory=list)  # points only in current
    removed: list[str] = field(default_factory=list)  # points only in baseline
    not_compared: list[str] = field(default_factory=list)  # matched points with a failed or skipped row
    warnings: list[str] = field(default_factory=list)
    baseline_meta: dict = field(default_factory=dict)
    current_meta: dict = field(default_factory=dict)
    machines: tuple[Machine, Machine] | None = None  # (baseline, current) as timed
    across_machines: bool = False

    @property
    def machines_differ(self) -> list[str]:
        """What differs between the two runs' machines (processor, device, threads); [] when one machine."""
        return self.machines[0].differences(self.machines[1]) if self.machines else []

    @property
    def regressions(self) -> list[MetricChange]:
        return [c for c in self.changes if c.verdict in ("worse", "changed")]

    @property
    def improvements(self) -> list[MetricChange]:
        return [c for c in self.changes if c.verdict == "better"]

    @property
    def not_judged(self) -> list[MetricChange]:
        """No verdict: machine readings of two machines (see across_machines), timings worse beyond their threshold
        between runs at different loads (see across_loads)."""
        return [c for c in self.changes if c.verdict == NOT_JUDGED]


def compare_runs(baseline: str, current: str, thresholds: dict | None = None, across_loads: bool = False,
                 across_machines: bool = False) -> Comparison:
    """Match the two runs' points by configuration and judge every metric both measured.

    Timings and memory readings of runs timed on two machines are "not judged" unless across_machines. A timing of a
    point that one run took on a busy machine (load above its cores) and the other on a quiet one carries a note;
    worse beyond its threshold, it is "not judged" unless across_loads.
    """
    limits = {**DEFAULT_THRESHOLDS, **resolve_thresholds(thresholds or {})}
    base_run, cur_run = load_run(baseline), load_run(current)
    loads = {name: dict(zip(run.rows["point_id"], zip(run.point_loads(), run.busy())))
             for name, run in (("baseline", base_run), ("current", cur_run))}
    base = {r["point_id"]: r for r in base_run.rows.to_dict("records")}
    cur = {r["point_id"]: r for r in cur_run.rows.to_dict("records")}
    common = [pid for pid in base if pid in cur]
    if not common:
        hashes = (base_run.meta.get("config_hash"), cur_run.meta.get("config_hash"))
        raise ValueError(f"no configuration in common: {base_run.csv_path} ({len(base)} points, config "
                         f"{hashes[0]}) and {cur_run.csv_path} ({len(cur)} points, config {hashes[1]}) share no "
                         "point_id; compare two runs of the same sweep (same preset or config file)")
    c = Comparison(base_run.csv_path, cur_run.csv_path, limits, [], baseline_meta=base_run.meta,
                   current_meta=cur_run.meta, machines=(run_machine(base_run.meta), run_machine(cur_run.meta)),
                   across_machines=across_machines)
    c.warnings = machine_warnings(base_run, cur_run, c)
    c.added = [describe(cur[p]) for p in cur if p not in base]
    c.removed = [describe(base[p]) for p in base if p not in cur]
    one_sided = Counter()  # (metric, "baseline"/"current") -> points where only that run measured it
    counters = Counter()  # (baseline torch, current torch) -> points whose operator-level counts were not compared
    for pid in common:
        b, k = base[pid], cur[pid]
        if b["status"] != "ok" or k["status"] != "ok":
            states = [f"{name} {row['status']}" + (f" ({row['error']})" if row["error"] else "")
                      for name, row in (("baseline", b), ("current", k)) if row["status"] != "ok"]
            c.not_compared.append(f"{describe(k)}: {'; '.join(states)}")
            continue
        changes = compare_point(b, k, limits, one_sided, counters)
        changes = judge_loads(changes, loads["baseline"][pid], loads["current"][pid],
                              (base_run.cpu_count, cur_run.cpu_count), across_loads)
        c.changes += judge_machines(changes, bool(c.machines_differ) and not across_machines)
    c.warnings += [f"{metric} measured in the {side} run only, for {n} points: not compared"
                   for (metric, side), n in sorted(one_sided.items())]
    c.warnings += [f"operator-level counts (aten_ops_*, copies, allocations, syncs) counted by torch {old} vs {new}: "
                   f"not compared, for {n} points (a change of counter, not of code)"
                   for (old, new), n in sorted(counters.items())]
    return c


def judge_loads(changes: list[MetricChange], base_load: tuple, cur_load: tuple, cpu_counts: tuple,
                across_loads: bool) -> list[MetricChange]:
    """A point's timing changes, noted where either run was busy; a timing regression between a busy and a quiet
    run is not judged, unless across_loads. base_load, cur_load: (1-minute load average or NaN, busy)."""
    (base_avg, base_busy), (cur_avg, cur_busy) = base_load, cur_load
    if not (base_busy or cur_busy):
        return changes
    cores = "/".join(dict.fromkeys(str(n) for n in cpu_counts))
    differ = base_busy != cur_busy and not (math.isnan(base_avg) or math.isnan(cur_avg))  # unknown is not quiet
    note = (f"timed at different loads (baseline {base_avg:g}, current {cur_avg:g} on {cores} cores)" if differ
            else f"both timed on a busy machine (load {base_avg:g}, {cur_avg:g} on {cores} cores)")
    out = []
    for change in changes:
        if column(change.metric).is_timing:
            verdict = NOT_JUDGED if differ and change.verdict == "worse" and not across_loads else change.verdict
            change = replace(change, verdict=verdict, note="; ".join(n for n in (change.note, note) if n))
        out.append(change)
    return out


def judge_machines(changes: list[MetricChange], apart: bool) -> list[MetricChange]:
    """A point's changes, each timing and memory reading among them "not judged" when apart (the runs were timed on
    two machines and are not to be judged across them); exact counts and accuracy keep their verdicts."""
    if not apart:
        return changes
    return [replace(ch, verdict=NOT_JUDGED) if column(ch.metric).is_machine_reading else ch for ch in changes]


def resolve_thresholds(thresholds: dict) -> dict[str, Threshold]:
    """{metric: Threshold or text like '10%' / '1pt' / '0.5'} -> {metric: Threshold}."""
    out = {}
    for metric, value in thresholds.items():
        if isinstance(value, Threshold):
            out[metric] = value
        elif isinstance(value, str):
            out[metric] = parse_threshold(value if ":" in value else f"{metric}:{value}")
        else:
            raise ValueError(f"threshold for {metric} must be a Threshold or text like '10%' or '1pt', got {value!r}")
    return out


def machine_warnings(base: Run, cur: Run, c: Comparison) -> list[str]:
    """What may make the two runs' timings differ besides the code, said (asv files results by machine): a machine
    unknown or judged across, other core counts, torch versions or loads."""
    warnings = []
    b_env, c_env = base.meta.get("environment") or {}, cur.meta.get("environment") or {}
    b_est, c_est = (set(run.rows["estimated"].dropna()) for run in (base, cur))
    if b_est != c_est:
        warnings.append("one run is estimated (`run_bench.py estimate`, shapes only) and the other measured, or mixed: "
                        "FLOPs agree, tensor bytes within a few percent, not exactly; timings are not compared")
    for name, machine in zip(("baseline", "current"), c.machines):
        if machine.unknown():
            warnings.append(f"the {name} run recorded no {', '.join(machine.unknown())} (meta.json environment): "
                            "whether both runs were timed on one machine is not known")
    if c.machines_differ and c.across_machines:
        warnings.append(f"timed on two machines ({differ(c.machines_differ)}), judged anyway "
                        f"(--across-machines): baseline {c.machines[0]}; current {c.machines[1]}")
    if b_env.get("cpu_count") != c_env.get("cpu_count"):
        warnings.append(f"cpu_count differs: baseline {b_env.get('cpu_count')!r}, current {c_env.get('cpu_count')!r}; "
                        "timings and memory may not be comparable")
    b_torch, c_torch = (e.get("versions", {}).get("torch") for e in (b_env, c_env))
    if b_torch != c_torch:
        warnings.append(f"torch differs: baseline {b_torch}, current {c_torch}")
    b_load, c_load = (run.meta.get("load") or {} for run in (base, cur))
    if not (b_load and c_load):
        missing = " and ".join(name for name, load in (("baseline", b_load), ("current", c_load)) if not load)
        warnings.append(f"the {missing} run recorded no load: whether its timings were taken on a busy machine is "
                        "unknown")
    elif b_load.get("busy") or c_load.get("busy"):
        warnings.append(f"1-minute load average up to {b_load['load_avg_1m_max']:g} on {b_load['cpu_count']} cores "
                        f"(baseline) and {c_load['load_avg_1m_max']:g} on {c_load['cpu_count']} cores (current): "
                        "timings of a busy machine are noted point by point")
    return warnings


def describe(row: dict) -> str:
    seed = "" if row.get("seed") is None or (isinstance(row["seed"], float) and math.isnan(row["seed"])) \
        else f" seed={row['seed']:.0f}"
    return f"{row['model']} {row['task']} {row['method']} r={row['rank']}{seed} [{row['point_id'][:8]}]"


def compare_point(b: dict, k: dict, limits: dict[str, Threshold], one_sided: Counter, counters: Counter
                  ) -> list[MetricChange]:
    changes = []
    ci = step_time_ci(b["step_times_ms"], k["step_times_ms"])
    other_counter = b.get(COUNTED_BY) and k.get(COUNTED_BY) and b[COUNTED_BY] != k[COUNTED_BY]
    if other_counter:
        counters[(b[COUNTED_BY], k[COUNTED_BY])] += 1
    for col in COMPARED:
        metric = col.name
        if metric == "eval_score" and k.get("eval_metric") == "accuracy":
            continue  # the same number as eval_accuracy: compared once, as that
        if col.torch_counted and other_counter:
            continue
        old, new = b.get(metric, math.nan), k.get(metric, math.nan)
        if math.isnan(old) or math.isnan(new):
            if math.isnan(old) != math.isnan(new):
                one_sided[(metric, "current" if math.isnan(old) else "baseline")] += 1
            continue
        ratio = new / old if old else (1.0 if new == old else math.inf)
        if col.compare == "exact":
            verdict = "same" if new == old else "changed"
            note = "" if new == old else (f"{metric} changed {old:,.0f} -> {new:,.0f} ({new - old:+,.0f} {col.unit}"
                                          f"{f', {ratio - 1:+.2%}' if old else ''}){operators_moved(metric, b, k)}: "
                                          "an exact count; if intended, make a new baseline")
            changes.append(MetricChange(k["point_id"], describe(k), metric, old, new, ratio, "exact", verdict,
                                        None, note))
            continue
        metric_ci = None
        if col.compare == "steps" and ci is not None:
            metric_ci = ci if col.better == "lower" else (1 / ci[1], 1 / ci[0])  # tokens/s = 1 / step time
        verdict, note = judge(metric, old, new, col.better, limits[metric], metric_ci, noise_floor(metric, b, k))
        if col.compare == "steps" and ci is None:
            note = note or f"fewer than {MIN_SAMPLES} raw step times: threshold only"
        changes.append(MetricChange(k["point_id"], describe(k), metric, old, new, ratio, col.better, verdict,
                                    metric_ci, note))
    return explain_changes(changes)


def explain_changes(changes: list[MetricChange]) -> list[MetricChange]:
    """A point's timing and memory changes with why, where an exact count changed too (changes.explain, the
    history's wording): 'explained: +48 copies per step, ...' when it is one that explains the metric, else
    'efficiency: ... moved, not ...'."""
    moved = [(c.metric, c.baseline, c.current) for c in changes if c.verdict == "changed"]
    out = []
    for c in changes:
        if moved and c.verdict in ("worse", "better") and column(c.metric).explained_by:
            kind, _, why = explain(c.metric, c.baseline, c.ratio, moved)
            c = replace(c, note="; ".join(n for n in (c.note, f"{kind}: {why}") if n))
        out.append(c)
    return out


def operators_moved(metric: str, b: dict, k: dict, most: int = 5) -> str:
    """For aten_ops_per_step: the operators whose calls changed most, from aten_ops_by_op (' by mm +24, clone +12')."""
    if metric != "aten_ops_per_step" or not (b.get("aten_ops_by_op") and k.get("aten_ops_by_op")):
        return ""
    old, new = by_op_counts(b["aten_ops_by_op"]), by_op_counts(k["aten_ops_by_op"])
    moved = sorted(((op, new.get(op, 0) - old.get(op, 0)) for op in {*old, *new}), key=lambda m: (-abs(m[1]), m[0]))
    return " by " + ", ".join(f"{op} {n:+,}" for op, n in moved[:most] if n)


# --- output -------------------------------------------------------------------


def exit_code(c: Comparison) -> int:
    """1 when there is a regression; else 3 when timings went unjudged (two machines, or different loads); else 0
    (bad input raises; the CLI makes that 2)."""
    return 1 if c.regressions else EXIT_NOT_JUDGED if c.not_judged else 0


def compare_and_print(baseline: str, current: str, rules: list[str] = (), show_all: bool = False,
                      print_fn=print, across_loads: bool = False, across_machines: bool = False) -> int:
    """The whole `run_bench.py compare`: parse rules, compare, print, return the exit code (exit_code)."""
    c = compare_runs(baseline, current, parse_thresholds(list(rules)), across_loads, across_machines)
    print_fn(format_comparison(c, show_all))
    return exit_code(c)


def format_comparison(c: Comparison, show_all: bool = False) -> str:
    out = [f"baseline: {run_line(c.baseline, c.baseline_meta)}", f"current:  {run_line(c.current, c.current_meta)}",
           "thresholds: " + ", ".join(str(t) for t in c.thresholds.values()) + "; exact: " + ", ".join(EXACT),
           f"timings with raw steps: the {CONFIDENCE:.0%} bootstrap CI of the ratio of medians must clear "
           "the threshold"]
    out += [f"warning: {w}" for w in c.warnings]
    points = len({ch.point_id for ch in c.changes})
    out.append(f"{points} points compared, {len(c.added)} added, {len(c.removed)} removed, "
               f"{len(c.not_compared)} not compared (not ok)")
    for title, items in (("REGRESSIONS", c.regressions), ("improvements", c.improvements)):
        out += ["", f"{title} ({len(items)})"]
        out += format_table(items) if items else []
    apart = c.machines_differ and not c.across_machines  # then every unjudged change is a machine reading
    if c.not_judged and apart:
        out += ["", f"NOT COMPARABLE ({len(c.not_judged)}): timings and memory readings of two machines "
                f"({differ(c.machines_differ)}): baseline: {c.machines[0]}; current: {c.machines[1]}"
                ] + format_table(c.not_judged)
    elif c.not_judged:
        out += ["", f"NOT JUDGED ({len(c.not_judged)}): slower, but one run was timed on a busy machine and the other "
                "on a quiet one"] + format_table(c.not_judged)
    noted = [ch for ch in c.changes if ch.verdict == "same" and ch.note]
    if noted:
        out += ["", f"within noise ({len(noted)})"] + format_table(noted)
    if show_all:
        out += ["", f"all compared metrics ({len(c.changes)})"] + format_table(c.changes)
    for title, items in (("added (only in current)", c.added), ("removed (only in baseline)", c.removed),
                         ("not compared", c.not_compared)):
        if items:
            out += ["", f"{title} ({len(items)})"] + [f"  {item}" for item in items]
    verdict = f"{len(c.regressions)} regression(s)" if c.regressions else "no regression"
    out += ["", f"result: {verdict}, {len(c.improvements)} improvement(s)"]
    exit_note = "" if c.regressions else f" (exit {EXIT_NOT_JUDGED})"
    if c.not_judged and apart:
        out.append(f"{len(c.not_judged)} timing and memory reading(s) not judged: the runs were timed on two machines; "
                   f"make the baseline on this machine (run its preset with the baseline's code), or pass "
                   f"--across-machines to judge them anyway{exit_note}")
    elif c.not_judged:
        out.append(f"{len(c.not_judged)} timing regression(s) not judged: the runs were timed at different loads "
                   f"(a busy machine against a quiet one); rerun on a quiet machine, or pass --across-loads to judge "
                   f"them anyway{exit_note}")
    return "\n".join(out)


def run_line(path: str, meta: dict) -> str:
    env = meta.get("environment") or {}
    commit = (env.get("commit") or "unknown")[:8] + ("+dirty" if env.get("dirty") else "")
    return f"{os.path.dirname(path)} (commit {commit}, {run_machine(meta)}, ended {meta.get('ended_at', '?')})"


def format_table(changes: list[MetricChange]) -> list[str]:
    rows = [("point", "metric", "baseline", "current", "ratio", f"{CONFIDENCE:.0%} CI", "note")]
    for ch in changes:
        ci = f"{ch.ci[0]:.3f}-{ch.ci[1]:.3f}" if ch.ci else ""
        rows.append((ch.point, ch.metric, f"{ch.baseline:.4g}", f"{ch.current:.4g}", f"{ch.ratio:.3f}x", ci, ch.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]
