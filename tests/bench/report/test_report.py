"""build_report end to end: a tiny real sweep on disk -> summary.md and plots that open and are not blank.

`real_run_dir` (conftest.py, built by tests/real_run.py) is a tiny sweep made by the harness itself; each test
reports on a copy of it, and a test that needs another run plants the change in the copy's results.csv.
"""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
from scipy import stats as scipy_stats
from figure_files import assert_png_not_blank, assert_svg_parses
from real_run import copy_run, edited_meta, failed_retry, rewrite_rows

from bench.report.claims import CLAIM_COLUMNS, CLAIMS_FILE
from bench.report.summary import build_report
from bench.report.tables import format_difference, noise_points
from bench.columns import COLUMN_NAMES, SCHEMA_VERSION
from bench.results.read import META_FILE, RESULTS_FILE, latest_rows, read_rows
from bench.results.read import load_run

pytestmark = pytest.mark.xdist_group("real_run")  # one worker waits for the real run, the other goes on

def summary_table_lines(summary: str) -> set[tuple[str, str]]:
    """(method, rank) of every results-table line in summary.md."""
    found = set()
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[1].isdigit():
            found.add((cells[0], cells[1]))
    return found


SCORE_PLOTS = ["rank_score", "params_score", "time_score", "claims"]
# from the traced step and init (bench/measure/counters.py)
COST_PLOTS = ["memory_breakdown", "flops_overhead", "memory_size", "init_share_size"]
ALL_PLOTS = SCORE_PLOTS + ["step_time_rank", "memory_rank", "init_overhead"] + COST_PLOTS


def expected_plots(rows: list[dict]) -> list[str]:
    """All plots for a run with accuracy, the profiling ones for a profiling-only run (a real `profile` sweep)."""
    has_accuracy = any(r["status"] == "ok" and r.get("eval_score") for r in rows)
    return ALL_PLOTS if has_accuracy else [p for p in ALL_PLOTS if p not in SCORE_PLOTS]


# --- tests --------------------------------------------------------------------


def test_report_of_a_real_run_writes_every_file_and_names_every_point(real_run_dir, tmp_path):
    run_dir = copy_run(real_run_dir, tmp_path / "run")
    rows = latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE)))
    assert {r["status"] for r in rows} == {"ok", "failed", "skipped"}  # every kind of row to name
    plots = expected_plots(rows)
    written = build_report([run_dir])

    expected = [os.path.join(run_dir, "summary.md"), os.path.join(run_dir, CLAIMS_FILE)] + [
        os.path.join(run_dir, "plots", f"{name}.{ext}") for name in plots for ext in ("png", "svg")]
    assert sorted(written) == sorted(expected)
    for path in expected:
        assert os.path.getsize(path) > 0, path
    for name in plots:
        assert_png_not_blank(os.path.join(run_dir, "plots", f"{name}.png"))
        root = assert_svg_parses(os.path.join(run_dir, "plots", f"{name}.svg"))
        text = " ".join(t for t in root.itertext())
        assert "commit" in text, f"{name}.svg has no caption with the commit"

    summary = open(os.path.join(run_dir, "summary.md")).read()
    ok = {(r["method"], r["rank"]) for r in rows if r["status"] == "ok"}
    assert summary_table_lines(summary) == ok
    for model, task in {(r["model"], r["task"]) for r in rows if r["status"] == "ok"}:
        assert f"### {model} · task {task}" in summary
    for name in plots:
        assert f"](plots/{name}.png)" in summary and f"(plots/{name}.svg)" in summary
    for row in rows:
        if row["status"] != "ok":
            assert f"| {row['status']} |" in summary and row["error"][:40] in summary
    meta = json.load(open(os.path.join(run_dir, META_FILE)))
    assert "| commit |" in summary and f"`{' '.join(meta['command'])}`" in summary
    if plots == ALL_PLOTS:  # all but the transfer matrix, which needs points with an init_task
        skipped = summary.split("## Plots skipped\n\n", 1)[1].split("\n\n", 1)[0]
        assert skipped == "- **Bases from another task: transfer matrix**: no point names an init_task (method " \
                          "option init_task)"


