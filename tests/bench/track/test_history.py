"""The history over commits and its change points, on real runs of this machine (tests/data/history_runs, made by
tests/data/make_history_runs.py: 24 runs of unchanged code, one commit each, then a commit that adds lm_head to
the target modules and 6 runs of it). Changes are planted by scaling the raw step times of copies of those runs.

The tests of timing detection first damp the runs' run-to-run noise to QUIET_SPREAD (copy_runs' spread): what
the detector can tell apart depends on that noise, which depends on the machine that recorded the runs (a quiet
2-core VM here spread its median step times by 14%; tests/benchmarks/history_detection.py reports the detector on
the noise as recorded). The tests assert what the detector promises at a known noise, on real runs' shapes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import statistics

import numpy as np
import pytest
from scipy import stats
from cli_runs import REPO
from other_machine import on_machine
from real_run import rewrite_rows, scale_step_times

from bench.cli import main
from bench.track.acknowledged import Acknowledgement, read_acknowledged
from bench.track.changes import MIN_RUNS, PER_GFLOP, Observation, exact_changes, explain, find_changes, t_test
from bench.track.rules import EXACT
from bench.track.history import HISTORY_COLUMNS, append_history, read_history, select_series
from bench.track.verdict import exit_code, format_verdict, verdict_json
from bench.results.read import META_FILE, RESULTS_FILE, read_rows

RUNS_DIR = os.path.join(REPO, "tests", "data", "history_runs")
NOISE_RUNS = 24  # run-00 .. run-23: code unchanged
TARGET_RUN = 24  # run-24 .. run-29: lm_head added to the targets at this run's commit
STEP = "step_time_ms_p50"
QUIET_SPREAD = 0.02  # run-to-run spread (sd of log median step time) of a quiet machine, for the timing tests


def recorded_busy() -> str:
    """Why the checked-in runs cannot test timing detection ("" when they can): runs recorded on a busy machine are
    left out of the timings, and their noise would hide a 10% step anyway."""
    loads = []
    for i in range(NOISE_RUNS + 6):
        with open(os.path.join(RUNS_DIR, f"run-{i:02d}", META_FILE)) as f:
            loads.append(json.load(f).get("load") or {})
    busy = [load for load in loads if load.get("busy")]
    if not busy:
        return ""
    return (f"{len(busy)} of the {len(loads)} runs in tests/data/history_runs were recorded on a busy machine "
            f"(1-minute load up to {max(b['load_avg_1m_max'] for b in busy)} on {busy[0]['cpu_count']} cores): "
            "re-record them on a quiet one: .venv/bin/python tests/data/make_history_runs.py tests/data/history_runs")


needs_quiet_runs = pytest.mark.skipif(bool(recorded_busy()), reason=recorded_busy() or "quiet")


def run_dirs(indices) -> list[str]:
    return [os.path.join(RUNS_DIR, f"run-{i:02d}") for i in indices]


def copy_runs(tmp_path, indices, scale=None, spread: float | None = None) -> list[str]:
    """Copies of the runs; scale(i) -> the factor for run i's raw step times (1 = untouched). spread: each run's
    step times first moved towards the mean of its series and code (the noise-only runs, or the runs after the
    target commit), so that the runs' median step times spread by that standard deviation of their log (their
    order and each run's own distribution of steps kept); None: the recorded noise as it is."""
    damping = run_damping(spread) if spread else {}
    out = []
    for i, source in zip(indices, run_dirs(indices)):
        dest = tmp_path / "runs" / f"run-{i:02d}"
        dest.mkdir(parents=True)
        for name in (RESULTS_FILE, META_FILE):
            shutil.copy(os.path.join(source, name), dest)
        factor = scale(i) if scale else 1.0
        if factor != 1.0 or damping:
            rewrite_rows(str(dest), lambda rows, f=factor, i=i: [scale_step_times(r, f * damping.get((i, r["method"]), 1.0))
                                                                   for r in rows])
        out.append(str(dest))
    return out


