"""The model's classes and the one decision rule behind every label cvlabel writes (no torch).

The model outputs one logit, evidence for LABELS[1] (female); p_female = sigmoid(logit / T).
"""

from __future__ import annotations

import numpy as np

BINARY_GENDERS = ("male", "female")  # the only values a pseudo-label takes
LABELS = BINARY_GENDERS  # the model's classes by index: its logit is evidence for index 1, female
FEMALE = LABELS.index("female")


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=float), -60, 60)))


def calibrate(logits: np.ndarray | float, temperature: float) -> np.ndarray:
    """Calibrated probability of female for raw logits: sigmoid(logit / T)."""
    return sigmoid(np.asarray(logits, dtype=float) / temperature)


def decide(p_female: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class (1, female, where p_female >= 0.5) and its confidence max(p, 1 - p).

    A logit decides the same way: p_female >= 0.5 exactly where logit >= 0. A NaN probability
    gives class 0 and a NaN confidence; callers mask their error rows.
    """
    p_female = np.asarray(p_female, dtype=float)
    return (p_female >= 0.5).astype(int), np.maximum(p_female, 1 - p_female)


def decide_logits(logits: np.ndarray) -> np.ndarray:
    """The predicted class of raw logits (the same rule as decide, before calibration)."""
    return decide(sigmoid(logits))[0]


def label_index(genders: object) -> np.ndarray:
    """0/1 class indices of male/female strings (a pandas Series or a sequence)."""
    return (np.asarray(genders, dtype=object) == LABELS[FEMALE]).astype(int)


def label_names(indices: np.ndarray) -> np.ndarray:
    """male/female strings of 0/1 class indices."""
    return np.asarray(LABELS, dtype=object)[np.asarray(indices, dtype=int)]


def or_null(condition: object, values: object) -> np.ndarray:
    """`values` where `condition` holds and None (a Parquet null) elsewhere, as an object array."""
    return np.where(np.asarray(condition, dtype=bool), np.asarray(values, dtype=object), np.array(None, dtype=object))
