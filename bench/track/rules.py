"""The one statistical rule of regression tracking, and every threshold and minimum effect.

compare (two runs), history (change points over commits), bisect and the A/B gate all judge with what is here:

- a Threshold per metric, parsed from text such as `step_time_ms_p50:10%` (relative), `eval_score:1pt` (points)
  or `init_total_s:0.5` (the metric's unit); the defaults are each column's `threshold` in bench/columns.py (two
  runs) and its `history_threshold` where a history, which pools runs, can resolve a smaller effect (MIN_EFFECT);
- judge(): a change counts only when it is both beyond its threshold and beyond the noise: for timings with raw
  samples, the whole 99% bootstrap interval of the ratio of medians must clear the threshold (as asv's rule); for
  single readings, the threshold and the column's noise floor.
- judge_pairs(): the A/B gate's rule (track/ab.py) on paired processes, n pairs of per-process values of one point
  (BASE and HEAD run in the same round): on the log ratios log(HEAD/BASE), the ratio's estimate exp(mean) and its
  99% t-interval exp(mean -+ t * sd / sqrt(n)); with the minimum effect e (AB_MIN_EFFECT, 5%): *slower* when the
  interval's low end is above 1 and the estimate above 1 + e, *faster* when its high end is below 1 and the
  estimate below 1 / (1 + e), *same* when the whole interval lies inside [1 / (1 + e), 1 + e], else *undecided*
  (always so under AB_MIN_PAIRS pairs).

Pure numerics on values and rows: no I/O, no plots.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..columns import BY_NAME, COMPARED, MIB, column, parse_limit

EXACT = [c.name for c in COMPARED if c.compare == "exact"]
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.99
MIN_SAMPLES = 5  # fewer step times per side: threshold only, noted
AB_MIN_EFFECT = 0.05  # the A/B gate's minimum effect on a point's step time (its --min-effect)
AB_MIN_PAIRS = 3  # pairs of processes before the gate gives a point any verdict


@dataclass(frozen=True)
class Threshold:
    """How far a metric may move the wrong way: a fraction (relative) or an amount in the metric's unit."""

    metric: str
    limit: float
    relative: bool

    def __str__(self) -> str:
        if self.relative:
            return f"{self.metric}:{self.limit * 100:g}%"
        if BY_NAME[self.metric].compare == "accuracy":
            return f"{self.metric}:{self.limit * 100:g}pt"
        return f"{self.metric}:{self.limit:g}"


def parse_threshold(text: str) -> Threshold:
    """'step_time_ms_p50:10%' (relative), 'eval_accuracy:1pt' (0.01 absolute), 'init_total_s:0.5' (metric's unit)."""
    metric, _, limit = text.partition(":")
    metric, parsed = metric.strip(), parse_limit(limit)
    if not re.fullmatch(r"\w+", metric) or parsed is None:
        raise ValueError(f"threshold {text!r} is not METRIC:LIMIT; write e.g. step_time_ms_p50:10%, "
                         "eval_accuracy:1pt or init_total_s:0.5")
    if metric in EXACT:
        raise ValueError(f"{metric} is compared exactly (any change is flagged); it takes no threshold")
    with_threshold = [c.name for c in COMPARED if c.threshold]
    if metric not in with_threshold:
        raise ValueError(f"no threshold for unknown metric {metric!r}; choose one of {', '.join(with_threshold)}")
    return Threshold(metric, *parsed)


def parse_thresholds(rules: list[str]) -> dict[str, Threshold]:
    """Text rules (the CLI's --threshold, repeatable) -> {metric: Threshold}; the last rule per metric wins."""
    return {t.metric: t for t in map(parse_threshold, rules)}


DEFAULT_THRESHOLDS = parse_thresholds([f"{c.name}:{c.threshold}" for c in COMPARED if c.threshold])


# Minimum effects of the history: compare's thresholds, except where a column declares a smaller history_threshold
# (step time: a history pools runs, so 5% is within reach).
MIN_EFFECT = {**DEFAULT_THRESHOLDS, **parse_thresholds([f"{c.name}:{c.history_threshold}" for c in COMPARED
                                                         if c.history_threshold])}


def noise_floor(metric: str, baseline: dict, current: dict) -> float:
    """The smallest change of `metric` that can count, in its unit (memory read as RSS on either side: 64 MiB)."""
    col = column(metric)
    if col.floor_rss and "rss" in (baseline.get("peak_mem_source"), current.get("peak_mem_source")):
        return col.floor_rss
    return col.floor


