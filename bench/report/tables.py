"""Pieces every summary table shares: a cell for markdown, a value with its unit or "–" where it is missing, the
eval set's noise mark."""

from __future__ import annotations

import math

import pandas as pd

from ..columns import Column

NOISE_MARK = "≈"
NOISE_NOTE = (f"{NOISE_MARK}: smaller than the eval set's noise, the half-width of a 95% binomial interval "
              "1.96 sqrt(p (1 - p) / n) for an accuracy p on n eval examples (accuracy tasks only).")


BUSY_MARK = "†"
MISSING = "–"  # a cell with no number: missing, or not a number (NaN, inf)


def busy_note(cpu_counts: set) -> str:
    cores = "/".join(str(c) for c in sorted(cpu_counts)) or "?"
    return (f"{BUSY_MARK}: timed while the machine's 1-minute load average was above its {cores} cores (busy): other "
            "work shared the cores, so the time is longer and noisier than the point's own.")


def mark_busy(text: str, busy: bool) -> str:
    """A timing's cell, marked when it was taken on a busy machine."""
    return f"{text} {BUSY_MARK}" if busy and text != MISSING else text


def noise_points(metric: str, score: float, examples: float) -> float:
    """Half-width, in points, of the 95% binomial (normal approximation) interval of an accuracy on `examples`;
    NaN for other metrics (a correlation has no binomial interval) or where the count is unknown."""
    if metric != "accuracy" or not examples or math.isnan(examples) or math.isnan(score):
        return math.nan
    return 100 * 1.96 * math.sqrt(max(score * (1 - score), 0.0) / examples)


def format_difference(points: float, noise: float) -> str:
    """A difference in points, marked when it is smaller than the noise."""
    return f"{points:+.1f}" + (f" {NOISE_MARK}" if abs(points) < noise else "")


def is_number(value) -> bool:
    """Whether value is a finite number (not None, NaN or inf)."""
    try:
        return math.isfinite(value)
    except TypeError:
        return False


def format_number(value, spec: str, suffix: str = "") -> str:
    """value in the format spec (".2g", ",.0f", ...) and suffix; MISSING where it is not a finite number."""
    return f"{value:{spec}}{suffix}" if is_number(value) else MISSING


def format_ratio(mine: float, theirs: float) -> str:
    """mine / theirs as "1.03x"; MISSING where either is missing or theirs is 0."""
    return format_number(mine / theirs if is_number(mine) and is_number(theirs) and theirs else math.nan, ".2f", "x")


def format_value(values: pd.Series, col: Column) -> str:
    """Mean over seeds in the column's unit; a score (accuracy, F1, correlation) as mean ± std where there are several."""
    values = values[values.map(is_number)]
    if values.empty:
        return MISSING
    text = col.format(values.mean())
    return text + (f" ± {values.std():.3f}" if col.unit in ("fraction", "score") and len(values) > 1 else "")


def md_cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def task_metric(group: pd.DataFrame) -> str:
    """The metric of one task's rows (eval_metric); 'score' if they disagree (runs of different task options)."""
    metrics = set(group["eval_metric"]) - {""}
    return metrics.pop() if len(metrics) == 1 else "score"
