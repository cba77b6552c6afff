"""`run_bench.py history regressions`: the change points as a table (or JSON) and the exit code.

    print(format_verdict(detection)); exit_code(detection)   # 1 when an unacknowledged regression holds now
"""

from __future__ import annotations

import math
from dataclasses import asdict

from ..columns import BY_NAME
from .changes import ALPHA, MIN_RUNS, PER_GFLOP, Change, Detection
from .compare import EXIT_NOT_JUDGED

HEADER = ("series", "metric", "commits", "before -> after", "ratio (99% CI)", "kind", "explanation")


def exit_code(detection: Detection) -> int:
    """1 when an unacknowledged regression holds in the latest segment of any series; else 3 when a series' latest
    timings went unjudged because it changed machines (compare's exit for timings it will not judge); else 0."""
    return 1 if detection.regressions else EXIT_NOT_JUDGED if detection.not_comparable else 0


def format_value(metric: str, value: float) -> str:
    if metric == PER_GFLOP:
        return f"{value:.3g} ms/GFLOP"
    return BY_NAME[metric].format(value)


def change_cells(c: Change) -> tuple[str, ...]:
    ratio = f"x{c.ratio:.3f}" if math.isfinite(c.ratio) else "new"
    if c.ci:
        ratio += f" ({c.ci[0]:.3f}-{c.ci[1]:.3f})"
    kind = f"{c.kind} {c.direction}"
    return (c.series, c.metric, f"{c.commit_before[:8]}..{c.commit_after[:8]}",
            f"{format_value(c.metric, c.before)} -> {format_value(c.metric, c.after)}", ratio, kind,
            c.explanation + (f" [acknowledged: {c.acknowledged}]" if c.acknowledged else ""))


def table(changes: list[Change]) -> list[str]:
    rows = [HEADER, *map(change_cells, changes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]


def format_verdict(detection: Detection, show_all: bool = True) -> str:
    step = detection.thresholds["step_time_ms_p50"]
    runs = {r for s in detection.series.values() for o in s.observations for r in o.run_dirs}
    out = [f"{len(detection.series)} series, {len(runs)} runs; exact counts: every change; noisy metrics: "
           f"segments of at least {MIN_RUNS} commits, t-test p < {ALPHA:g}, minimum effect {step} (others: "
           "compare's thresholds); runs on a busy machine (load above the cores) left out of the noisy metrics; "
           "timings and memory readings judged within the runs of one machine (processor, device, threads)"]
    out += [f"note: {w}" for w in detection.warnings]
    now = detection.regressions
    sections = [("REGRESSIONS in the latest segment, unacknowledged", now),
                ("acknowledged", [c for c in detection.changes if c.acknowledged])]
    if show_all:
        sections.append(("earlier change points and improvements",
                         [c for c in detection.changes if not c.current_regression and not c.acknowledged]))
    for title, changes in sections:
        out += ["", f"{title} ({len(changes)})"]
        out += table(changes) if changes else []
    apart = detection.not_comparable
    if apart:
        out += ["", f"NOT COMPARABLE ({len(apart)} series): timed on another machine than before, with fewer than "
                f"{2 * MIN_RUNS} commits on the latest one: its timings and memory readings are not judged"]
        out += [f"  {name}: {', '.join(fit.not_comparable)}; machines: {' -> '.join(fit.timed_on)}"
                for name, fit in apart.items()]
    out += ["", f"result: {len(now)} regression(s) in the latest segment" if now else
            "result: no unacknowledged regression in the latest segment"]
    if apart:
        out.append(f"{len(apart)} series not judged on their timings since their machine changed: append runs of "
                   f"{2 * MIN_RUNS} commits timed on the new machine" + ("" if now else f" (exit {EXIT_NOT_JUDGED})"))
    return "\n".join(out)


def verdict_json(detection: Detection) -> dict:
    def plain(c: Change) -> dict:
        return {**asdict(c), "ratio": c.ratio if math.isfinite(c.ratio) else None,
                "current_regression": c.current_regression}

    return {"exit_code": exit_code(detection), "regressions": [plain(c) for c in detection.regressions],
            "changes": [plain(c) for c in detection.changes], "notes": detection.warnings,
            "series": {name: {"machine": s.machine, "runs": sum(len(o.run_dirs) for o in s.observations),
                              "commits": [o.commit for o in s.observations], "timed_on": s.timed_on,
                              "not_comparable": s.not_comparable}
                       for name, s in detection.series.items()},
            "thresholds": {m: str(t) for m, t in detection.thresholds.items()}, "min_runs": MIN_RUNS,
            "alpha": ALPHA}
