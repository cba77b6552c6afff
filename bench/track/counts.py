"""The guard of exact counts: FLOPs, tensor bytes, parameters and operator-level counts of a fixed set of points
against a checked-in baseline, so that a commit that moves them fails `make test` unless it updates the baseline in
the same commit.

    differences = check_counts()          # [] when every count equals the baseline's
    write_counts(count_rows())            # `run_bench.py counts --update`: the baseline made anew

The points are the `counts` preset's, estimated (bench/run/estimate.py: a shapes-only trace under FakeTensorMode,
on CPU tensors whatever the machine), so the counts do not depend on the machine, its load or its GPU. The
baseline is reports/count_baseline.csv: one row per point, its id and label, the torch version that counted its
operator-level counts, and every exact column of bench/columns.py that the estimate fills (the CUDA-only ones
empty).
"""

from __future__ import annotations

import csv
import os

import torch

from ..columns import BY_NAME, COUNTED_BY
from ..config.grid import expand_grid
from ..config.presets import make_sweep_config
from ..results.environment import REPO_ROOT
from ..run.estimate import estimate_point
from .rules import EXACT

PRESET = "counts"
BASELINE = os.path.join(REPO_ROOT, "reports", "count_baseline.csv")
UPDATE = "run_bench.py counts --update"
KEY = ["point_id", "point", COUNTED_BY]


def count_rows(preset: str = PRESET) -> list[dict]:
    """The exact counts of the preset's points, estimated here; a point that fails to trace is an error."""
    rows, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # a trace computes nothing; one thread leaves the cores to the rest
    try:
        estimated = [(point, estimate_point(point)) for point in expand_grid(make_sweep_config(preset))]
    finally:
        torch.set_num_threads(threads)
    for point, row in estimated:
        if row["status"] != "ok":
            raise ValueError(f"the count guard's point {point.label} failed to trace: {row['error']}")
        rows.append({"point_id": point.point_id, "point": point.label, COUNTED_BY: row[COUNTED_BY],
                     **{c: "" if row.get(c) is None else str(int(row[c])) for c in EXACT}})
    return rows


def write_counts(rows: list[dict], path: str = BASELINE) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=KEY + EXACT, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_counts(path: str = BASELINE) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no count baseline at {path}; make it with `{UPDATE}` and commit it")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != KEY + EXACT:
            raise ValueError(f"{path} has other columns than this code's exact counts; make it anew with `{UPDATE}`")
        return list(reader)


def diff_counts(baseline: list[dict], current: list[dict]) -> list[str]:
    """One line per point added, removed, or count changed (with its size)."""
    old, new = ({r["point_id"]: r for r in rows} for rows in (baseline, current))
    lines = [f"{new[p]['point']}: a point the baseline lacks" for p in new if p not in old]
    lines += [f"{old[p]['point']}: in the baseline, no longer in the `{PRESET}` preset" for p in old if p not in new]
    for p in (p for p in new if p in old):
        torch_old, torch_new = old[p][COUNTED_BY], new[p][COUNTED_BY]
        for c in EXACT:
            a, b = old[p][c], new[p][c]
            if a != b:
                size = f" ({int(b) - int(a):+,}, {int(b) / int(a) - 1:+.2%})" if a and b and int(a) else ""
                counter = (f" (counted by torch {torch_new}, the baseline by torch {torch_old}: a change of counter, "
                           "not of code)" if BY_NAME[c].torch_counted and torch_old != torch_new else "")
                lines.append(f"{new[p]['point']}: {c} {a or 'empty'} -> {b or 'empty'}{size}{counter}")
    return lines


def check_counts(path: str = BASELINE) -> list[str]:
    """The differences between the baseline and the counts of this code; [] when none."""
    return diff_counts(read_counts(path), count_rows())


def failure_message(differences: list[str], path: str = BASELINE) -> str:
    return (f"{len(differences)} exact count(s) differ from {path}:\n" + "\n".join(f"  {d}" for d in differences) +
            f"\nif intended, run `{UPDATE}` and commit the baseline with the change")