def test_claim_check_pairs_the_seeds_and_gives_each_pair_an_interval_and_a_verdict(real_run_dir, tmp_path):
    """GiVA r1 against VeRA and LoRA at r8, GiVA r8 against LoRA r8 (the real run has no r64 LoRA), per model:
    the per-seed differences, their t-interval over the 2 seeds and the verdict, by hand from results.csv."""
    run_dir = copy_run(real_run_dir, tmp_path / "claim")
    build_report([run_dir])
    rows = [r for r in latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE))) if r["status"] == "ok"]
    with open(os.path.join(run_dir, CLAIMS_FILE), newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == [name for name, _ in CLAIM_COLUMNS]
        claims = list(reader)

    def scores(model, method, rank):
        return {r["seed"]: float(r["eval_score"]) for r in rows if (r["model"], r["method"], r["rank"]) == (model, method, str(rank))}

    models = sorted({r["model"] for r in rows})
    pairs = {(m, "1", "VeRA at 8r", "8") for m in models} | {(m, "1", "LoRA at 8r", "8") for m in models} | {
        (m, "8", "LoRA at r", "8") for m in models} | {(m, "8", "VeRA at 8r", "64") for m in models}
    assert {(c["model"], c["rank"], c["against"], c["against_rank"]) for c in claims} == pairs
    summary = open(os.path.join(run_dir, "summary.md")).read().split("## Claim check", 1)[1].split("\n## ", 1)[0]
    for claim in claims:
        method = "vera" if claim["against"].startswith("VeRA") else "lora"
        mine, theirs = scores(claim["model"], "giva", claim["rank"]), scores(claim["model"], method, claim["against_rank"])
        differences = [100 * (mine[seed] - theirs[seed]) for seed in sorted(mine)]
        half = scipy_stats.t.ppf(0.975, 1) * np.std(differences, ddof=1) / math.sqrt(2)
        mean = sum(differences) / 2
        assert (claim["seeds"], claim["interval"], claim["margin_points"]) == ("2", "t", "1")
        assert float(claim["diff_points"]) == pytest.approx(mean, abs=1e-4)
        assert float(claim["diff_lo_points"]) == pytest.approx(mean - half, abs=1e-4)
        assert float(claim["diff_hi_points"]) == pytest.approx(mean + half, abs=1e-4)
        verdict = ("matches" if -1 <= mean - half and mean + half <= 1 else "better" if mean - half > 0
                   else "worse" if mean + half < 0 else "undecided")
        assert claim["verdict"] == verdict
        assert (claim["seeds_to_decide"] == "") == (verdict != "undecided" or half == 0)
        line = (f"| giva | {claim['rank']} | {float(claim['giva_score']):.3f} | {claim['against']} | "
                f"{claim['against_rank']} | {float(claim['against_score']):.3f} | 2 | {mean:+.1f} "
                f"[{mean - half:+.1f}, {mean + half:+.1f}] | {verdict}")
        assert line in summary, line


def test_profiling_only_run_with_failures_gets_the_plots_its_data_allows(real_run_dir, tmp_path):
    run_dir = copy_run(real_run_dir, tmp_path / "profile")
    accuracy = ["eval_accuracy_before", "eval_accuracy", "eval_accuracy_best", "eval_loss", "train_time_s",
                "eval_metric", "eval_score_before", "eval_score", "eval_score_best", "eval_scores", "eval_examples"]

    def to_profile(rows):
        for row in rows:
            for column in accuracy:
                row[column] = ""
        first = next(r for r in rows if r["status"] == "ok")
        failed = next(r for r in rows if r["status"] == "failed")
        rows.append(failed_retry(first, failed, "RuntimeError: out of memory on retry"))
        return rows  # the failed retry is now the latest row of that point

    rewrite_rows(run_dir, to_profile)
    written = build_report([run_dir])

    plots = {os.path.basename(p) for p in written if "plots" in p}
    assert plots == {f"{n}.{e}" for n in ["step_time_rank", "memory_rank", "init_overhead", *COST_PLOTS]
                     for e in ("png", "svg")}
    for path in written:
        if path.endswith(".png"):
            assert_png_not_blank(path)
    summary = open(os.path.join(run_dir, "summary.md")).read()
    skipped = summary.split("## Plots skipped")[1].split("##")[0]
    titles = ("Task metric vs rank", "Task metric vs trainable parameters", "Task metric vs training wall time")
    for title in titles:
        assert f"- **{title}" in skipped
    assert "eval_score" in skipped and "profiling-only" in skipped
    assert "RuntimeError: out of memory on retry" in summary
    assert "## Claim check" not in summary and "before training" not in summary  # no accuracy, nothing to claim


def test_a_csv_without_accuracy_columns_at_all_still_reports(real_run_dir, tmp_path):
    run_dir = copy_run(real_run_dir, tmp_path / "narrow")
    keep = ["schema_version", "point_id", "status", "error", "model", "task", "method", "rank", "seed",
            "method_options", "step_time_ms_p50", "step_time_ms_p90"]
    rows = read_rows(os.path.join(run_dir, RESULTS_FILE))
    stale = os.path.join(run_dir, "plots", "rank_score.png")  # as if an earlier report had accuracy
    os.makedirs(os.path.dirname(stale))
    open(stale, "wb").close()
    with open(os.path.join(run_dir, RESULTS_FILE), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keep, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    written = build_report([run_dir])
    assert {os.path.basename(p) for p in written} == {"summary.md", "step_time_rank.png", "step_time_rank.svg"}
    assert not os.path.exists(stale)
    summary = open(os.path.join(run_dir, "summary.md")).read()
    assert "peak_mem_bytes" in summary and "init_total_s" in summary  # the reasons name the missing columns


def test_two_runs_in_one_report_label_lines_by_run(real_run_dir, tmp_path):
    first = copy_run(real_run_dir, tmp_path / "before")
    second = copy_run(real_run_dir, tmp_path / "after")
    rewrite_rows(second, lambda rows: [r for r in rows if r["method"] != "giva"])  # nothing to claim-check there
    with pytest.raises(ValueError, match="out_dir"):
        build_report([first, second])
    out = tmp_path / "both"
    written = build_report([first, second], str(out))
    rows = latest_rows(read_rows(os.path.join(first, RESULTS_FILE)))
    assert len(written) == 2 + 2 * len(expected_plots(rows))  # summary.md, claims.csv (of the first run), plots
    summary = open(out / "summary.md").read()
    assert "## Run before" in summary and "## Run after" in summary
    assert "· run before" in summary and "· run after" in summary
    claims = summary.split("## Claim check", 1)[1].split("\n## ", 1)[0]
    assert "· run before" in claims and "· run after" not in claims
    method = next(r["method"] for r in rows if r["status"] == "ok" and r["method"] != "giva")
    legend_text = " ".join(assert_svg_parses(str(out / "plots" / "step_time_rank.svg")).itertext())
    assert f"{method} · before" in legend_text and f"{method} · after" in legend_text


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    (",".join(COLUMN_NAMES) + "\n", "no rows"),
    ("hello,world\n1,2\n", "lacks the columns schema_version, point_id, status, model, method, rank"),
    (f"schema_version,point_id,status,model,method,rank\n{SCHEMA_VERSION},abc,ok,m,lora\n1,abd,ok,m,lora,8\n", "line 2 has 5 cells"),
    (f"schema_version,point_id,status,model,method,rank\n{SCHEMA_VERSION},abc,done,m,lora,8\n", "status 'done'"),
    (f"schema_version,point_id,status,model,method,rank\n{SCHEMA_VERSION},abc,ok,m,lora,eight\n", "rank 'eight'"),
    ("schema_version,point_id,status,model,method,rank\n99,abc,ok,m,lora,8\n", "schema_version '99'.*not comparable"),
])
def test_a_damaged_or_foreign_csv_gives_an_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / RESULTS_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        build_report([str(tmp_path)])
    text = str(info.value)
    assert str(path) in text and "\n" not in text
    assert any(word in text for word in ("re-run", "delete", "run it")), text


