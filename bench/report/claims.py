"""The paper's headline claim checked on a run, with intervals: GiVA at rank r against VeRA and LoRA at rank 8r,
and LoRA at r, on the same model, task and seeds.

    verdicts = claim_verdicts(ok)       # one row per GiVA point and comparison: claims.csv
    lines = format_claim_check(ok, verdicts, several_runs)

Each pair's difference of the task's own metric (GiVA minus the other, in points) is taken per seed, the seeds
paired; its mean gets a 95% interval: a t-interval over the seeds both share, or with one seed the eval set's own
interval (binomial for an accuracy, Fisher's z for a correlation; F1 and Matthews have none here). The verdict:
matches (the interval within ±margin, the eval_score column's own threshold: 1 point), better (the interval above
0), worse (below 0), or undecided, with the number of seeds a t-interval of the observed spread would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..columns import column, parse_limit
from .steps import LORA_STEPS_NOTE, share_note
from .tables import MISSING, busy_note, format_number, format_ratio, mark_busy, md_cell, task_metric

# The paper's headline, as data: GiVA at rank r matches vector-based methods (VeRA) at rank 8r, and LoRA at 8r and r.
CLAIMED = "giva"
AGAINST = (("vera", 8, "VeRA at 8r"), ("lora", 8, "LoRA at 8r"), ("lora", 1, "LoRA at r"))  # (method, rank factor, heading)
STEP_BASELINE = "lora"  # GiVA's step time is compared with this method's at the same rank
CLAIMS_FILE = "claims.csv"  # beside summary.md: claim_verdicts() with CLAIM_COLUMNS
CONFIDENCE = 0.95
MARGIN_POINTS = 100 * parse_limit(column("eval_score").threshold)[0]  # eval_score's threshold: 1 point
MAX_SEEDS = 1000  # seeds_to_decide is not searched beyond this
FISHER_METRICS = ("pearson", "spearman")  # one-seed interval of a correlation: Fisher's z approximation
VERDICTS = ("better", "matches", "worse", "undecided")

# claims.csv: (column, meaning). Differences and interval ends are GiVA minus the other, in points (x100).
CLAIM_COLUMNS = (
    ("run", "the run (folder name) the points come from"),
    ("model", "model"), ("task", "task"), ("metric", "the task's own metric (eval_metric) the scores are in"),
    ("giva", "GiVA's variant: the method and the options that tell its points apart"),
    ("rank", "GiVA's rank r"),
    ("against", "the comparison: VeRA at 8r, LoRA at 8r or LoRA at r"),
    ("against_variant", "the compared method's variant"), ("against_rank", "its rank"),
    ("seeds", "seeds both points ran (the pairs)"),
    ("giva_score", "GiVA's metric, mean over those seeds"), ("against_score", "the other's, mean over them"),
    ("diff_points", "mean per-seed difference, GiVA minus the other, in points"),
    ("diff_lo_points", "lower end of its 95% interval, in points"),
    ("diff_hi_points", "upper end of its 95% interval, in points"),
    ("interval", "how the interval was made: t over the seeds; binomial or fisher-z (one seed, the eval set's "
                 "sampling noise); none"),
    ("margin_points", "matches means the interval lies within plus or minus this many points"),
    ("verdict", "better, matches, worse or undecided"),
    ("seeds_to_decide", "undecided with 2 or more seeds: the seeds a t-interval of the observed spread of the "
                        "differences would need to decide (empty: not undecided, one seed, or more than 1000)"),
)


@dataclass(frozen=True)
class Interval:
    low: float  # points
    high: float
    kind: str  # "t", "binomial", "fisher-z" or "none"


def paired_interval(differences: np.ndarray, metric: str, scores: tuple[float, float], examples: float) -> Interval:
    """95% interval of the mean difference in points: t over the seeds, or with one seed the eval set's."""
    mean = float(np.mean(differences))
    n = len(differences)
    if n >= 2:
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * np.std(differences, ddof=1) / math.sqrt(n)
        return Interval(mean - half, mean + half, "t")
    z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    if metric == "accuracy" and examples > 0:  # two accuracies on the same n examples, taken as independent
        se = math.sqrt(sum(p * (1 - p) for p in scores) / examples)
        return Interval(mean - 100 * z * se, mean + 100 * z * se, "binomial")
    if metric in FISHER_METRICS and examples > 3:  # the se of r by Fisher's z: (1 - r^2) / sqrt(n - 3)
        se = math.sqrt(sum((1 - r * r) ** 2 for r in scores) / (examples - 3))
        return Interval(mean - 100 * z * se, mean + 100 * z * se, "fisher-z")
    return Interval(math.nan, math.nan, "none")


