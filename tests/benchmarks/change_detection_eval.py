"""How well the history's change detection places change points, beside asv's step detection and Apache Otava, all at
their defaults, scored with the F1 of van den Burg and Williams's change-point benchmark (TCPDBench: margin 5, every
annotator's points, index 0 counted as a change point in every set), and "no change at all" as the floor:

    tcpd        the Turing Change Point Dataset's univariate series with positive values (van den Burg & Williams
                2020: real series, 5 annotators each). No public performance history with annotated change points
                was reachable from here, so these stand in. Nothing is committed: pass a checkout
                (git clone https://github.com/alan-turing-institute/TCPD; its code is MIT licensed, each series'
                licence is in datasets/NAME/README.md: GPL-2, CC, public domain, ...).
    cases       generated series (seeded) that reproduce the failures issue 34 names: one run 40% off a few runs
                before a +11% step, a +20% step on flat values with 0.2% ordered jitter, runs that drift together
                (AR(1)) and a slow wander with no change, and 2% noise with a +10% step.
    history     the median step times of tests/data/history_runs' 24 noise-only runs, as recorded (no damping):
                no change point is true; any is a false alarm.

asv and Otava are not the harness's dependencies: install them beside it, not into the venv (Otava pins older
numpy and scipy), and pass that folder:

    CPD=$(mktemp -d); pip install --no-deps --target $CPD asv apache-otava importlib_metadata zipp lazy-importer
    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/change_detection_eval.py --packages $CPD --tcpd TCPD
"""

from __future__ import annotations

import argparse
import glob
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(REPO, "tests"), os.path.join(REPO, "tests", "bench", "track")]

from bench.track.changes import find_steps  # noqa: E402
from bench.track.rules import MIN_EFFECT  # noqa: E402

STEP = "step_time_ms_p50"
MARGIN = 5


# --- the metric (TCPDBench's f_measure) ---------------------------------------------------------------------------


def true_positives(truth: set[int], predicted: set[int], margin: int = MARGIN) -> set[int]:
    """The true points each matched to the nearest unmatched prediction within the margin."""
    left, found = set(predicted), set()
    for tau in sorted(truth):
        close = sorted((abs(tau - x), x) for x in left if abs(tau - x) <= margin)
        if close:
            found.add(tau)
            left.remove(close[0][1])
    return found


def f1(annotations: list[list[int]], predicted: list[int], margin: int = MARGIN) -> float:
    """Precision against the union of the annotators' points, recall averaged over annotators, 0 in every set."""
    sets = [set(a) | {0} for a in annotations]
    x = set(predicted) | {0}
    precision = len(true_positives(set().union(*sets), x, margin)) / len(x)
    recall = statistics.fmean(len(true_positives(t, x, margin)) / len(t) for t in sets)
    return 2 * precision * recall / (precision + recall)


# --- the detectors -------------------------------------------------------------------------------------------------


def ours(y: np.ndarray) -> list[int]:
    bounds, steps = find_steps(STEP, y, MIN_EFFECT[STEP])
    return [bounds[i][0] for i, _ in steps]


def load_others(folder: str):
    """asv's step_detect (with its compiled range median) and Otava's analysis, from a pip --target folder."""
    path = os.path.join(folder, "asv", "step_detect.py")
    spec = importlib.util.spec_from_file_location("asv_step_detect", path)
    asv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(asv)
    for so in glob.glob(os.path.join(folder, "asv", "_rangemedian*.so")):
        loader = importlib.machinery.ExtensionFileLoader("_rangemedian", so)
        asv._rangemedian = loader.load_module()
    sys.path.append(folder)
    from otava.analysis import compute_change_points

    def asv_steps(y):
        return [int(left) for left, *_ in asv.detect_steps(list(map(float, y)))[1:]]

    def otava(y):
        return [int(c.index) for c in compute_change_points(list(map(float, y)))[0]]

    return asv_steps, otava


# --- the series ----------------------------------------------------------------------------------------------------