def test_a_missing_run_and_bad_meta_give_errors(real_run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no results at .*nowhere.*run_bench.py run --preset quick"):
        build_report([str(tmp_path / "nowhere")])
    run_dir = copy_run(real_run_dir, tmp_path / "badmeta")
    with open(os.path.join(run_dir, META_FILE), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="meta.json is not valid JSON"):
        build_report([run_dir])


def test_a_torn_last_line_is_ignored_with_a_warning(real_run_dir, tmp_path):
    run_dir = copy_run(real_run_dir, tmp_path / "torn")
    n_points = len(latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE))))
    with open(os.path.join(run_dir, RESULTS_FILE), "a") as f:
        f.write(f"{SCHEMA_VERSION},deadbeef,ok,mlp-s,pla")  # a kill mid-write
    run = load_run(run_dir)
    assert len(run.rows) == n_points and "torn last line" in run.warnings[0]
    build_report([run_dir])
    assert "torn last line" in open(os.path.join(run_dir, "summary.md")).read()


def test_load_run_keeps_the_latest_row_of_a_retried_point(real_run_dir, tmp_path):
    run_dir = copy_run(real_run_dir, tmp_path / "retried")
    rows = read_rows(os.path.join(run_dir, RESULTS_FILE))
    failed_then_ok = [{**rows[0], "status": "failed", "error": "x"}, rows[0]]
    rewrite_rows(run_dir, lambda rs: failed_then_ok + rs[1:])
    run = load_run(run_dir)
    row = run.rows.set_index("point_id").loc[rows[0]["point_id"]]
    assert row["status"] == "ok" and row["trainable_params"] == float(rows[0]["trainable_params"])
    assert np.isnan(run.rows["cuda_max_allocated_bytes"]).all()  # empty cells read as NaN