def run_damping(spread: float) -> dict[tuple[int, str], float]:
    """(run, method) -> the factor that brings the run's median step time to `spread` (sd of log) around its
    series' mean, within the noise-only runs and within the target runs."""
    logs = {}
    for i in range(NOISE_RUNS + 6):
        for row in read_rows(os.path.join(RUNS_DIR, f"run-{i:02d}", RESULTS_FILE)):
            logs[i, row["method"]] = math.log(float(row["step_time_ms_p50"]))
    factors = {}
    for segment in (range(NOISE_RUNS), range(TARGET_RUN, NOISE_RUNS + 6)):
        for method in {m for _, m in logs}:
            values = [logs[i, method] for i in segment]
            mean, sd = statistics.fmean(values), statistics.stdev(values)
            for i in segment:
                deviation = logs[i, method] - mean
                factors[i, method] = math.exp(deviation * (spread / sd - 1.0))
    return factors


def history_of(tmp_path, runs: list[str]) -> str:
    path = str(tmp_path / "history.csv")
    assert append_history(runs, path) == 3 * len(runs)
    return path


def step_changes(detection, metric=STEP):
    return [c for c in detection.changes if c.metric == metric]


def run_commit(i: int) -> str:
    with open(os.path.join(RUNS_DIR, f"run-{i:02d}", META_FILE)) as f:
        return json.load(f)["environment"]["commit"]


# --- the store ---------------------------------------------------------------------------------------------------


def test_history_keeps_raw_steps_counts_commit_order_machine_and_load(tmp_path):
    path = history_of(tmp_path, run_dirs(range(6)))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == HISTORY_COLUMNS
    assert all(len(r["step_times_ms"].split(";")) == 20 for r in rows)
    assert all(r["flops_per_step"] and r["tensor_peak_bytes"] and r["trainable_params"] for r in rows)
    assert all(r["host"] and r["device"] == "cpu" and r["executor"] == "local" and r["busy"] in ("0", "1")
               for r in rows)
    positions = [int(r["commit_position"]) for r in rows]
    assert positions == sorted(positions) and len(set(positions)) == 6  # one commit per run, in first-parent order
    assert append_history(run_dirs(range(6)), path) == 0  # a run already in the file adds nothing
    history = read_history(path)
    assert history["series"].nunique() == 3 and history["machine"].nunique() == 1


def test_an_old_history_file_is_refused_with_how_to_rebuild_it(tmp_path):
    old = tmp_path / "history.csv"
    old.write_text("date,commit,dirty,run_dir,point_id,model\n2026-01-01,abc,False,r,p,llama-2m\n")
    with pytest.raises(ValueError, match="older format.*history --append RUN_DIR"):
        read_history(str(old))
    other = tmp_path / "other.csv"
    other.write_text("history_version,run_dir\n1,r\n")
    with pytest.raises(ValueError, match="history version 1 .*rebuild"):
        read_history(str(other))


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    good, bad = copy_runs(tmp_path, [0, 1])
    with open(os.path.join(bad, META_FILE)) as f:
        meta = json.load(f)
    meta["environment"]["commit"] = None
    with open(os.path.join(bad, META_FILE), "w") as f:
        json.dump(meta, f)
    history, site = tmp_path / "history.csv", tmp_path / "site"
    cases = [(["history", "regressions", "--append", good, bad, "--file", str(history), "--html", str(site)],
              "records no commit"),
             (["history", "regressions", "--file", str(tmp_path / "none.csv")], "no history at")]
    old = tmp_path / "old.csv"
    old.write_text("date,commit,dirty,run_dir,point_id\n")
    cases.append((["history", "regressions", "--file", str(old), "--html", str(site)], "older format"))
    acks = tmp_path / "ack.toml"
    acks.write_text('[[acknowledged]]\nseries = "*"\nmetric = "*"\ncommit = "xyz"\nreason = "r"\n')
    cases.append((["history", "regressions", "--file", str(history), "--acknowledged", str(acks)], "hex digits"))
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not history.exists() and not site.exists()  # the good run was not appended either


