"""compare_runs and the history, on copies of the real run (real_run_dir) with planted step-time changes.

`timed_runs` holds three copies of the harness's rows: `baseline` as measured, `same` with every ok point's raw step
times 3% longer (within the 10% threshold) and `slower` with them twice as long, all three as if timed on a quiet
machine. The step times themselves are the run's own measurements, so the intervals compare works out have the
spread of real steps.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pandas as pd
import pytest
from cli_runs import REPO
from figure_files import assert_png_not_blank, assert_svg_parses
from other_machine import on_machine
from real_run import copy_run, failed_retry, rewrite_rows, scale_step_times, steady_step_times, with_load

from bench.cli import main
from bench.track.compare import compare_and_print, compare_runs, exit_code, format_comparison
from bench.track.history import HISTORY_COLUMNS, append_history, read_history
from bench.track.page import plot_history, plot_metric
from bench.track.rules import DEFAULT_THRESHOLDS, Threshold, bootstrap_ratio_ci, parse_threshold, parse_thresholds
from bench.results.read import RESULTS_FILE, latest_rows, read_rows
from bench.columns import SCHEMA_VERSION

pytestmark = pytest.mark.xdist_group("real_run")  # one worker waits for the real run, the other goes on

MIB = 2**20
SLOWER = 2.0
STEP_FACTORS = {"baseline": 1.0, "same": 1.03, "slower": SLOWER}  # planted on every ok point's step times
QUIET_LOAD = 0.4  # planted too: the real run's own load is whatever the machine had then


@pytest.fixture(scope="session")
def timed_runs(real_run_dir, tmp_path_factory) -> dict[str, str]:
    runs = {}
    for name, factor in STEP_FACTORS.items():
        runs[name] = with_load(copy_run(real_run_dir, tmp_path_factory.mktemp(name)), QUIET_LOAD)
        # the real step times held steady (a planted quiet: the verdicts below must not hang on how busy the
        # machine was when the real run timed them), then scaled by the planted factor
        rewrite_rows(runs[name], lambda rows, f=factor: [scale_step_times(steady_step_times(r), f)
                                                         if r["status"] == "ok" else r for r in rows])
    return runs


def n_ok_points(run_dir: str) -> int:
    return sum(r["status"] == "ok" for r in latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE))))


# --- thresholds ---------------------------------------------------------------


def test_threshold_rules_parse_from_text():
    assert parse_threshold("step_time_ms_p50:10%") == Threshold("step_time_ms_p50", 0.10, relative=True)
    assert parse_threshold("eval_accuracy:1pt") == Threshold("eval_accuracy", 0.01, relative=False)
    assert parse_threshold(" init_total_s : 0.5 ") == Threshold("init_total_s", 0.5, relative=False)
    assert str(parse_threshold("peak_mem_bytes:5%")) == "peak_mem_bytes:5%"
    assert parse_thresholds(["peak_mem_bytes:5%", "peak_mem_bytes:8%"])["peak_mem_bytes"].limit == pytest.approx(0.08)
    assert DEFAULT_THRESHOLDS["step_time_ms_p50"].limit == pytest.approx(0.10)
    assert DEFAULT_THRESHOLDS["init_total_s"].limit == pytest.approx(0.25)
    assert DEFAULT_THRESHOLDS["eval_accuracy"] == Threshold("eval_accuracy", 0.01, relative=False)
    for bad, message in [("step_time_ms_p50", "METRIC:LIMIT"), ("speed:10%", "unknown metric 'speed'"),
                         ("trainable_params:1%", "compared exactly"), ("step_time_ms_p50:ten%", "METRIC:LIMIT")]:
        with pytest.raises(ValueError, match=message):
            parse_threshold(bad)


def test_bootstrap_ci_brackets_the_true_ratio_and_is_reproducible():
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(10.0), 0.1, size=30)
    slow = rng.lognormal(np.log(15.0), 0.1, size=30)
    low, high = bootstrap_ratio_ci(base, slow)
    assert 1.3 < low < 1.5 < high < 1.7
    assert bootstrap_ratio_ci(base, slow) == (low, high)
    low, high = bootstrap_ratio_ci(base, rng.lognormal(np.log(10.0), 0.1, size=30))
    assert low < 1.0 < high


# --- comparing runs -----------------------------------------------------------


def test_a_step_time_change_within_the_threshold_is_no_regression(timed_runs):
    c = compare_runs(timed_runs["baseline"], timed_runs["same"])
    assert c.regressions == [], format_comparison(c)
    assert exit_code(c) == 0
    assert compare_and_print(timed_runs["baseline"], timed_runs["same"], print_fn=lambda _: None) == 0
    step = [ch for ch in c.changes if ch.metric == "step_time_ms_p50"]
    assert len(step) == n_ok_points(timed_runs["baseline"])
    assert all(ch.ci is not None and ch.ci[0] < 1.1 for ch in step)
    assert c.added == [] and c.removed == []
    assert len(c.not_compared) == sum(r["status"] != "ok" for r in latest_rows(
        read_rows(os.path.join(timed_runs["baseline"], RESULTS_FILE))))


def test_a_really_slower_step_is_a_significant_regression_and_exits_1(timed_runs):
    c = compare_runs(timed_runs["baseline"], timed_runs["slower"])
    slower = {ch.point_id for ch in c.regressions if ch.metric == "step_time_ms_p50"}
    assert len(slower) == n_ok_points(timed_runs["baseline"]), format_comparison(c)
    assert {ch.metric for ch in c.regressions} <= {"step_time_ms_p50", "tokens_per_s"}
    for ch in c.regressions:
        assert ch.ci is not None
        if ch.metric == "step_time_ms_p50":
            assert ch.ci[0] > 1.1 and ch.ratio == pytest.approx(SLOWER)
    printed = []
    assert compare_and_print(timed_runs["baseline"], timed_runs["slower"], print_fn=printed.append) == 1
    assert "REGRESSIONS" in printed[0] and "result: " in printed[0] and "regression(s)" in printed[0]
    # the same slowdown passes under a 150% threshold: both larger than the threshold AND significant
    assert compare_runs(timed_runs["baseline"], timed_runs["slower"], {"step_time_ms_p50": "150%",
                                                                      "tokens_per_s": "150%"}).regressions == []


def test_a_changed_parameter_count_is_flagged(timed_runs, tmp_path):
    changed = copy_run(timed_runs["baseline"], tmp_path / "changed")
    target = {}

    def grow(rows):
        row = next(r for r in rows if r["status"] == "ok")
        target.update(point_id=row["point_id"], before=int(row["trainable_params"]))
        row["trainable_params"] = str(int(row["trainable_params"]) + 16)
        return rows

    rewrite_rows(changed, grow)
    c = compare_runs(timed_runs["baseline"], changed)
    assert [(ch.point_id, ch.metric, ch.verdict) for ch in c.regressions] == [
        (target["point_id"], "trainable_params", "changed")]
    assert f"{target['before']:,} -> {target['before'] + 16:,}" in c.regressions[0].note
    assert exit_code(c) == 1
    assert "trainable_params" in format_comparison(c)


def test_points_in_one_run_only_are_listed_not_compared(timed_runs, tmp_path):
    fewer = copy_run(timed_runs["baseline"], tmp_path / "fewer")
    rows = read_rows(os.path.join(fewer, RESULTS_FILE))
    method = next(r["method"] for r in rows if r["status"] == "ok")  # drop every point of one method
    dropped = {r["point_id"] for r in rows if r["method"] == method}
    rewrite_rows(fewer, lambda rows: [r for r in rows if r["method"] != method])
    c = compare_runs(timed_runs["baseline"], fewer)
    assert len(c.removed) == len(dropped) > 0 and c.added == []
    assert all(f" {method} " in p for p in c.removed)
    assert not any(ch.point_id in dropped for ch in c.changes)
    reverse = compare_runs(fewer, timed_runs["baseline"])
    assert len(reverse.added) == len(c.removed) and reverse.removed == []


def test_accuracy_and_memory_use_their_thresholds(timed_runs, tmp_path):
    baseline = copy_run(timed_runs["baseline"], tmp_path / "base")
    # a profiling-only run has no accuracy: give its ok rows one, the same in both runs
    rewrite_rows(baseline, lambda rows: [{**r, "eval_accuracy": r["eval_accuracy"] or "0.8"} if r["status"] == "ok"
                                         else r for r in rows])
    worse = copy_run(baseline, tmp_path / "worse")
    ids = {}

    def degrade(rows):
        ok = [r for r in rows if r["status"] == "ok"]
        ok[0]["eval_accuracy"] = str(float(ok[0]["eval_accuracy"]) - 0.02)  # 2 points: beyond 1pt
        ok[1]["eval_accuracy"] = str(float(ok[1]["eval_accuracy"]) - 0.005)  # half a point: within
        ok[2]["peak_mem_bytes"] = str(int(float(ok[2]["peak_mem_bytes"]) + 100 * MIB))  # beyond 5% and 64 MiB
        ok[3]["peak_mem_bytes"] = str(int(float(ok[3]["peak_mem_bytes"]) * 1.02))  # +2%: within
        ids.update(acc=ok[0]["point_id"], mem=ok[2]["point_id"])
        return rows

    rewrite_rows(worse, degrade)
    c = compare_runs(baseline, worse)
    assert not any("measured in" in w for w in c.warnings)
    assert sorted((ch.point_id, ch.metric) for ch in c.regressions) == sorted(
        [(ids["acc"], "eval_accuracy"), (ids["mem"], "peak_mem_bytes")])
    assert compare_runs(baseline, worse, {"eval_accuracy": "3pt", "peak_mem_bytes": "50%"}).regressions == []
    # accuracy measured on one side only is not compared, and said so
    blank = copy_run(baseline, tmp_path / "blank")
    rewrite_rows(blank, lambda rows: [{**r, "eval_accuracy": ""} for r in rows])
    one_sided = compare_runs(baseline, blank)
    assert not any(ch.metric == "eval_accuracy" for ch in one_sided.changes)
    assert any(w.startswith("eval_accuracy measured in the baseline run only") for w in one_sided.warnings)


def test_a_task_metric_other_than_accuracy_is_compared_in_points_and_accuracy_once(timed_runs, tmp_path):
    """eval_score (e.g. STS-B's Pearson) drops beyond 1 point are regressions; where the task's metric is
    accuracy, eval_score equals eval_accuracy and a drop is flagged once, as eval_accuracy."""
    baseline = copy_run(timed_runs["baseline"], tmp_path / "base")
    rewrite_rows(baseline, lambda rows: [{**r, "eval_metric": "pearson" if i % 2 else "accuracy", "eval_score": "0.8",
                                          "eval_accuracy": "" if i % 2 else "0.8"} if r["status"] == "ok" else r
                                         for i, r in enumerate(rows)])
    worse = copy_run(baseline, tmp_path / "worse")

    def degrade(rows):
        for r in rows:
            if r["status"] == "ok":
                r["eval_score"] = "0.77"
                r["eval_accuracy"] = "0.77" if r["eval_metric"] == "accuracy" else ""
        return rows

    rewrite_rows(worse, degrade)
    regressions = compare_runs(baseline, worse).regressions
    rows = [r for r in read_rows(os.path.join(baseline, RESULTS_FILE)) if r["status"] == "ok"]
    expected = {(r["point_id"], "eval_score" if r["eval_metric"] == "pearson" else "eval_accuracy") for r in rows}
    assert {(ch.point_id, ch.metric) for ch in regressions} == expected and len(regressions) == len(rows)


def test_single_shot_init_and_rss_changes_count_only_beyond_their_noise_floor(timed_runs, tmp_path):
    """Init is timed once and RSS is noisy: +8% of 500 MiB RSS or +40 ms of init is noise, +150 MiB or +0.2 s is not.
    CUDA memory counters have no floor."""
    def set_values(run_dir, memory_mib, init_s, source):
        def change(rows):
            for row in rows:
                if row["status"] == "ok":
                    row.update(peak_mem_bytes=str(memory_mib * MIB), init_total_s=str(init_s), peak_mem_source=source)
            return rows
        rewrite_rows(run_dir, change)
        return run_dir

    def verdicts(before, after):
        c = compare_runs(before, after)
        return {(ch.metric, ch.verdict, bool(ch.note)) for ch in c.changes if ch.metric in ("peak_mem_bytes", "init_total_s")}

    base = set_values(copy_run(timed_runs["baseline"], tmp_path / "base"), 500, 0.08, "rss")
    noise = set_values(copy_run(base, tmp_path / "noise"), 540, 0.12, "rss")
    assert verdicts(base, noise) == {("peak_mem_bytes", "same", True), ("init_total_s", "same", True)}
    real = set_values(copy_run(base, tmp_path / "real"), 650, 0.28, "rss")
    assert verdicts(base, real) == {("peak_mem_bytes", "worse", False), ("init_total_s", "worse", False)}
    cuda_base = set_values(copy_run(base, tmp_path / "cuda_base"), 500, 0.08, "cuda_max_allocated")
    cuda_now = set_values(copy_run(base, tmp_path / "cuda_now"), 540, 0.08, "cuda_max_allocated")
    assert ("peak_mem_bytes", "worse", False) in verdicts(cuda_base, cuda_now)
    same = compare_runs(base, copy_run(base, tmp_path / "same"))
    assert not [ch for ch in same.changes if ch.note and "noise floor" in ch.note]  # 0 -> 0 is not "beyond"


def test_failed_rows_are_listed_not_compared(timed_runs, tmp_path):
    failed = copy_run(timed_runs["baseline"], tmp_path / "failed")
    rows = read_rows(os.path.join(failed, RESULTS_FILE))
    first_ok = next(r for r in rows if r["status"] == "ok")
    retry = failed_retry(first_ok, next(r for r in rows if r["status"] == "failed"), "RuntimeError: boom")
    rewrite_rows(failed, lambda rs: rs + [retry])
    c = compare_runs(timed_runs["baseline"], failed)
    assert any("current failed (RuntimeError: boom)" in line for line in c.not_compared)
    assert first_ok["point_id"] not in {ch.point_id for ch in c.changes}


def test_runs_with_no_configuration_in_common_are_an_error(timed_runs, tmp_path):
    other = copy_run(timed_runs["baseline"], tmp_path / "other")
    rewrite_rows(other, lambda rows: [{**r, "point_id": "x" + r["point_id"]} for r in rows])
    with pytest.raises(ValueError, match="no configuration in common"):
        compare_runs(timed_runs["baseline"], other)


@pytest.mark.parametrize("version", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1])  # an old baseline, a newer run
def test_a_different_schema_version_is_not_comparable(timed_runs, tmp_path, version):
    other = copy_run(timed_runs["baseline"], tmp_path / "other")
    rewrite_rows(other, lambda rows: [{**r, "schema_version": str(version)} for r in rows])
    with pytest.raises(ValueError, match=f"schema_version '{version}'.*reads version {SCHEMA_VERSION}.*not comparable"
                                         ".*a baseline too"):
        compare_runs(other, timed_runs["baseline"])


def test_a_missing_baseline_says_how_to_make_one(timed_runs, tmp_path):
    missing = str(tmp_path / "no-such-run")
    with pytest.raises(FileNotFoundError) as info:
        compare_runs(missing, timed_runs["baseline"])
    assert missing in str(info.value) and "run_bench.py run --preset quick --out DIR" in str(info.value)
    with pytest.raises(FileNotFoundError):
        compare_runs(os.path.join(missing, RESULTS_FILE), timed_runs["baseline"])


def test_a_results_csv_path_works_like_its_run_directory(timed_runs):
    by_dir = compare_runs(timed_runs["baseline"], timed_runs["same"])
    by_file = compare_runs(os.path.join(timed_runs["baseline"], RESULTS_FILE), timed_runs["same"])
    assert [(ch.point_id, ch.metric, ch.verdict) for ch in by_dir.changes] == \
        [(ch.point_id, ch.metric, ch.verdict) for ch in by_file.changes]


# --- history ------------------------------------------------------------------


def test_history_gains_one_row_per_ok_point_once_and_plots(timed_runs, tmp_path):
    history = str(tmp_path / "reports" / "history.csv")
    n_ok = n_ok_points(timed_runs["baseline"])
    assert append_history(timed_runs["baseline"], history) == n_ok
    assert append_history(timed_runs["baseline"], history) == 0  # the same run again adds nothing
    assert append_history(os.path.join(timed_runs["baseline"], RESULTS_FILE), history) == 0
    assert append_history(timed_runs["slower"], history) == n_ok
    with open(history, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * n_ok and list(rows[0]) == HISTORY_COLUMNS
    assert {r["commit"] for r in rows} and all(r["step_time_ms_p50"] for r in rows)

    written = plot_history(history, ["step_time_ms_p50", "trainable_params", "flops_per_step"], str(tmp_path / "plots"))
    assert sorted(os.path.basename(p) for p in written) == [
        "history_flops_per_step.png", "history_flops_per_step.svg", "history_step_time_ms_p50.png",
        "history_step_time_ms_p50.svg", "history_trainable_params.png", "history_trainable_params.svg"]
    for path in written:
        assert_png_not_blank(path) if path.endswith(".png") else assert_svg_parses(path)
    with pytest.raises(ValueError, match="unknown history metric"):
        plot_history(history, ["speed"], str(tmp_path / "plots"))
    with pytest.raises(FileNotFoundError, match="history --append"):
        plot_history(str(tmp_path / "none.csv"), ["step_time_ms_p50"], str(tmp_path / "plots"))


def test_history_keeps_variants_of_a_point_apart(timed_runs, tmp_path):
    """Two GiVA bases at the same rank are two lines over commits, not one averaged line."""
    history = str(tmp_path / "history.csv")
    append_history(timed_runs["baseline"], history)
    rows = pd.read_csv(history, dtype=str, keep_default_na=False)
    variant = rows[rows["method"] == "giva"].iloc[[0]].copy()
    variant["method_options"] = json.dumps({"basis": "VrUr"})
    variant["point_id"] = "variant"
    variant["step_time_ms_p50"] = "1e6"  # far from the others: an average would hide it
    pd.concat([rows, variant]).to_csv(history, index=False)

    history_rows = read_history(history)
    fig = plot_metric(history_rows.dropna(subset=["step_time_ms_p50"]), "step_time_ms_p50")
    lines = fig.axes[0].get_lines()
    by_rank = history_rows.groupby(["model", "task", "method", "rank"]).ngroups
    assert len(lines) == by_rank + 1  # the variant is a line of its own
    assert any(max(line.get_ydata()) == 1e6 for line in lines)
    assert any("VrUr" in line.get_label() for line in lines)
    assert plot_history(history, ["step_time_ms_p50"], str(tmp_path / "plots"))


def test_a_timing_regression_between_a_quiet_and_a_busy_run_is_not_judged_unless_asked(timed_runs, tmp_path):
    """The slower workload timed on a busy machine against a quiet baseline: its step-time regressions are listed as
    not judged (exit 3, saying why and which flag judges them), each timing verdict with both loads beside it;
    --across-loads judges them (exit 1). Counts are judged whatever the load."""
    quiet = with_load(copy_run(timed_runs["baseline"], tmp_path / "quiet"), 0.4)
    busy = with_load(copy_run(timed_runs["slower"], tmp_path / "busy"), 5.5)
    c = compare_runs(quiet, busy)
    assert c.regressions == [] and len(c.not_judged) >= 0.5 * n_ok_points(quiet), format_comparison(c)
    assert {ch.metric for ch in c.not_judged} <= {"step_time_ms_p50", "tokens_per_s"}
    timings = [ch for ch in c.changes if ch.metric in ("step_time_ms_p50", "init_total_s")]
    assert timings and all("different loads (baseline 0.4, current 5.5 on 2 cores)" in ch.note for ch in timings)
    assert all("loads" not in ch.note for ch in c.changes if ch.metric == "trainable_params")
    printed = []
    assert compare_and_print(quiet, busy, print_fn=printed.append) == 3
    assert "NOT JUDGED" in printed[0] and "--across-loads" in printed[0] and "(exit 3)" in printed[0]
    judged = compare_runs(quiet, busy, across_loads=True)
    assert len(judged.regressions) == len(c.not_judged) and exit_code(judged) == 1
    assert compare_and_print(quiet, busy, print_fn=lambda _: None, across_loads=True) == 1
    # both busy: judged, and noted
    both = compare_runs(with_load(copy_run(quiet, tmp_path / "busy_base"), 4.0), busy)
    assert both.not_judged == [] and len(both.regressions) >= 0.5 * n_ok_points(quiet)
    assert all("both timed on a busy machine" in ch.note for ch in both.regressions)


# --- machines ------------------------------------------------------------------

QUICK_CPU = os.path.join(REPO, "reports", "baselines", "quick-cpu")  # a real run of the quick preset (`make bench`)


@pytest.mark.parametrize("planted, named", [
    (dict(cpu="AMD EPYC 7B13"), "baseline: Intel(R) Xeon(R) Processor, cpu, 1 thread; current: AMD EPYC 7B13, cpu, "
                                "1 thread"),
    (dict(threads=2), "baseline: Intel(R) Xeon(R) Processor, cpu, 1 thread; current: Intel(R) Xeon(R) Processor, "
                      "cpu, 2 threads"),
    (dict(gpu="NVIDIA H200"), "current: Intel(R) Xeon(R) Processor, NVIDIA H200, 1 thread")])
def test_timings_of_two_machines_are_not_comparable_and_the_counts_are_judged(tmp_path, planted, named):
    """The quick baseline against a copy of itself with another processor, thread count or GPU in meta.json (the
    issue's case: a fresh clone's run on an AMD EPYC against the baseline of an Intel Xeon): every timing and memory
    reading is listed as NOT COMPARABLE with both machines named, the exact counts are judged, exit 3; a changed
    count as well: exit 1; --across-machines judges the timings (the same readings here: exit 0)."""
    other = on_machine(copy_run(QUICK_CPU, tmp_path / "other"), **planted)
    c = compare_runs(QUICK_CPU, other)
    assert c.regressions == [] and c.improvements == []
    assert {ch.metric for ch in c.not_judged} == {"step_time_ms_p50", "tokens_per_s", "init_total_s", "init_grad_s",
                                                 "init_svd_s", "peak_mem_bytes", "init_peak_mem_bytes"}
    counts = [ch for ch in c.changes if ch.better == "exact"]
    assert counts and all(ch.verdict == "same" for ch in counts)
    accuracy = [ch for ch in c.changes if ch.metric == "eval_accuracy"]
    assert accuracy and all(ch.verdict == "same" for ch in accuracy)  # judged across machines
    printed = []
    assert compare_and_print(QUICK_CPU, other, print_fn=printed.append) == 3
    assert "NOT COMPARABLE" in printed[0] and named in printed[0] and "--across-machines" in printed[0]
    assert "(exit 3)" in printed[0] and "REGRESSIONS (0)" in printed[0]

    rewrite_rows(other, lambda rows: [{**r, "trainable_params": str(int(r["trainable_params"]) + 8)} for r in rows])
    grown = compare_runs(QUICK_CPU, other)
    assert {ch.metric for ch in grown.regressions} == {"trainable_params"} and exit_code(grown) == 1
    assert main(["compare", QUICK_CPU, other]) == 1

    judged = compare_runs(QUICK_CPU, other, across_machines=True)
    assert judged.not_judged == [] and {ch.metric for ch in judged.regressions} == {"trainable_params"}
    assert any("judged anyway (--across-machines)" in w for w in judged.warnings)


def test_across_machines_judges_a_real_slowdown_of_two_thread_counts(timed_runs, tmp_path):
    """The slower copy (its step times planted 2x) as if timed with 2 threads against the baseline's 1: not
    comparable (exit 3); with --across-machines its step-time regressions are judged (exit 1)."""
    two = on_machine(copy_run(timed_runs["slower"], tmp_path / "two"), threads=2)
    c = compare_runs(timed_runs["baseline"], two)
    assert c.regressions == [] and c.machines_differ == ["threads"]
    assert main(["compare", timed_runs["baseline"], two]) == 3
    judged = compare_runs(timed_runs["baseline"], two, across_machines=True)
    assert len(judged.regressions) >= 0.5 * n_ok_points(two) and exit_code(judged) == 1
    assert {ch.metric for ch in judged.regressions} <= {"step_time_ms_p50", "tokens_per_s"}
    assert main(["compare", timed_runs["baseline"], two, "--across-machines"]) == 1


def test_operator_counts_of_another_torch_are_not_compared_and_a_warning_says_so(timed_runs, tmp_path):
    """Copies, allocations, syncs and operator calls are torch's decompositions: counted by two torch versions they
    are a change of counter, not of code. Counted by the same torch, a moved count is a regression with its size."""
    def with_copies(run_dir, torch_version):
        rewrite_rows(run_dir, lambda rows: [{**r, "counts_torch": torch_version or r["counts_torch"],
                                             "copies_per_step": str(int(r["copies_per_step"]) + 5)}
                                            if r["status"] == "ok" else r for r in rows])
        return run_dir

    base = timed_runs["baseline"]
    counted_by = read_rows(os.path.join(base, RESULTS_FILE))[0]["counts_torch"]
    other = compare_runs(base, with_copies(copy_run(base, tmp_path / "other"), "9.9.9"))
    assert not [ch for ch in other.changes if ch.metric == "copies_per_step"]
    assert any(f"counted by torch {counted_by} vs 9.9.9: not compared" in w for w in other.warnings)
    same = compare_runs(base, with_copies(copy_run(base, tmp_path / "same"), ""))
    moved = [ch for ch in same.regressions if ch.metric == "copies_per_step"]
    assert moved and all("(+5 count" in ch.note for ch in moved)