def judge(metric: str, old: float, new: float, better: str, threshold: Threshold, ci: tuple[float, float] | None,
          floor: float = 0.0) -> tuple[str, str]:
    """'worse', 'better' or 'same', and a note when a change beyond the threshold did not count."""
    sign = 1.0 if better == "lower" else -1.0  # moved > 0: the wrong way
    if new == old:
        moved = 0.0
    elif threshold.relative:
        moved = sign * (new / old - 1.0) if old else sign * math.copysign(math.inf, new - old)
    else:
        moved = sign * (new - old)
    beyond = abs(moved) > threshold.limit
    if abs(new - old) < floor:
        amount = f"{floor / MIB:g} MiB" if column(metric).unit == "bytes" else f"{floor:g} {column(metric).unit}"
        return "same", f"beyond {threshold} but under the noise floor of {amount}" if beyond else ""
    if ci is not None:  # the whole interval of the ratio must clear the threshold
        limit = threshold.limit if threshold.relative else threshold.limit / abs(old)
        # how far the whole interval lies on the worse side of 1, and on the better side
        worse_by, better_by = (ci[0] - 1.0, 1.0 - ci[1]) if sign > 0 else (1.0 - ci[1], ci[0] - 1.0)
        if worse_by > limit:
            return "worse", ""
        if better_by > limit:
            return "better", ""
        if beyond:
            return "same", f"beyond {threshold} but not significant ({CONFIDENCE:.0%} CI {ci[0]:.3f}-{ci[1]:.3f})"
        return "same", ""
    if not beyond:
        return "same", ""
    return ("worse", "") if moved > 0 else ("better", "")


def step_time_ci(baseline_ms: str, current_ms: str) -> tuple[float, float] | None:
    """Bootstrap CI of median(current) / median(baseline) from the ';'-separated raw step times."""
    base, cur = parse_times(baseline_ms), parse_times(current_ms)
    if len(base) < MIN_SAMPLES or len(cur) < MIN_SAMPLES:
        return None
    return bootstrap_ratio_ci(base, cur)


def parse_times(text: str) -> np.ndarray:
    try:
        return np.array([float(t) for t in text.split(";") if t.strip()], dtype=float)
    except ValueError:
        return np.array([])


def bootstrap_ratio_ci(base: np.ndarray, cur: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap of the ratio of medians, each sample resampled on its own; fixed seed, so reruns agree."""
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, size=(resamples, len(base))), axis=1)
    cur_medians = np.median(rng.choice(cur, size=(resamples, len(cur))), axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(cur_medians / base_medians, [tail, 1.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedVerdict:
    """The A/B gate's verdict on one point from its pairs' log ratios (judge_pairs)."""

    verdict: str  # "slower", "faster", "same" or "undecided"
    ratio: float  # exp(mean log(HEAD / BASE)): the pairs' geometric mean ratio
    low: float  # CONFIDENCE t-interval of the ratio (0 and inf under 2 pairs)
    high: float
    pairs: int
    pairs_needed: int | None = None  # undecided: pairs that would likely decide it (None: no spread to go by)


def paired_ratio_ci(log_ratios: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """exp(mean) of the log ratios and its t-interval: (estimate, low, high); (estimate, 0, inf) under 2 pairs."""
    x = np.asarray(log_ratios, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return math.exp(mean), 0.0, math.inf
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def judge_pairs(log_ratios: np.ndarray, min_effect: float = AB_MIN_EFFECT) -> PairedVerdict:
    """slower / faster / same / undecided by the gate's rule (module docstring); an undecided point's pairs_needed
    is n * (half-width / the half-width that would decide it)^2, from the observed spread."""
    n = len(log_ratios)
    ratio, low, high = paired_ratio_ci(log_ratios)
    bound = math.log1p(min_effect)
    if n >= AB_MIN_PAIRS:
        if low > 1 and ratio > 1 + min_effect:
            return PairedVerdict("slower", ratio, low, high, n)
        if high < 1 and ratio < 1 / (1 + min_effect):
            return PairedVerdict("faster", ratio, low, high, n)
        if low >= 1 / (1 + min_effect) and high <= 1 + min_effect:
            return PairedVerdict("same", ratio, low, high, n)
    if n < 2:
        return PairedVerdict("undecided", ratio, low, high, n)
    mean, half = math.log(ratio), math.log(high / ratio)
    # beyond the minimum effect: the interval must clear 1 (half-width |mean|); within it: fit inside the bounds
    needed = abs(mean) if abs(mean) > bound else bound - abs(mean)
    pairs_needed = max(n + 1, math.ceil(n * (half / needed) ** 2)) if needed > 0 and half > 0 else None
    return PairedVerdict("undecided", ratio, low, high, n, pairs_needed)
