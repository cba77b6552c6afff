"""bench.metrics against scikit-learn and scipy on fixed inputs, and the checks that pick a metric per task."""

from __future__ import annotations

import pytest
import torch

from bench.tasks.metrics import (accuracy, check_metric, compute_metrics, default_metric, f1_binary, label_kind,
                                 matthews, pearson, ranks, spearman)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")

GENERATOR = torch.Generator().manual_seed(0)
BINARY_TRUE = torch.randint(0, 2, (200,), generator=GENERATOR)
BINARY_PRED = torch.where(torch.rand(200, generator=GENERATOR) < 0.7, BINARY_TRUE, 1 - BINARY_TRUE)
MULTI_TRUE = torch.randint(0, 4, (300,), generator=GENERATOR)
MULTI_PRED = torch.where(torch.rand(300, generator=GENERATOR) < 0.5, MULTI_TRUE, torch.randint(0, 4, (300,), generator=GENERATOR))
REAL_TRUE = torch.rand(150, generator=GENERATOR) * 5
REAL_PRED = REAL_TRUE + torch.randn(150, generator=GENERATOR)
TIED_TRUE = torch.tensor([0.0, 1.0, 1.0, 2.0, 3.8, 3.8, 3.8, 5.0, 2.0, 0.0])  # STS-B-like ties
TIED_PRED = torch.tensor([0.1, 0.1, 1.0, 2.5, 3.0, 4.0, 3.0, 4.5, 2.5, 0.2])


def test_accuracy_f1_matthews_match_scikit_learn():
    y, p = BINARY_TRUE.numpy(), BINARY_PRED.numpy()
    assert accuracy(BINARY_PRED, BINARY_TRUE) == pytest.approx(sklearn_metrics.accuracy_score(y, p), abs=1e-12)
    assert f1_binary(BINARY_PRED, BINARY_TRUE) == pytest.approx(sklearn_metrics.f1_score(y, p), abs=1e-12)
    assert matthews(BINARY_PRED, BINARY_TRUE) == pytest.approx(sklearn_metrics.matthews_corrcoef(y, p), abs=1e-12)
    y, p = MULTI_TRUE.numpy(), MULTI_PRED.numpy()
    assert matthews(MULTI_PRED, MULTI_TRUE) == pytest.approx(sklearn_metrics.matthews_corrcoef(y, p), abs=1e-12)
    assert accuracy(MULTI_PRED, MULTI_TRUE) == pytest.approx(sklearn_metrics.accuracy_score(y, p), abs=1e-12)


def test_pearson_spearman_and_ranks_match_scipy():
    for x, y in ((REAL_PRED, REAL_TRUE), (TIED_PRED, TIED_TRUE)):
        assert pearson(x, y) == pytest.approx(scipy_stats.pearsonr(x.double().numpy(), y.double().numpy())[0], abs=1e-12)
        assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x.double().numpy(), y.double().numpy())[0], abs=1e-12)
    assert ranks(TIED_TRUE).tolist() == scipy_stats.rankdata(TIED_TRUE.numpy()).tolist()


def test_hand_computed_values_and_degenerate_inputs():
    # 3 TP, 1 FP, 2 FN, 2 TN: F1 = 6 / 9; MCC = (3*2 - 1*2) / sqrt(4 * 5 * 3 * 4)
    labels = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0])
    predictions = torch.tensor([1, 1, 1, 0, 0, 1, 0, 0])
    assert f1_binary(predictions, labels) == pytest.approx(6 / 9)
    assert matthews(predictions, labels) == pytest.approx(4 / (4 * 5 * 3 * 4) ** 0.5)
    assert accuracy(predictions, labels) == 5 / 8
    constant = torch.zeros(8, dtype=torch.long)  # a model that predicts one class: MCC 0 (scikit-learn's too)
    assert matthews(constant, labels) == 0.0 == sklearn_metrics.matthews_corrcoef(labels.numpy(), constant.numpy())
    assert f1_binary(constant, labels) == 0.0
    assert pearson(torch.ones(5), torch.arange(5.0)) == 0.0  # constant predictions: 0, not NaN


def test_each_kind_gets_its_metrics_and_glue_defaults():
    assert set(compute_metrics(BINARY_PRED, BINARY_TRUE, "binary")) == {"accuracy", "f1", "matthews"}
    assert set(compute_metrics(MULTI_PRED, MULTI_TRUE, "multiclass")) == {"accuracy", "matthews"}
    assert set(compute_metrics(REAL_PRED, REAL_TRUE, "regression")) == {"pearson", "spearman"}
    assert label_kind(2, False) == "binary" and label_kind(3, False) == "multiclass" and label_kind(0, True) == "regression"
    assert default_metric("cola", "binary") == "matthews" and default_metric("stsb", "regression") == "pearson"
    assert default_metric("mrpc", "binary") == "accuracy" and default_metric("csv", "regression") == "pearson"


@pytest.mark.parametrize("metric, kind, message", [
    ("pearson", "multiclass", r"metric 'pearson' does not fit task 'x' \(multiclass labels\); use one of accuracy, matthews"),
    ("f1", "multiclass", "metric 'f1' does not fit"),
    ("accuracy", "regression", "use one of pearson, spearman"),
    ("auc", "binary", "unknown metric 'auc'; choose one of accuracy, f1, matthews, pearson, spearman"),
])
def test_a_metric_that_does_not_fit_is_refused(metric, kind, message):
    with pytest.raises(ValueError, match=message):
        check_metric(metric, kind, "task 'x'")
