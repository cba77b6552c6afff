"""Evaluation metrics in plain torch: accuracy, binary F1, Matthews correlation, Pearson and Spearman.

    scores = compute_metrics(predictions, labels, kind="binary")   # {"accuracy": ..., "f1": ..., "matthews": ...}

GLUE's convention picks one per task (DEFAULT_METRIC): Matthews for CoLA, Pearson for
STS-B, accuracy for the rest (MRPC and QQP also report F1). Every metric that fits a
task is computed at each evaluation; the task's own one is the row's eval_score.
"""

from __future__ import annotations

import torch

# Which metrics fit which kind of labels. "binary" and "multiclass" are classification (class ids as
# predictions), "regression" real-valued predictions and labels.
METRIC_KINDS = {
    "accuracy": ("binary", "multiclass"),
    "f1": ("binary",),  # of the positive class, label id 1
    "matthews": ("binary", "multiclass"),
    "pearson": ("regression",),
    "spearman": ("regression",),
}
METRICS = tuple(METRIC_KINDS)
DEFAULT_METRIC = {"cola": "matthews", "stsb": "pearson"}  # GLUE's; every other task: accuracy (or pearson if regression)


def label_kind(num_classes: int, regression: bool) -> str:
    if regression:
        return "regression"
    return "binary" if num_classes == 2 else "multiclass"


def metrics_for(kind: str) -> list[str]:
    """The metrics that fit a kind of labels, in METRICS order."""
    return [name for name in METRICS if kind in METRIC_KINDS[name]]


def default_metric(dataset: str, kind: str) -> str:
    return DEFAULT_METRIC.get(dataset, "pearson" if kind == "regression" else "accuracy")


def check_metric(metric: str, kind: str, what: str) -> None:
    """A one-line error when `metric` is unknown or does not fit `kind` (e.g. Pearson on a 3-class task)."""
    if metric not in METRIC_KINDS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if kind not in METRIC_KINDS[metric]:
        raise ValueError(f"metric {metric!r} does not fit {what} ({kind} labels); use one of {', '.join(metrics_for(kind))}")


def compute_metrics(predictions: torch.Tensor, labels: torch.Tensor, kind: str) -> dict[str, float]:
    """Every metric that fits `kind`: predictions are class ids (classification) or real values (regression)."""
    functions = {"accuracy": accuracy, "f1": f1_binary, "matthews": matthews, "pearson": pearson, "spearman": spearman}
    return {name: functions[name](predictions, labels) for name in metrics_for(kind)}


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).double().mean().item()


def f1_binary(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 of class 1: 2 TP / (2 TP + FP + FN); 0 when there is no positive prediction nor label."""
    tp = ((predictions == 1) & (labels == 1)).sum().item()
    fp = ((predictions == 1) & (labels != 1)).sum().item()
    fn = ((predictions != 1) & (labels == 1)).sum().item()
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def matthews(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Matthews correlation for any number of classes (Gorodkin's R_K, as scikit-learn); 0 when undefined."""
    classes = int(max(predictions.max().item(), labels.max().item())) + 1
    confusion = torch.zeros(classes, classes, dtype=torch.float64)  # (true, predicted)
    confusion.index_put_((labels.long(), predictions.long()), torch.ones(len(labels), dtype=torch.float64), accumulate=True)
    true_counts, predicted_counts = confusion.sum(1), confusion.sum(0)
    n, correct = confusion.sum(), confusion.trace()
    covariance = correct * n - true_counts @ predicted_counts
    scale = (n * n - predicted_counts @ predicted_counts) * (n * n - true_counts @ true_counts)
    return (covariance / scale.sqrt()).item() if scale > 0 else 0.0


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation; 0 when either side is constant."""
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    scale = x.norm() * y.norm()
    return (x @ y / scale).item() if scale > 0 else 0.0


def ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their average rank (as scipy.stats.rankdata)."""
    values = values.double()
    order = values.argsort()
    sorted_values = values[order]
    # runs of equal values: each gets the mean of the positions it spans
    starts = torch.cat([torch.tensor([True]), sorted_values[1:] != sorted_values[:-1]])
    run_id = starts.cumsum(0) - 1
    positions = torch.arange(1, len(values) + 1, dtype=torch.float64)
    run_sum = torch.zeros(int(run_id[-1]) + 1, dtype=torch.float64).index_add_(0, run_id, positions)
    run_len = torch.zeros_like(run_sum).index_add_(0, run_id, torch.ones_like(positions))
    result = torch.empty_like(positions)
    result[order] = (run_sum / run_len)[run_id]
    return result


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman correlation: Pearson of the (tie-averaged) ranks."""
    return pearson(ranks(x), ranks(y))
