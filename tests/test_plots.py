"""The report figures, checked for what a reader saw wrong: overprinted labels, a legend over the
curves, marks hidden under marks, axes past 1, fractional counts of speakers."""

import numpy as np
import pandas as pd

from cvlabel.plots import (
    confidence_histogram_figure,
    coverage_precision_figure,
    coverage_precision_png,
    reliability_figure,
)


def boxes(figure, texts):
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    return [text.get_window_extent(renderer) for text in texts]


def curve(low: float) -> pd.DataFrame:
    coverage = np.linspace(0.05, 1.0, 20)
    precision = 1.0 - (1 - low) * coverage
    return pd.DataFrame(
        {"coverage": coverage, "precision": precision, "lower_bound": precision - 0.02, "threshold": 1 - coverage / 2}
    )


def test_the_two_genders_threshold_labels_and_marks_never_cover_each_other():
    # both genders' chosen thresholds at the same point of the plot: the worst case
    curves = {"male": curve(0.9), "female": curve(0.9)}
    thresholds = {"male": float(curves["male"]["threshold"][9]), "female": float(curves["female"]["threshold"][9])}
    figure = coverage_precision_figure(curves, thresholds, 0.95, "t")
    axes = figure.axes[0]
    labels = [t for t in axes.texts if "threshold" in t.get_text()]
    assert len(labels) == 2
    first, second = boxes(figure, labels)
    assert not first.overlaps(second)
    marks = [line for line in axes.lines if line.get_marker() not in ("None", None, "")]
    assert len({line.get_marker() for line in marks}) == 2  # one never hides under the other
    # the legend sits below the axes, not over the curves
    legend = boxes(figure, [axes.get_legend()])[0]
    assert legend.y1 <= axes.get_window_extent().y0
    # the target line is drawn under the curves
    target = [line for line in axes.lines if str(line.get_label()).startswith("target")][0]
    assert all(target.get_zorder() < line.get_zorder() for line in axes.lines if line is not target)
    assert coverage_precision_png(curves, thresholds, 0.95, "t")[:4] == b"\x89PNG"


def test_a_reliability_diagram_ends_at_one_and_prints_no_count_on_its_points():
    table = pd.DataFrame(
        {"confidence": [0.9, 0.97, 0.99, 0.995, 1.0], "accuracy": [0.88, 0.96, 1.0, 1.0, 1.0], "count": [24] * 5}
    )
    figure = reliability_figure({"pooled speakers": table}, "t", "speakers")
    axes = figure.axes[0]
    low, high = axes.get_ylim()
    assert low >= 0 and high == 1.0
    assert axes.get_xlim()[1] == 1.0
    assert not axes.texts  # counts on crowded points overprinted ("2424242428"): the legend says it once
    legend = axes.get_legend()
    assert legend is not None and "5 bins of 24 speakers" in legend.get_texts()[1].get_text()
    empty = reliability_figure({"pooled speakers": table.iloc[:0]}, "t", "speakers")  # no reference speakers
    empty_legend = empty.axes[0].get_legend()
    assert empty_legend is not None and "0 bins" in empty_legend.get_texts()[1].get_text()
    one = reliability_figure({"pooled speakers": table.iloc[:1]}, "t", "speakers").axes[0].get_legend()
    assert one is not None and "(1 bin of 24 speakers)" in one.get_texts()[1].get_text()


def test_a_histogram_of_speakers_has_whole_numbers_on_its_count_axis():
    rng = np.random.default_rng(0)
    figure = confidence_histogram_figure({"right": rng.uniform(0.5, 1, 13), "wrong": rng.uniform(0.5, 1, 2)}, {}, "t")
    figure.canvas.draw()
    ticks = figure.axes[0].get_yticks()
    assert len(ticks) >= 2 and np.allclose(ticks, np.round(ticks))