def test_runs_of_two_machines_are_two_series_and_never_asked_as_one(tmp_path, capsys):
    here, there = copy_runs(tmp_path, [0, 1])
    rewrite_rows(there, lambda rows: [{**r, "host": "other-host"} for r in rows])
    history = read_history(history_of(tmp_path, [here, there]))
    assert history["series"].nunique() == 6 and history["machine"].nunique() == 2
    with pytest.raises(ValueError, match="2 machines .*--machine"):
        select_series(history, "*lora*")
    assert select_series(history, "*lora*", "other-host/cpu")["machine"].unique().tolist() == ["other-host/cpu"]
    assert main(["history", "regressions", "--file", str(tmp_path / "history.csv"), "--series", "*giva*"]) == 2
    assert "as one series" in capsys.readouterr().err


# --- change points -----------------------------------------------------------------------------------------------


def test_the_t_test_is_scipys():
    rng = np.random.default_rng(0)
    for n, m in ((3, 3), (4, 9), (12, 12)):
        a, b = rng.normal(0, 1, n), rng.normal(0.7, 1.5, m)
        assert t_test(a, b) == pytest.approx(stats.ttest_ind(a, b).pvalue, rel=1e-9)
    assert t_test(np.ones(3), np.ones(4)) == 1.0 and t_test(np.ones(3), 2 * np.ones(3)) == 0.0


@needs_quiet_runs
def test_a_noise_only_history_has_no_change_point(tmp_path):
    detection = find_changes(read_history(history_of(tmp_path, run_dirs(range(NOISE_RUNS)))))
    assert detection.changes == [], format_verdict(detection)
    assert exit_code(detection) == 0


@needs_quiet_runs
def test_a_10pct_slowdown_from_run_k_is_one_efficiency_regression_at_k(tmp_path):
    k = 12
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: 1.10 if i >= k else 1.0, spread=QUIET_SPREAD)
    detection = find_changes(read_history(history_of(tmp_path, runs)))
    for metric in (STEP, PER_GFLOP):
        changes = step_changes(detection, metric)
        assert len(changes) == 3, format_verdict(detection)  # one per series
        for c in changes:
            assert (c.index, c.kind, c.direction, c.latest) == (k, "efficiency", "regression", True)
            assert c.commit_after == run_commit(k) and c.commit_before == run_commit(k - 1)
            assert 1.05 < c.ratio < 1.16 and c.ci[0] > 1.0
    assert {c.metric for c in detection.changes} == {STEP, PER_GFLOP}
    assert exit_code(detection) == 1


@needs_quiet_runs
def test_one_slow_run_is_not_a_change_point(tmp_path):
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: 1.5 if i == 12 else 1.0, spread=QUIET_SPREAD)
    detection = find_changes(read_history(history_of(tmp_path, runs)))
    assert detection.changes == [], format_verdict(detection)


@needs_quiet_runs
def test_runs_on_a_busy_machine_are_left_out_of_the_timings(tmp_path):
    """Runs 12-23 marked busy (their points' and meta.json's load above the cores) and 1.5x slower: left out,
    nothing reported; with only 4 quiet commits left the timings are not judged at all, and the notes say so."""
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: 1.5 if i >= 12 else 1.0, spread=QUIET_SPREAD)
    for run in runs[12:]:
        with open(os.path.join(run, META_FILE)) as f:
            meta = json.load(f)
        meta["load"] = {"cpu_count": 2, "load_avg_1m_max": 9.5, "busy": True}
        with open(os.path.join(run, META_FILE), "w") as f:
            json.dump(meta, f)
        rewrite_rows(run, lambda rows: [{**r, "load_avg_1m_end": "9.5"} for r in rows])
    history = read_history(history_of(tmp_path, runs))
    assert (history["busy"] == 1).sum() == 3 * 12
    detection = find_changes(history)
    assert detection.changes == [], format_verdict(detection)
    fit = next(iter(detection.series.values())).metrics[STEP]
    assert fit.used.sum() == 12 and len(fit.segments) == 1
    short = find_changes(history[history["commit_position"] >= history["commit_position"].min() + 8])
    assert short.changes == [] and all("not judged: " in note for note in short.warnings)


