"""Binary classification metrics and temperature scaling, as pure functions of arrays.

Labels are 1 for female, 0 for male (labels.LABELS); probabilities are p(female).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .labels import LABELS, decide, decide_logits, sigmoid

ECE_BINS = 15  # equal-width confidence bins of the expected calibration error


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); NaN if one class."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, dtype=float)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_table(labels: np.ndarray, p_female: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width bin of the predicted class's confidence (0.5 to 1): clips, mean
    confidence, accuracy. Empty bins are left out."""
    labels = np.asarray(labels).astype(int)
    p_female = np.asarray(p_female, dtype=float)
    predicted, confidence = decide(p_female)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": which, "confidence": confidence, "correct": predicted == labels})
    table = frame.groupby("bin").agg(
        clips=("correct", "size"), confidence=("confidence", "mean"), accuracy=("correct", "mean")
    )
    table["bin_low"] = edges[table.index]
    table["bin_high"] = edges[table.index + 1]
    return table.reset_index(drop=True)


RELIABILITY_BINS = 10  # at most this many equal-count bins in a reliability diagram
MIN_BIN_COUNT = 20  # and at least this many clips (or speakers) in each, so a bin's accuracy means something


def equal_count_reliability(
    correct: np.ndarray, confidence: np.ndarray, bins: int = RELIABILITY_BINS, min_count: int = MIN_BIN_COUNT
) -> pd.DataFrame:
    """Reliability in equal-count bins: the items (clips or speakers) sorted by `confidence` and cut
    into min(bins, n // min_count) runs of (nearly) equal size (one bin at least, when n > 0). Per
    bin: count, confidence (mean), accuracy (share `correct`), low and high (its confidence range).

    Unlike equal-width bins, every point stands on as many items as the next, so no point rests
    on three clips while another holds thousands; the count is there to print beside it."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    columns = ["count", "confidence", "accuracy", "low", "high"]
    if confidence.size == 0:
        return pd.DataFrame(columns=columns)
    order = np.argsort(confidence, kind="stable")
    parts = np.array_split(order, max(1, min(bins, confidence.size // min_count)))
    return pd.DataFrame(
        [
            (len(part), confidence[part].mean(), correct[part].mean(), confidence[part].min(), confidence[part].max())
            for part in parts
        ],
        columns=columns,
    )


def clip_correctness(labels: np.ndarray, p_female: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct, confidence) per clip of calibrated p(female) against 0/1 labels, by the decision rule."""
    predicted, confidence = decide(np.asarray(p_female, dtype=float))
    return predicted == np.asarray(labels).astype(int), confidence


def expected_calibration_error(labels: np.ndarray, p_female: np.ndarray, bins: int = ECE_BINS) -> float:
    """Clip-weighted mean |accuracy - confidence| over the reliability table's bins."""
    table = reliability_table(labels, p_female, bins)
    if table.empty:
        return float("nan")
    weights = table["clips"] / table["clips"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def binary_nll(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean negative log-likelihood of labels (0/1, or soft targets in between) under sigmoid(logits)."""
    labels = np.asarray(labels, dtype=float)
    logits = np.asarray(logits, dtype=float)
    return float(np.mean(np.logaddexp(0, logits) - labels * logits))


MAX_TEMPERATURE = 20.0  # a model this overconfident is broken, not miscalibrated


def fit_temperature(labels: np.ndarray, logits: np.ndarray, lowest: float = 1.0) -> float:
    """The temperature T in [lowest, MAX_TEMPERATURE] that minimises the NLL of sigmoid(logits / T).

    Calibration may only soften a trained network, never sharpen it (lowest 1): on a perfectly separated
    dev set (common with few dev speakers) unconstrained temperature scaling drives T towards 0 and makes
    every later mistake "certain". The NLL is convex in 1/T, so clamping the search gives the constrained
    optimum. (The encoder's heads are shrunk by their weight penalty, so they may be sharpened, to a
    bound: encoder.MIN_TEMPERATURE.) A log grid, then a finer grid around the best.
    """
    labels = np.asarray(labels, dtype=float)
    logits = np.asarray(logits, dtype=float)
    if labels.size == 0 or labels.min() == labels.max():
        return 1.0  # one class only: nothing to calibrate against
    grid = np.exp(np.linspace(np.log(lowest), np.log(MAX_TEMPERATURE), 61))
    for _ in range(2):
        best = int(np.argmin([binary_nll(labels, logits / t) for t in grid]))
        low, high = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
        grid = np.exp(np.linspace(np.log(low), np.log(high), 41))
    return float(grid[int(np.argmin([binary_nll(labels, logits / t) for t in grid]))])


def classification_metrics(
    labels: np.ndarray, logits: np.ndarray, temperature: float, speakers: np.ndarray | None = None
) -> dict:
    """accuracy, balanced_accuracy, roc_auc, per-gender precision/recall, ECE and NLL before and
    after calibration, and speaker-level accuracy (mean logit per speaker)."""
    labels = np.asarray(labels).astype(int)
    logits = np.asarray(logits, dtype=float)
    predicted = decide_logits(logits)
    p_raw, p_cal = sigmoid(logits), sigmoid(logits / temperature)
    metrics: dict[str, Any] = {
        "clips": int(labels.size),
        "accuracy": float((predicted == labels).mean()) if labels.size else float("nan"),
        "balanced_accuracy": balanced_accuracy(labels, predicted),
        "roc_auc": roc_auc(labels, logits),
        "ece_before_calibration": expected_calibration_error(labels, p_raw),
        "ece": expected_calibration_error(labels, p_cal),
        "nll_before_calibration": binary_nll(labels, logits),
        "nll": binary_nll(labels, logits / temperature),
        "temperature": float(temperature),
    }
    for index, gender in enumerate(LABELS):
        chosen, actual = predicted == index, labels == index
        metrics[f"precision_{gender}"] = float((actual & chosen).sum() / chosen.sum()) if chosen.any() else float("nan")
        metrics[f"recall_{gender}"] = float((actual & chosen).sum() / actual.sum()) if actual.any() else float("nan")
    metrics["confusion"] = confusion_matrix(labels, predicted)
    if speakers is not None:
        pooled = pd.DataFrame({"speaker": speakers, "label": labels, "logit": logits}).groupby("speaker")
        per_speaker = pooled.agg(label=("label", "first"), logit=("logit", "mean"))
        speaker_predicted = pd.Series(decide_logits(per_speaker["logit"].to_numpy()), index=per_speaker.index)
        metrics["speakers"] = int(len(per_speaker))
        metrics["speaker_accuracy"] = float((speaker_predicted == per_speaker["label"]).mean())
        metrics["speaker_balanced_accuracy"] = balanced_accuracy(
            per_speaker["label"].to_numpy(), speaker_predicted.to_numpy()
        )
        metrics["speaker_confusion"] = confusion_matrix(per_speaker["label"].to_numpy(), speaker_predicted.to_numpy())
    return metrics


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """counts[true][predicted], rows and columns in LABELS order."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    return [[int(((labels == t) & (predicted == p)).sum()) for p in range(len(LABELS))] for t in range(len(LABELS))]


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the recalls of the classes present."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    recalls = [float((predicted[labels == c] == c).mean()) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else float("nan")
