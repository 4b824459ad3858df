"""The two figures of a training run: a confusion matrix and a reliability diagram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .files import atomic_path  # noqa: E402
from .labels import LABELS  # noqa: E402


def plot_confusion(confusion: list[list[int]], path: str | Path, title: str) -> None:
    """confusion[true][predicted] counts, rows and columns in LABELS order."""
    counts = np.asarray(confusion)
    figure, axes = plt.subplots(figsize=(4, 3.6))
    axes.imshow(counts, cmap="Blues")
    for (row, column), value in np.ndenumerate(counts):
        axes.text(
            column, row, str(value), ha="center", va="center", color="white" if value > counts.max() / 2 else "black"
        )
    axes.set_xticks(range(len(LABELS)), LABELS)
    axes.set_yticks(range(len(LABELS)), LABELS)
    axes.set_xlabel("predicted")
    axes.set_ylabel("self-reported")
    axes.set_title(title)
    _save(figure, path)


def plot_reliability(tables: dict[str, pd.DataFrame], path: str | Path, title: str) -> None:
    """Accuracy against mean confidence per bin, one line per table (e.g. before/after calibration)."""
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.plot([0.5, 1], [0.5, 1], color="grey", linestyle="--", label="perfect calibration")
    for name, table in tables.items():
        axes.plot(table["confidence"], table["accuracy"], marker="o", label=name)
    axes.set_xlim(0.5, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("confidence of the predicted gender")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="lower right")
    _save(figure, path)


def _save(figure: plt.Figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