def verdict(interval: Interval, margin: float = MARGIN_POINTS) -> str:
    """matches: within ±margin; better: above 0; worse: below 0; else (or no interval) undecided."""
    if math.isnan(interval.low):
        return "undecided"
    if -margin <= interval.low and interval.high <= margin:
        return "matches"
    if interval.low > 0:
        return "better"
    if interval.high < 0:
        return "worse"
    return "undecided"


def seeds_to_decide(differences: np.ndarray, margin: float = MARGIN_POINTS) -> float:
    """The fewest seeds whose t-interval, at the observed mean and spread, would lie within ±margin or off 0; NaN
    where there is no spread to go by (one seed) or more than MAX_SEEDS would be needed."""
    if len(differences) < 2:
        return math.nan
    mean, spread = abs(float(np.mean(differences))), float(np.std(differences, ddof=1))
    needed_half = max(margin - mean, mean)  # within ±margin, or excluding 0
    if spread == 0 or needed_half <= 0:
        return math.nan
    for n in range(2, MAX_SEEDS + 1):
        if stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * spread / math.sqrt(n) < needed_half:
            return float(n)
    return math.nan


def claim_verdicts(ok: pd.DataFrame) -> pd.DataFrame:
    """claims.csv's rows (CLAIM_COLUMNS) from the ok rows of the runs (summary.prepare()'s frame: run, variant)."""
    rows = ok.dropna(subset=["eval_score"])
    out = []
    for (run, model, task), group in rows.groupby(["run", "model", "task"], sort=False):
        variants = group.groupby("method")["variant"].unique()
        if CLAIMED not in variants:
            continue
        metric = task_metric(group)
        scores = group.groupby(["variant", "rank", "seed"]).agg(score=("eval_score", "mean"),
                                                                examples=("eval_examples", "mean"))
        points = scores.index.droplevel("seed")
        for variant, rank in group.loc[group["method"] == CLAIMED, ["variant", "rank"]].drop_duplicates().itertuples(
                index=False):
            mine = scores.loc[(variant, rank)]
            for method, factor, heading in AGAINST:
                if method not in variants or len(variants[method]) != 1:  # absent, or ambiguous (several variants)
                    continue
                other_variant, other_rank = variants[method][0], factor * rank
                if (other_variant, other_rank) not in points:
                    continue
                theirs = scores.loc[(other_variant, other_rank)]
                seeds = mine.index.intersection(theirs.index)
                if seeds.empty:
                    continue
                differences = 100 * (mine.loc[seeds, "score"] - theirs.loc[seeds, "score"]).to_numpy()
                pair = (mine.loc[seeds, "score"].mean(), theirs.loc[seeds, "score"].mean())
                interval = paired_interval(differences, metric, pair, mine.loc[seeds, "examples"].mean())
                decision = verdict(interval)
                out.append(dict(
                    run=run, model=model, task=task, metric=metric, giva=variant, rank=rank, against=heading,
                    against_variant=other_variant, against_rank=other_rank, seeds=len(seeds), giva_score=pair[0],
                    against_score=pair[1], diff_points=float(np.mean(differences)), diff_lo_points=interval.low,
                    diff_hi_points=interval.high, interval=interval.kind, margin_points=MARGIN_POINTS,
                    verdict=decision,
                    seeds_to_decide=seeds_to_decide(differences) if decision == "undecided" else math.nan))
    return pd.DataFrame(out, columns=[name for name, _ in CLAIM_COLUMNS])


def format_verdict(row) -> str:
    if row["verdict"] != "undecided":
        return row["verdict"]
    if row["seeds"] < 2:
        return "undecided (one seed: run 3 or more)"
    if math.isnan(row["seeds_to_decide"]):
        return f"undecided (over {MAX_SEEDS} seeds to decide)"
    return f"undecided (~{row['seeds_to_decide']:.0f} seeds would decide)"


def format_interval(row) -> str:
    if row["interval"] == "none":
        return f"{row['diff_points']:+.1f} [no interval]"
    return f"{row['diff_points']:+.1f} [{row['diff_lo_points']:+.1f}, {row['diff_hi_points']:+.1f}]"


