import numpy as np
import pytest

from cvlabel.metrics import (
    balanced_accuracy,
    binary_nll,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    roc_auc,
    sigmoid,
)


def test_roc_auc_known_answers():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert roc_auc(labels, np.array([0.1, 0.8, 0.2, 0.9])) == 0.75
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_ece_zero_when_confidence_matches_accuracy():
    # 10 clips at p_female=0.8 of which 8 are female: confidence 0.8, accuracy 0.8
    labels = np.array([1] * 8 + [0] * 2)
    assert expected_calibration_error(labels, np.full(10, 0.8)) == pytest.approx(0.0)
    # always certain, right half the time: ECE 0.5
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 1.0])) == pytest.approx(0.5)


def test_temperature_scaling_lowers_the_nll_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    honest = (2 * labels - 1) * 1.5 + rng.normal(0, 1.5, labels.size)
    overconfident = 6 * honest
    temperature = fit_temperature(labels, overconfident)
    assert temperature > 3
    assert binary_nll(labels, overconfident / temperature) < binary_nll(labels, overconfident)
    assert expected_calibration_error(labels, sigmoid(overconfident / temperature)) < expected_calibration_error(
        labels, sigmoid(overconfident)
    )


def test_calibration_never_sharpens():
    # a perfectly separated dev set would drive an unconstrained temperature to 0
    labels = np.array([0] * 50 + [1] * 20)
    logits = np.r_[np.full(50, -12.0), np.full(20, 12.0)]
    assert fit_temperature(labels, logits) == 1.0
    # an underconfident model is left as it is too
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 3000)
    honest = (2 * labels - 1) * 2.0 + rng.normal(0, 2.0, labels.size)
    assert fit_temperature(labels, honest / 3) == 1.0


def test_classification_metrics_counts():
    labels = np.array([0, 0, 0, 1, 1, 1])
    logits = np.array([-2.0, -1.0, 1.0, 2.0, 3.0, -0.5])
    speakers = np.array(["a", "a", "b", "c", "c", "d"])
    m = classification_metrics(labels, logits, 1.0, speakers)
    assert m["confusion"] == [[2, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision_female"] == pytest.approx(2 / 3) and m["recall_male"] == pytest.approx(2 / 3)
    assert m["speakers"] == 4 and m["speaker_accuracy"] == pytest.approx(0.5)
    assert balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])) == 0.5