@needs_quiet_runs
def test_five_small_steps_are_caught(tmp_path):
    """+3% at runs 9, 12, 15, 18 and 21: each step under the 5% minimum effect, 16% in all. Every series reports it
    in its latest segment: as drift, or, where the noise leaves two flat segments 10% or more apart, as a step at
    one of the later small steps."""
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: 1.03 ** min(max(0, (i - 6) // 3), 5), spread=QUIET_SPREAD)
    detection = find_changes(read_history(history_of(tmp_path, runs)))
    caught = {c.series: c for c in step_changes(detection) if c.current_regression}
    assert len(caught) == 3, format_verdict(detection)  # every series
    for c in caught.values():
        assert c.kind in ("drift", "efficiency") and c.ratio > 1.08
        assert c.index >= 9 + MIN_RUNS  # the latest segment starts after the first step
    assert exit_code(detection) == 1


@needs_quiet_runs
def test_an_acknowledged_regression_passes_and_later_runs_are_judged_against_it(tmp_path):
    k, m = 8, 16
    once = copy_runs(tmp_path / "once", range(NOISE_RUNS), lambda i: 1.10 if i >= k else 1.0, spread=QUIET_SPREAD)
    history = read_history(history_of(tmp_path / "once", once))
    ack = [Acknowledgement("*", "*", run_commit(k)[:10], "deliberate: a slower, exact kernel")]
    assert exit_code(find_changes(history)) == 1
    detection = find_changes(history, acknowledged=ack)
    assert exit_code(detection) == 0, format_verdict(detection)
    assert {c.acknowledged for c in detection.changes} == {"deliberate: a slower, exact kernel"}

    twice = copy_runs(tmp_path / "twice", range(NOISE_RUNS), lambda i: 1.10 ** ((i >= k) + (i >= m)), spread=QUIET_SPREAD)
    detection = find_changes(read_history(history_of(tmp_path / "twice", twice)), acknowledged=ack)
    now = [c for c in detection.regressions if c.metric == STEP]
    assert len(now) == 3 and all(c.index == m and c.kind == "efficiency" for c in now), format_verdict(detection)
    assert all(1.05 < c.ratio < 1.16 for c in now)  # against the acknowledged segment, not the first one (x1.21)

    small = copy_runs(tmp_path / "small", range(NOISE_RUNS), lambda i: 1.10 * 1.03 ** (i >= m) if i >= k else 1.0, spread=QUIET_SPREAD)
    detection = find_changes(read_history(history_of(tmp_path / "small", small)), acknowledged=ack)
    assert exit_code(detection) == 0, format_verdict(detection)  # 3% over the new baseline: no drift


@needs_quiet_runs
def test_a_new_processor_splits_the_timings_and_its_own_slowdown_is_still_found(tmp_path):
    """Runs 12-23 timed on another processor, where every step took 1.3x as long: the timings are judged within each
    machine's runs (no change point, the notes say they were split; on one processor the 1.3x is a regression);
    then a real 10% slowdown among the new processor's runs, from run 16: one regression at 16 per series."""
    k = 12
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: 1.3 if i >= k else 1.0, spread=QUIET_SPREAD)
    for run in runs[k:]:
        on_machine(run, cpu="AMD EPYC 7B13")
    history = read_history(history_of(tmp_path, runs))
    assert history["timed_on"].nunique() == 2 and history["series"].nunique() == 3  # a series is still the point's
    detection = find_changes(history)
    assert detection.changes == [] and exit_code(detection) == 0, format_verdict(detection)
    assert len(detection.warnings) == 3 and all(
        "timed on 2 machines" in w and "AMD EPYC 7B13, cpu, 1 thread (12 commits)" in w for w in detection.warnings)
    one = copy_runs(tmp_path / "one", range(NOISE_RUNS), lambda i: 1.3 if i >= k else 1.0, spread=QUIET_SPREAD)
    assert exit_code(find_changes(read_history(history_of(tmp_path / "one", one)))) == 1

    slower = copy_runs(tmp_path / "slower", range(NOISE_RUNS), lambda i: 1.3 ** (i >= 6) * 1.1 ** (i >= 16),
                       spread=QUIET_SPREAD)
    for run in slower[6:]:
        on_machine(run, cpu="AMD EPYC 7B13")
    detection = find_changes(read_history(history_of(tmp_path / "slower", slower)))
    now = [c for c in detection.regressions if c.metric == STEP]
    assert len(now) == 3 and all(c.index == 16 and 1.05 < c.ratio < 1.16 for c in now), format_verdict(detection)


@needs_quiet_runs
def test_too_few_runs_on_a_new_thread_count_are_not_comparable_exit_3_unless_a_count_moved(tmp_path, capsys):
    """Runs 0-19 with one thread, then 4 with two, 1.3x slower: too few commits to judge the new machine's timings:
    NOT COMPARABLE naming both machines, exit 3. The same with the 4 runs after the commit that adds lm_head (FLOPs
    +41%, and slower) on two threads: that exact change is judged across the machines, exit 1."""
    runs = copy_runs(tmp_path, range(NOISE_RUNS), lambda i: 1.3 if i >= 20 else 1.0, spread=QUIET_SPREAD)
    for run in runs[20:]:
        on_machine(run, threads=2)
    history = str(tmp_path / "history.csv")
    assert main(["history", "regressions", "--append", *runs, "--file", history]) == 3
    out = capsys.readouterr().out
    assert "NOT COMPARABLE (3 series)" in out and "(exit 3)" in out
    assert "Intel(R) Xeon(R) Processor, cpu, 1 thread -> Intel(R) Xeon(R) Processor, cpu, 2 threads" in out
    assert "REGRESSIONS in the latest segment, unacknowledged (0)" in out
    assert main(["history", "regressions", "--file", history, "--json"]) == 3
    verdict = json.loads(capsys.readouterr().out)
    assert all(STEP in s["not_comparable"] and len(s["timed_on"]) == 2 for s in verdict["series"].values())

    target = copy_runs(tmp_path / "target", range(TARGET_RUN - 10, TARGET_RUN + 4), spread=QUIET_SPREAD)
    for run in target[10:]:
        on_machine(run, threads=2)
    detection = find_changes(read_history(history_of(tmp_path / "target", target)))
    assert {c.metric for c in detection.regressions} <= set(EXACT) and exit_code(detection) == 1
    assert {c.series for c in detection.regressions if c.metric == "flops_per_step"} == set(detection.series)
    assert all(STEP in fit.not_comparable for fit in detection.series.values()), format_verdict(detection)


def target_detection(tmp_path):
    """Six runs before and six after the commit that adds lm_head to Llama's default targets (timing noise damped)."""
    runs = copy_runs(tmp_path, range(TARGET_RUN - 6, TARGET_RUN + 6), spread=QUIET_SPREAD)
    return find_changes(read_history(history_of(tmp_path, runs)))


def test_adding_a_target_module_is_an_exact_flops_change_at_its_commit(tmp_path):
    detection = target_detection(tmp_path)
    flops = [c for c in detection.changes if c.metric == "flops_per_step"]
    assert len(flops) == 3 and {c.commit_after for c in flops} == {run_commit(TARGET_RUN)}
    assert {c.commit_before for c in flops} == {run_commit(TARGET_RUN - 1)}
    assert all(c.kind == "exact" and c.direction == "regression" and 1.3 < c.ratio < 1.5 for c in flops)
    assert "flops_per_step " in flops[0].explanation and "FLOPs" in flops[0].explanation
    assert {c.series for c in detection.regressions if c.metric == "flops_per_step"} == {c.series for c in flops}
    assert exit_code(detection) == 1


@needs_quiet_runs
def test_the_slowdown_of_a_new_target_module_is_explained_by_its_flops(tmp_path):
    detection = target_detection(tmp_path)
    flops = {c.series: c for c in detection.changes if c.metric == "flops_per_step"}
    steps = step_changes(detection)
    assert len(steps) == 3, format_verdict(detection)
    for c in steps:
        assert (c.commit_after, c.kind, c.direction) == (run_commit(TARGET_RUN), "explained", "regression")
        assert c.predicted == pytest.approx(flops[c.series].ratio) and "predicts" in c.explanation
        assert not c.current_regression  # judged by its count change, which is


def test_history_regressions_prints_a_table_or_json_and_exits_by_the_verdict(tmp_path, capsys):
    runs = copy_runs(tmp_path, range(TARGET_RUN - 6, TARGET_RUN + 6), spread=QUIET_SPREAD)
    history = str(tmp_path / "history.csv")
    acks = tmp_path / "acknowledged.toml"
    assert main(["history", "regressions", "--append", *runs, "--file", history, "--acknowledged", str(acks)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSIONS in the latest segment, unacknowledged" in out and "exact regression" in out
    assert main(["history", "regressions", "--file", history, "--json", "--acknowledged", str(acks)]) == 1
    verdict = json.loads(capsys.readouterr().out)
    regressions = verdict["regressions"]
    assert verdict["exit_code"] == 1 and len(verdict["series"]) == 3
    assert {r["series"] for r in regressions if r["metric"] == "flops_per_step"} == set(verdict["series"])
    assert all(r["commit_after"] == run_commit(TARGET_RUN) and r["current_regression"] for r in regressions)
    acks.write_text(f'[[acknowledged]]\nseries = "*"\nmetric = "*"\ncommit = "{run_commit(TARGET_RUN)[:7]}"\n'
                    'reason = "lm_head adapted too"\n')
    assert read_acknowledged(str(acks))[0].reason == "lm_head adapted too"
    assert main(["history", "regressions", "--file", history, "--acknowledged", str(acks)]) == 0
    acknowledged = int(re.search(r"^acknowledged \((\d+)\)", capsys.readouterr().out, re.M).group(1))
    assert acknowledged >= len(regressions)  # and any timing change at that commit


def test_an_operator_count_moved_by_a_new_torch_is_a_change_of_counter_not_of_code():
    observations = [Observation(f"{i:08d}", i, False, False, [], "") for i in range(3)]
    changes = exact_changes("s", "copies_per_step", np.array([7.0, 9.0, 11.0]), observations,
                            np.array(["2.13.0", "2.14.0", "2.14.0"]))
    assert [(c.kind, c.commit_after) for c in changes] == [("counter", "00000001"), ("exact", "00000002")]
    assert "counted by torch 2.13.0 at 00000000 vs 2.14.0 at 00000001: not compared" in changes[0].explanation
    assert changes[1].latest and changes[1].direction == "regression"


def test_a_timing_change_is_explained_by_the_operator_counts_that_moved_with_their_sizes():
    kind, predicted, why = explain("step_time_ms_p50", 100.0, 1.08, [
        ("copies_per_step", 7, 55), ("copy_bytes_per_step", 0, 12.6 * 2**20), ("syncs_per_step", 21, 53),
        ("adapter_params", 10, 12)])
    assert (kind, predicted) == ("explained", None)
    assert why == "+48 copies per step, +12.6 MiB copied per step, +32 synchronisations per step, observed +8.0%"
    kind, predicted, why = explain("step_time_ms_p50", 100.0, 1.2, [("flops_per_step", 100, 120),
                                                                    ("syncs_per_step", 21, 53)])
    assert kind == "explained" and predicted == pytest.approx(1.2)
    assert why == "flops_per_step moved: it predicts +20.0%, +32 synchronisations per step, observed +20.0%"
    kind, _, why = explain(PER_GFLOP, 1.0, 1.1, [("alloc_count_per_step", 400, 410)])
    assert (kind, why) == ("explained", "+10 allocations per step, observed +10.0%")
    assert explain("step_time_ms_p50", 100.0, 1.1, [("adapter_params", 10, 12)])[0] == "efficiency"