def format_claim_check(ok: pd.DataFrame, verdicts: pd.DataFrame, several_runs: bool) -> list[str]:
    """Per model and task: each GiVA rank r against VeRA and LoRA at 8r and LoRA at r, where the runs have them;
    then GiVA's costs beside LoRA's at r."""
    if CLAIMED not in set(ok.dropna(subset=["eval_score"])["method"]):  # a profiling run has no score to claim
        return []
    out = ["## Claim check: GiVA at rank r against VeRA and LoRA at rank 8r", "",
           "Each task's own metric (named in its heading), mean over the seeds both points ran. Difference: GiVA "
           "minus the other in points (x100), per seed and then averaged, with its 95% interval: a t-interval over "
           "the seeds, or with one seed the eval set's (binomial for accuracy, Fisher's z for a correlation, none "
           f"for F1 and Matthews). Verdict: matches = the interval within ±{MARGIN_POINTS:g} point; better / worse "
           "= the interval above / below 0; otherwise undecided, with the seeds a t-interval of the observed spread "
           "would need. In claims.csv beside this file.", ""]
    for (run, model, task), group in verdicts.groupby(["run", "model", "task"], sort=False):
        title = f"{model} · task {task} · {group['metric'].iloc[0]}" + (f" · run {run}" if several_runs else "")
        out += [f"### {title}", "", "| GiVA | r | score | against | r | score | seeds | difference (pts) [95%] | "
                "verdict |", "|---|---:|---:|---|---:|---:|---:|---|---|"]
        for _, row in group.iterrows():
            out.append(f"| {md_cell(row['giva'])} | {row['rank']} | {row['giva_score']:.3f} | {row['against']} | "
                       f"{row['against_rank']} | {row['against_score']:.3f} | {row['seeds']} | "
                       f"{format_interval(row)}{' (' + row['interval'] + ')' if row['interval'] != 't' else ''} | "
                       f"{format_verdict(row)} |")
        out.append("")
    out += format_costs(ok, several_runs)
    return out


def format_costs(ok: pd.DataFrame, several_runs: bool) -> list[str]:
    """GiVA's step time over LoRA's at the same rank, and its init in LoRA training steps and as a share of a
    fine-tuning run of the report's one length (steps.share_steps: ok's share_steps)."""
    out = []
    steps = f"{int(ok['share_steps'].iloc[0]):,}-step" if not ok.empty else ""
    for (run, model, task), group in ok.groupby(["run", "model", "task"], sort=False):
        if CLAIMED not in set(group["method"]):
            continue
        means = group.groupby(["variant", "rank"]).agg(
            step_ms=("step_time_ms_p50", "mean"), init_s=("init_total_s", "mean"), share=("share_time", "mean"),
            flops_share=("share_flops", "mean"), lora_step_ms=("lora_step_ms", "mean"), busy=("busy", "any"))
        baselines = group.loc[group["method"] == STEP_BASELINE, "variant"].unique()
        rows = []
        for variant, rank in group.loc[group["method"] == CLAIMED, ["variant", "rank"]].drop_duplicates().itertuples(
                index=False):
            mine = means.loc[(variant, rank)]
            key = (baselines[0], rank) if len(baselines) == 1 else None  # none, or ambiguous (several variants)
            baseline = means.loc[key] if key in means.index else None
            step_ratio = (MISSING if baseline is None else
                          mark_busy(format_ratio(mine["step_ms"], baseline["step_ms"]), mine["busy"] or baseline["busy"]))
            init_steps = mark_busy(format_number(mine["init_s"] / (mine["lora_step_ms"] / 1000.0), ".2g"), mine["busy"])
            share = mark_busy(format_number(100 * mine["share"], ".2g", "%"), mine["busy"])
            flops = format_number(100 * mine["flops_share"], ".2g", "%")
            rows.append(f"| {md_cell(variant)} | {rank} | {step_ratio} | {init_steps} | {share} | {flops} |")
        title = f"{model} · task {task}" + (f" · run {run}" if several_runs else "")
        busy = set(group.loc[group["busy"], "cpu_count"])
        out += [f"#### GiVA's costs: {title}", "", f"{LORA_STEPS_NOTE}. {share_note(ok)}."
                + (" " + busy_note(busy) if busy else ""), "", "| GiVA | r | step time vs LoRA at r | init (LoRA steps) | "
                f"init share of a {steps} run (wall time) | init share of a {steps} run (FLOPs) |",
                "|---|---:|---:|---:|---:|---:|", *rows, ""]
    return out
