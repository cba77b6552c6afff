"""Change points that one outlier, a little jitter or runs that drift together cannot fool, on the real runs of
tests/data/history_runs with their noise as recorded (a 2-core VM: median step times spread by about 14%), and on
bare sequences through find_steps."""

from __future__ import annotations

import numpy as np
from real_run import rewrite_rows, scale_step_times
from test_history import (NOISE_RUNS, QUIET_SPREAD, STEP, copy_runs, history_of, needs_quiet_runs, run_commit,
                          run_dirs, step_changes)

from bench.track.changes import find_changes, find_steps
from bench.track.history import read_history
from bench.track.rules import MIN_EFFECT
from bench.track.verdict import exit_code, format_verdict
from bench.results.read import RESULTS_FILE, read_rows


@needs_quiet_runs
def test_the_recorded_noise_undamped_with_one_run_40pct_off_reports_nothing(tmp_path):
    for factor in (0.6, 1.4):
        runs = copy_runs(tmp_path / f"x{factor}", range(NOISE_RUNS), lambda i, f=factor: f if i == 9 else 1.0)
        detection = find_changes(read_history(history_of(tmp_path / f"x{factor}", runs)))
        assert detection.changes == [], format_verdict(detection)
        assert exit_code(detection) == 0


@needs_quiet_runs
def test_a_15pct_step_three_runs_after_a_40pct_outlier_is_placed_at_its_commit(tmp_path):
    """The outlier (run 9, 0.6x) is left out of the segmentation and the trend; the step (run 12 on) stays a step.
    The step is planted on the runs' noise damped to QUIET_SPREAD: at the recorded 14%, 12 runs a side cannot tell
    15% apart at p < 0.001."""
    k = 12
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: (0.6 if i == 9 else 1.0) * (1.15 if i >= k else 1.0),
                     spread=QUIET_SPREAD)
    detection = find_changes(read_history(history_of(tmp_path, runs)))
    changes = step_changes(detection)
    assert len(changes) == 3, format_verdict(detection)  # one per series
    for c in changes:
        assert (c.index, c.kind, c.direction, c.latest) == (k, "efficiency", "regression", True)
        assert c.commit_after == run_commit(k) and c.commit_before == run_commit(k - 1)
        assert 1.1 < c.ratio < 1.2


def flat_runs(tmp_path, k: int) -> list[str]:
    """Copies of the noise-only runs whose step times are made flat at run 0's median (each run's own spread of
    steps kept), with 0.2% jitter, x1.2 from run k on, and after k a rise of 0.2% across the runs: ordered jitter."""
    rng = np.random.default_rng(0)
    jitter = 1 + 0.002 * rng.uniform(-1, 1, NOISE_RUNS)
    base = {r["method"]: float(r["step_time_ms_p50"]) for r in read_rows(f"{run_dirs([0])[0]}/{RESULTS_FILE}")}
    runs = copy_runs(tmp_path, range(NOISE_RUNS))
    for i, run in enumerate(runs):
        level = jitter[i] * (1.2 * (1 + 0.002 * (i - k) / (NOISE_RUNS - k)) if i >= k else 1.0)
        rewrite_rows(run, lambda rows, level=level: [
            scale_step_times(r, level * base[r["method"]] / float(r["step_time_ms_p50"])) for r in rows])
    return runs


def test_a_20pct_step_on_flat_runs_with_02pct_jitter_is_placed_at_its_commit(tmp_path):
    k = 12
    detection = find_changes(read_history(history_of(tmp_path, flat_runs(tmp_path, k))))
    changes = step_changes(detection)
    assert len(changes) == 3, format_verdict(detection)
    for c in changes:
        assert (c.index, c.kind, c.direction) == (k, "efficiency", "regression")
        assert c.commit_after == run_commit(k) and 1.19 < c.ratio < 1.21


def test_runs_that_drift_together_are_not_change_points():
    """AR(1) noise (each run keeps 80% of the last one's deviation, 2% spread in all): no step, where lag-1
    differences alone understate the noise by a factor of about 2."""
    limit = MIN_EFFECT[STEP]
    for seed in range(5):
        rng = np.random.default_rng(seed)
        deviation, series = 0.0, []
        for _ in range(60):
            deviation = 0.8 * deviation + rng.normal(0, 0.02 * np.sqrt(1 - 0.8**2))
            series.append(deviation)
        x = 30 * np.exp(np.array(series))
        assert find_steps(STEP, x, limit)[1] == [], np.round(x, 2)