@pytest.mark.parametrize("examples", [1, 10**9])
def test_differences_within_the_eval_sets_binomial_noise_are_marked(real_run_dir, tmp_path, examples):
    """A difference is marked ≈ exactly when it is smaller than the eval set's noise, in the results table's change
    column. With 1 eval example (noise ±59 to ±98 points for accuracies between 0.1 and 0.9) every difference the
    real run can show is marked; with 10^9 (noise < 0.01 points) only a difference of zero is: the real run's
    accuracies are means of 64 predictions over two seeds (steps of 0.78 points), so a difference shown as ±0.0 is a
    tie, which any machine may produce, and every other is a real move."""
    from bench.report.tables import NOISE_MARK

    assert noise_points("accuracy", 0.5, 10) == pytest.approx(100 * 1.96 * 0.5 / 10**0.5)
    assert math.isnan(noise_points("pearson", 0.5, 10))  # no binomial interval for a correlation
    assert format_difference(0.0, 0.003) == f"+0.0 {NOISE_MARK}" and format_difference(0.2, 0.003) == "+0.2"
    run_dir = copy_run(real_run_dir, tmp_path / "noise")
    rewrite_rows(run_dir, lambda rows: [{**r, "eval_examples": str(examples)} for r in rows])
    build_report([run_dir])
    summary = open(os.path.join(run_dir, "summary.md")).read()
    lines = summary.split("## Results", 1)[1].split("## Claim check", 1)[0].splitlines()
    header = next(line for line in lines if "change (pts)" in line)
    at = [cell.strip() for cell in header.split("|")].index("change (pts)")
    changes = [line.split("|")[at].strip() for line in lines if line.startswith("| ") and "|" in line[2:]
               and line.split("|")[2].strip().isdigit()]
    assert changes
    shown = [c.split() for c in changes]  # ["+1.2"] or ["+0.0", "≈"]
    marked = [cell[-1] == NOISE_MARK for cell in shown]
    tie = [cell[-2 if mark else -1] in ("+0.0", "-0.0") for cell, mark in zip(shown, marked)]
    if examples == 1:
        assert all(marked), changes
    else:
        assert marked == tie, changes


def test_timings_taken_on_a_busy_machine_are_marked(real_run_dir, tmp_path):
    """Points whose load average was above the cores: their timing cells (step time, init) carry the mark in the
    results table and the claim check (GiVA's step ratio and init in steps), with a note; the run section gives the
    load. Counts and scores are not marked; a quiet point's timings are not."""
    from bench.report.tables import BUSY_MARK

    run_dir = copy_run(real_run_dir, tmp_path / "busy")
    busy_method = "giva"
    rewrite_rows(run_dir, lambda rows: [{**r, "load_avg_1m_start": "0.3",
                                         "load_avg_1m_end": "7.5" if r["method"] == busy_method else "0.5"}
                                        for r in rows])
    with edited_meta(run_dir) as meta:
        meta["load"] = {"cpu_count": 2, "load_avg_1m_max": 7.5, "busy": True}
    build_report([run_dir])
    summary = open(os.path.join(run_dir, "summary.md")).read()
    rows = latest_rows(read_rows(os.path.join(run_dir, RESULTS_FILE)))
    assert f"| load | 1-minute load average up to 7.5 on 2 cores: busy; " \
           f"{sum(r['method'] == busy_method for r in rows)} of {len(rows)} measured points ran above" in summary
    results = summary.split("## Results", 1)[1].split("## Claim check", 1)[0]
    assert "above its 2 cores (busy)" in results
    lines = [line for line in results.splitlines() if line.startswith("| ") and line.split("|")[2].strip().isdigit()]
    header = next(line for line in results.splitlines() if "step p50" in line)
    names = [cell.strip() for cell in header.split("|")]
    for line in lines:
        cells = dict(zip(names, (cell.strip() for cell in line.split("|"))))
        marked = {name for name, cell in cells.items() if cell.endswith(BUSY_MARK)}
        assert marked == ({"init total", "step p50"} if cells["method"] == busy_method else set()), line
    costs = summary.split("#### GiVA's costs", 1)[1].split("\n## ", 1)[0]
    giva_lines = [line for line in costs.splitlines() if line.startswith("| giva")]
    assert giva_lines  # step time vs LoRA and init in LoRA steps: GiVA's point was busy
    timing_cells = [cell.strip() for line in giva_lines for cell in line.split("|")[3:6]]  # step ratio, init, share
    assert all(cell == "–" or cell.endswith(BUSY_MARK) for cell in timing_cells), giva_lines
    assert sum(cell.endswith(BUSY_MARK) for cell in timing_cells) >= 2 * len(giva_lines), giva_lines
    assert "above its 2 cores (busy)" in costs