def tcpd_series(folder: str) -> list[tuple[str, np.ndarray, list[list[int]]]]:
    with open(os.path.join(folder, "annotations.json")) as f:
        annotations = json.load(f)
    out = []
    for path in sorted(glob.glob(os.path.join(folder, "datasets", "*", "*.json"))):
        with open(path) as f:
            data = json.load(f)
        if len(data["series"]) != 1 or data["name"] not in annotations:
            continue  # multivariate
        y = np.array([np.nan if v is None else v for v in data["series"][0]["raw"]], dtype=float)
        if np.isnan(y).any() or (y <= 0).any():
            continue  # a relative minimum effect needs positive values, as timings are
        out.append((data["name"], y, list(annotations[data["name"]].values())))
    return out


def generated_cases() -> list[tuple[str, np.ndarray, list[list[int]]]]:
    rng = np.random.default_rng(34)
    n = 60

    def noisy(sd):
        return np.exp(rng.normal(0, sd, n))

    cases = []
    y = 30 * noisy(0.02) * np.where(np.arange(n) >= 30, 1.11, 1.0)
    y[26] *= 0.6
    cases.append(("outlier then +11% step", y, [[30]]))
    y = 30 * (1 + 0.002 * rng.uniform(-1, 1, n))
    y[30:] *= 1.2 * (1 + 0.002 * np.arange(n - 30) / (n - 30))
    cases.append(("+20% step, 0.2% ordered jitter", y, [[30]]))
    deviation, ar = 0.0, []
    for _ in range(n):
        deviation = 0.8 * deviation + rng.normal(0, 0.02 * 0.6)
        ar.append(deviation)
    cases.append(("AR(1) 0.8, no change", 30 * np.exp(np.array(ar)), [[]]))
    cases.append(("slow wander, no change", 30 * np.exp(np.cumsum(rng.normal(0, 0.004, n))), [[]]))
    cases.append(("2% noise, +10% step", 30 * noisy(0.02) * np.where(np.arange(n) >= 40, 1.1, 1.0), [[40]]))
    return cases


def history_series() -> list[tuple[str, np.ndarray, list[list[int]]]]:
    from bench.results.read import RESULTS_FILE, read_rows
    from test_history import NOISE_RUNS, run_dirs

    values: dict[str, list[float]] = {}
    for run in run_dirs(range(NOISE_RUNS)):
        for row in read_rows(os.path.join(run, RESULTS_FILE)):
            values.setdefault(row["method"], []).append(
                statistics.median(float(t) for t in row["step_times_ms"].split(";")))
    return [(f"history_runs {method}", np.array(v), [[]]) for method, v in sorted(values.items())]


# --- the table -----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", required=True, help="folder of `pip install --no-deps --target` asv apache-otava")
    parser.add_argument("--tcpd", help="a checkout of the Turing Change Point Dataset (else: cases and history only)")
    args = parser.parse_args()
    asv_steps, otava = load_others(args.packages)
    methods = {"ours": ours, "asv": asv_steps, "otava": otava, "zero": lambda y: []}
    groups = {"cases": generated_cases(), "history": history_series()}
    if args.tcpd:
        groups = {"tcpd": tcpd_series(args.tcpd), **groups}
    means = {}
    print(f"{'series':34} {'n':>4}  " + "  ".join(f"{m:>13}" for m in methods))
    for group, series in groups.items():
        scores = {m: [] for m in methods}
        for name, y, annotations in series:
            cells = []
            for m, detect in methods.items():
                points = detect(y)
                scores[m].append(f1(annotations, points))
                cells.append(f"{scores[m][-1]:.3f} ({len(points):>2})")
            print(f"{group + ' ' + name:34.34} {len(y):>4}  " + "  ".join(f"{c:>13}" for c in cells))
        means[group] = {m: statistics.fmean(s) for m, s in scores.items()}
    print("\nmean F1 (margin 5) per group; in brackets above: change points reported")
    for group, mean in means.items():
        print(f"{group:10} {len(groups[group]):>3} series  " + "  ".join(f"{m} {v:.3f}" for m, v in mean.items()))


if __name__ == "__main__":
    main()
