"""The claim verdicts (bench/report/claims.py) and the transfer matrix (bench/report/transfer.py) on the real run's
rows with planted scores, whose intervals are worked out here: better, matches, worse, undecided (and how many seeds
would decide it), one seed (the eval set's binomial or Fisher-z interval, or none).

Each case copies the real run's GiVA r1 and VeRA r8 points (VeRA at 8r) of one model, renames their task to the
case's and gives them the case's scores (a third seed copies the last real one's row); the frame is the one the
report makes of a run directory (load_run, prepare)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from real_run import copy_run, rewrite_rows

from bench.report.claims import claim_verdicts
from bench.report.summary import prepare, run_labels
from bench.report.transfer import format_transfer, transfer_cells
from bench.results.read import load_run

pytestmark = pytest.mark.xdist_group("real_run")  # one worker waits for the real run, the other goes on

T_975_2DF = 4.302652729911275  # the t quantile of a 95% interval over 3 seeds (2 degrees of freedom)
Z_975 = 1.959963984540054


def report_frame(real_run_dir: str, dest, change) -> pd.DataFrame:
    """The ok rows of a copy of the real run whose results.csv went through change(rows), framed as the report
    frames them."""
    run_dir = copy_run(real_run_dir, dest)
    rewrite_rows(run_dir, change)
    runs = [load_run(run_dir)]
    data = prepare(runs, run_labels(runs))
    return data[data["status"] == "ok"]


def real_point(rows: list[dict], method: str, rank: int, seed: int) -> dict:
    """The real run's row of the first model's point (the last real seed where the run has fewer)."""
    model = next(r["model"] for r in rows if r["status"] == "ok")
    same = [r for r in rows if (r["status"], r["model"], r["method"], r["rank"]) == ("ok", model, method, str(rank))]
    return sorted(same, key=lambda r: int(r["seed"]))[min(seed, len(same) - 1)]


def planted(rows: list[dict], task: str, metric: str, giva: list[float], vera: list[float],
            examples: int = 500) -> list[dict]:
    """GiVA r1 and VeRA r8 on one task, a score per seed (seeds 0, 1, ...)."""
    out = []
    for method, rank, scores in (("giva", 1, giva), ("vera", 8, vera)):
        for seed, score in enumerate(scores):
            row = real_point(rows, method, rank, seed)
            out.append({**row, "point_id": f"{row['point_id']}-{task}-{seed}", "task": task, "seed": str(seed),
                        "eval_score": str(score), "eval_metric": metric, "eval_examples": str(examples)})
    return out


@pytest.fixture(scope="module")
def verdicts(real_run_dir, tmp_path_factory) -> pd.DataFrame:
    base = [0.70, 0.72, 0.74]

    def cases(rows):
        return (planted(rows, "better", "accuracy", [b + d for b, d in zip(base, (0.030, 0.032, 0.028))], base)
                + planted(rows, "matches", "accuracy", [b + d for b, d in zip(base, (0.001, -0.001, 0.0))], base)
                + planted(rows, "worse", "accuracy", [b + d for b, d in zip(base, (-0.05, -0.06, -0.04))], base)
                + planted(rows, "undecided", "accuracy", [b + d for b, d in zip(base, (0.02, -0.01, 0.005))], base)
                + planted(rows, "one-seed-accuracy", "accuracy", [0.80], [0.75])
                + planted(rows, "one-seed-pearson", "pearson", [0.75], [0.45])
                + planted(rows, "one-seed-f1", "f1", [0.80], [0.75]))

    return claim_verdicts(report_frame(real_run_dir, tmp_path_factory.mktemp("claims"), cases)).set_index("task")


def test_three_seeds_give_a_t_interval_and_each_verdict(verdicts):
    for task, differences, verdict in (("better", [3.0, 3.2, 2.8], "better"), ("matches", [0.1, -0.1, 0.0], "matches"),
                                       ("worse", [-5.0, -6.0, -4.0], "worse"),
                                       ("undecided", [2.0, -1.0, 0.5], "undecided")):
        row = verdicts.loc[task]
        mean, spread = np.mean(differences), np.std(differences, ddof=1)
        half = T_975_2DF * spread / math.sqrt(3)
        assert (row["against"], row["against_rank"], row["seeds"], row["interval"]) == ("VeRA at 8r", 8, 3, "t")
        assert row["diff_points"] == pytest.approx(mean, abs=1e-9)
        assert (row["diff_lo_points"], row["diff_hi_points"]) == pytest.approx((mean - half, mean + half), abs=1e-9)
        assert row["verdict"] == verdict, task
    # better [2.50, 3.50], matches [-0.25, +0.25], worse [-7.48, -2.52]: decided, nothing more to run
    assert verdicts.loc[["better", "matches", "worse"], "seeds_to_decide"].isna().all()


def test_undecided_says_how_many_seeds_would_decide_from_the_observed_spread(verdicts):
    """Mean +0.5, spread 1.5 points: an interval of half-width under 0.5 would lie within ±1 point, which a
    t-interval of that spread reaches at about 38 seeds (the first n with t(n - 1) * 1.5 / sqrt(n) < 0.5)."""
    from scipy import stats

    seeds = verdicts.loc["undecided", "seeds_to_decide"]

    def half(n):
        return stats.t.ppf(0.975, n - 1) * 1.5 / math.sqrt(n)

    assert half(seeds) < 0.5 <= half(seeds - 1)
    assert 30 < seeds < 45


def test_one_seed_takes_the_eval_set_interval_and_says_so(verdicts):
    accuracy = verdicts.loc["one-seed-accuracy"]  # two accuracies on the same 500 examples, taken as independent
    half = 100 * Z_975 * math.sqrt((0.8 * 0.2 + 0.75 * 0.25) / 500)  # 5.17 points
    assert (accuracy["interval"], accuracy["seeds"]) == ("binomial", 1)
    assert (accuracy["diff_lo_points"], accuracy["diff_hi_points"]) == pytest.approx((5 - half, 5 + half))
    assert accuracy["verdict"] == "undecided" and math.isnan(accuracy["seeds_to_decide"])  # no spread to go by

    pearson = verdicts.loc["one-seed-pearson"]  # Fisher: se(r) = (1 - r^2) / sqrt(n - 3)
    half = 100 * Z_975 * math.sqrt(((1 - 0.75**2) ** 2 + (1 - 0.45**2) ** 2) / 497)  # 8.0 points
    assert pearson["interval"] == "fisher-z" and pearson["verdict"] == "better"
    assert (pearson["diff_lo_points"], pearson["diff_hi_points"]) == pytest.approx((30 - half, 30 + half))

    f1 = verdicts.loc["one-seed-f1"]  # no sampling interval for F1 from a score alone
    assert f1["interval"] == "none" and f1["verdict"] == "undecided" and math.isnan(f1["diff_lo_points"])


def test_pairs_use_the_seeds_both_points_ran_and_skip_an_ambiguous_comparison(real_run_dir, tmp_path):
    frame = report_frame(real_run_dir, tmp_path,  # VeRA lacks seed 2
                         lambda rows: planted(rows, "t", "accuracy", [0.70, 0.72, 0.74], [0.70, 0.70]))
    (row,) = claim_verdicts(frame).itertuples()
    assert row.seeds == 2 and row.giva_score == pytest.approx(0.71) and row.diff_points == pytest.approx(1.0)
    frame.loc[frame["method"] == "vera", "variant"] = ["vera (a)", "vera (b)"]
    assert claim_verdicts(frame).empty  # which VeRA? no verdict rather than a guess


def transfer_rows(rows: list[dict]) -> list[dict]:
    """GiVA r8 trained on sst2 from sst2 / trec / agnews, on trec from sst2 / trec; VeRA r8 on both; 2 seeds."""
    out = []
    scores = {("sst2", "sst2"): (0.80, 0.82), ("trec", "sst2"): (0.78, 0.79), ("agnews", "sst2"): (0.81, 0.84),
              ("sst2", "trec"): (0.60, 0.64), ("trec", "trec"): (0.70, 0.70)}
    for (source, task), values in scores.items():
        for seed, score in enumerate(values):
            row = real_point(rows, "giva", 8, seed)
            init = "" if source == task and source == "trec" else source  # an own-task point without init_task
            options = {**json.loads(row["method_options"]), **({"init_task": init} if init else {})}
            out.append({**row, "point_id": f"{row['point_id']}-{source}-{task}", "task": task, "seed": str(seed),
                        "eval_score": str(score), "init_task": init, "method_options": json.dumps(options)})
    for task, values in (("sst2", (0.75, 0.77)), ("trec", (0.50, 0.52))):
        for seed, score in enumerate(values):
            row = real_point(rows, "vera", 8, seed)
            out.append({**row, "point_id": f"{row['point_id']}-{task}", "task": task, "seed": str(seed),
                        "eval_score": str(score)})
    return out


@pytest.fixture(scope="module")
def transfer_frame(real_run_dir, tmp_path_factory) -> pd.DataFrame:
    return report_frame(real_run_dir, tmp_path_factory.mktemp("transfer"), transfer_rows)


def test_transfer_matrix_changes_are_against_the_init_on_the_train_task_itself(transfer_frame):
    cells = transfer_cells(transfer_frame).set_index(["source", "task"])
    assert set(cells["matrix"]) == {"giva r8"}
    expected = {("sst2", "sst2"): 0.0, ("trec", "sst2"): -2.5, ("agnews", "sst2"): 1.5, ("sst2", "trec"): -8.0,
                ("trec", "trec"): 0.0, ("vera r8", "sst2"): -5.0, ("vera r8", "trec"): -19.0}
    assert {k: round(v, 6) for k, v in cells["change_points"].items()} == expected
    assert cells.loc[("vera r8", "trec"), "reference"] and not cells.loc[("trec", "trec"), "reference"]
    assert cells.loc[("agnews", "sst2"), "score"] == pytest.approx(0.825)
    text = "\n".join(format_transfer(transfer_cells(transfer_frame), several_runs=False))
    assert "| trec | 0.785 (-2.5) | 0.700 (own) | 2 |" in text
    assert "| agnews | 0.825 (+1.5) | – | 2 |" in text
    assert "| vera r8 (reference) | 0.760 (-5.0) | 0.510 (-19.0) | 2 |" in text


def test_no_init_task_means_no_transfer_matrix(transfer_frame):
    rows_without = transfer_frame.assign(init_task="", method_options="{}")
    assert transfer_cells(rows_without).empty and format_transfer(transfer_cells(rows_without), False) == []
