"""The figures of the reports, as PNG bytes: confusion matrices, reliability diagrams with
equal-count bins, coverage-precision curves, per-speaker confidence histograms.

Each function takes numbers already computed elsewhere (metrics, certify, pooling) and only
draws them; `write_png` puts the bytes in a file atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .files import atomic_path  # noqa: E402
from .labels import LABELS  # noqa: E402

DPI = 100  # a page of six figures stays well under 1 MB
GENDER_COLORS = {"male": "#1f77b4", "female": "#d62728"}


def confusion_png(confusion: list[list[int]], title: str) -> bytes:
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
    return _png(figure)


def reliability_png(tables: dict[str, pd.DataFrame], title: str, unit: str) -> bytes:
    return _png(reliability_figure(tables, title, unit))


def reliability_figure(tables: dict[str, pd.DataFrame], title: str, unit: str) -> plt.Figure:
    """Accuracy against mean confidence per equal-count bin (metrics.equal_count_reliability), one
    line per table (e.g. before/after calibration); how many items a bin holds is in the legend (the
    bins hold equal counts, so one number says it: labels on crowded points overprinted)."""
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    axes.plot([0.5, 1], [0.5, 1], color="grey", linestyle="--", label="perfect calibration")
    for name, table in tables.items():
        counts = sorted({int(c) for c in table["count"]}) or [0]  # no bins: no reference speakers
        held = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        axes.plot(table["confidence"], table["accuracy"], marker="o", clip_on=False,
                  label=f"{name} ({len(table)} bin{'s' * (len(table) != 1)} of {held} {unit})")  # fmt: skip
    # zoomed to where the bins are (a good model's bins crowd near 1), in steps of 0.05, never below 0.5;
    # the axes end at 1 (a share cannot pass it), the points on the edge drawn whole (clip_on above)
    points = [v for table in tables.values() for v in (*table["confidence"], *table["accuracy"])]
    low = max(0.5, np.floor(min(points, default=0.5) * 20) / 20 - 0.05)
    axes.set_xlim(low, 1.0)
    axes.set_ylim(max(0.0, min(low, min(points, default=0.5) - 0.05)), 1.0)
    axes.set_xlabel(f"mean confidence in the bin ({unit})")
    axes.set_ylabel(f"share of {unit} right")
    axes.set_title(title)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def coverage_precision_png(
    curves: dict[str, pd.DataFrame], thresholds: Mapping[str, float | None], target: float | None, title: str
) -> bytes:
    return _png(coverage_precision_figure(curves, thresholds, target, title))


# Where each gender's chosen threshold is marked: the two marks differ in shape and size, so one never hides
# the other, and their labels sit on opposite sides of their dots
LABEL_BOX = {
    "boxstyle": "round,pad=0.2",
    "facecolor": "white",
    "edgecolor": "none",
    "alpha": 0.85,
}  # legible on a curve
CURVE_WIDTHS = {"male": 3.0, "female": 1.5}  # two curves at one precision (often 1.0): both stay visible
THRESHOLD_MARKS = {"male": ("o", 11, (8, -16)), "female": ("D", 6, (-8, 10))}


def coverage_precision_figure(
    curves: dict[str, pd.DataFrame], thresholds: Mapping[str, float | None], target: float | None, title: str
) -> plt.Figure:
    """Per gender, precision (point estimate, and its one-sided lower bound dashed) against the
    coverage of the gender's reference clips (certify.precision_curves); the chosen threshold as a
    dot, the target precision as a grey line under the curves; the legend below the axes."""
    figure, axes = plt.subplots(figsize=(6, 5.2))
    for gender, curve in curves.items():
        color = GENDER_COLORS.get(gender)
        width = CURVE_WIDTHS.get(gender, 1.5)
        axes.step(curve["coverage"], curve["precision"], where="post", color=color, label=f"{gender}: precision",
                  linewidth=width, zorder=3)  # fmt: skip
        axes.step(curve["coverage"], curve["lower_bound"], where="post", color=color, linestyle="--",
                  label=f"{gender}: lower bound", linewidth=width, zorder=3)  # fmt: skip
        threshold = thresholds.get(gender)
        chosen = curve[curve["threshold"] == threshold] if threshold is not None else curve.iloc[:0]
        if len(chosen):
            point = chosen.iloc[0]
            marker, size, offset = THRESHOLD_MARKS.get(gender, ("o", 9, (8, -16)))
            axes.plot(point["coverage"], point["lower_bound"], marker=marker, markersize=size, color=color,
                      markerfacecolor="none" if marker == "o" else color, markeredgewidth=2, zorder=4)  # fmt: skip
            axes.annotate(f"{gender} threshold {threshold:.3f}", (point["coverage"], point["lower_bound"]),
                          textcoords="offset points", xytext=offset, fontsize=8, color=color,
                          ha="left" if offset[0] > 0 else "right", zorder=5, bbox=LABEL_BOX)  # fmt: skip
    if target is not None:
        axes.axhline(target, color="grey", linewidth=2.5, alpha=0.5, label=f"target {target}", zorder=1)
    axes.set_xlim(0, 1.02)
    axes.set_ylim(max(0.0, min([0.5] + [float(c["lower_bound"].min()) for c in curves.values() if len(c)])), 1.01)
    axes.set_xlabel("coverage: share of the gender's reference clips labelled")
    axes.set_ylabel("clip-weighted speaker precision")
    axes.set_title(title)
    # below the axes: inside, it covered the curves' low-coverage part
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8, frameon=False)
    return figure


def confidence_histogram_png(
    groups: dict[str, np.ndarray], thresholds: Mapping[str, float | None], title: str
) -> bytes:
    return _png(confidence_histogram_figure(groups, thresholds, title))


def confidence_histogram_figure(
    groups: dict[str, np.ndarray], thresholds: Mapping[str, float | None], title: str
) -> plt.Figure:
    """Stacked histogram of per-speaker confidence, one colour per group, thresholds as vertical lines."""
    figure, axes = plt.subplots(figsize=(6, 4))
    edges = [float(x) for x in np.linspace(0.5, 1.0, 26)]
    present = {name: np.clip(np.asarray(values, dtype=float), 0.5, 1.0) for name, values in groups.items()}
    axes.hist(list(present.values()), bins=edges, stacked=True,
              label=[f"{name} ({len(values)})" for name, values in present.items()])  # fmt: skip
    for gender, threshold in thresholds.items():
        if threshold is not None:
            axes.axvline(threshold, color=GENDER_COLORS.get(gender, "black"), linestyle="--",
                         label=f"{gender} threshold {threshold:.3f}")  # fmt: skip
    axes.set_xlim(0.5, 1.0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # speakers come whole
    axes.set_xlabel("speaker's pooled confidence")
    axes.set_ylabel("speakers")
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def write_png(data: bytes, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _png(figure: plt.Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")  # the legend below an axes too
    plt.close(figure)
    return buffer.getvalue()
