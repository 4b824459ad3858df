"""The pages a person reads in a minute: a run's `report.html` (written by `cvlabel train`), an
export's `report.html` (`cvlabel export parquet`), and runs side by side (`cvlabel compare --html`).

Each page is one self-contained HTML file: inline CSS, figures as inline base64 PNGs, no
JavaScript, no network, so it opens in any browser, offline, and can be attached to an issue.
Words first (the headline, then the claims), figures after, each with a caption saying what to
read from it. Every number comes from an artifact the pipeline already wrote, through the
function that made it: metrics.json (confusion, speaker confusion), reference_predictions.parquet
(reliability; pooled by pooling.reference_speakers into the coverage-precision curves of
certify.precision_curves), predictions.parquet (per-speaker confidence), summary.json (counts and
claims). Nothing is computed here a second way.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import RunFolder, read_reference
from .certify import MIN_DEV_BALANCED_ACCURACY, TARGET_LADDER, bound_text, certified_thresholds, precision_curves
from .config import ExportOptions
from .files import write_text
from .labels import BINARY_GENDERS, calibrate, decide, label_index
from .metrics import clip_correctness, equal_count_reliability
from .plots import confidence_histogram_png, confusion_png, coverage_precision_png, reliability_png, write_png
from .pooling import reference_speakers
from .summaries import Claim, Claims, ExportSummary

DEFAULTS = ExportOptions()  # the thresholds a run's page previews are export's defaults


@dataclass(frozen=True)
class Figure:
    title: str
    png: bytes
    caption: str  # what to read from it


# ---- words ---------------------------------------------------------------------------------


def export_headline(summary: ExportSummary) -> str:
    """An export in one sentence: rows labelled, what is certified on how many reference speakers,
    and why the rest stayed blank (summary.json's `blank_rows` and `claims`)."""
    blank = summary["blank_rows"]
    labelled = blank["labelled"]
    words = [
        f"{sum(labelled.values()):,} of {blank['rows']:,} blank rows labelled "
        f"({labelled.get('pseudo', 0):,} pseudo-labels, {labelled.get('speaker', 0):,} from the speaker's own "
        "answer on other rows)"
    ]
    words.append("; ".join(claim_words(gender, claim, summary) for gender, claim in summary["claims"].items()))
    left = blank["left_blank"]
    if left:
        words.append(f"{sum(left.values()):,} left blank: " + ", ".join(f"{n:,} {why}" for why, n in left.items()))
    else:
        words.append("none left blank")
    return "; ".join(words) + "."


def guarantee_sentence(summary: ExportSummary) -> str | None:
    """What a certified claim covers, in one sentence: the method, the population, the clips per
    speaker (summary.json's options, claims and scored_as_blank); None when nothing is certified."""
    certified = [gender for gender, claim in summary["claims"].items() if claim.get("certified")]
    scored = summary.get("scored_as_blank")
    if not certified or not scored:
        return None
    options = summary["options"]
    locales = summary.get("reference_locales")
    where = f" in {len(locales)} locales" if locales else ""
    blank = (f"as many clips each as the release's {scored['blank_speakers']:,} blank speakers have (mean "
             f"{scored['blank_clips_per_speaker']})") if scored["blank_speakers"] else "on all their clips"  # fmt: skip
    return (
        f"Guarantee: with {options['certainty']:.0%} confidence, the precision of the {' and '.join(certified)} "
        f"labels is at least {options['target_precision']}; measured on {scored['reference_speakers']:,} "
        f"self-reported reference speakers{where} that the model never heard, each scored on {blank}; thresholds "
        "by fixed-sequence testing over a grid declared before looking (docs/pipeline.md). It holds for blank "
        "speakers like those reference speakers: same microphones, languages and clip counts."
    )


def claim_words(gender: str, claim: Claim, summary: ExportSummary) -> str:
    """One gender's claim in words (the headline's part, and the export command's line for it)."""
    options = summary["options"]
    behind = f"{claim['reference_speakers']} reference speakers"
    if claim["threshold"] is None:
        reachable = claim.get("certifiable")
        ladder = ", ".join(map(str, TARGET_LADDER))
        hint = (f"; it certifies {reachable['target']}, keeping {reachable['coverage']:.0%} of these speakers' "
                f"clips: --target-precision {reachable['target']}, found by trying {ladder}, so chosen after "
                "looking") if reachable else ""  # fmt: skip
        return (f"no {gender} pseudo-labels: precision {options['target_precision']} cannot be certified on {behind} "
                f"(best lower bound {bound_text(claim['best_lower_bound'])}{hint})")  # fmt: skip
    if claim["speakers"] == 0:
        return f"{gender} threshold {claim['threshold']:.3f}: no reference speaker reaches it, nothing is claimed"
    above = f"the {claim['speakers']} of {behind} above its threshold {claim['threshold']:.3f}"
    if claim["certified"]:
        return (f"{gender}: certified precision ≥ {bound_text(claim['lower_bound'])} (point estimate "
                f"{claim['precision']:.3f}) on {above}")  # fmt: skip
    why = "chosen by hand" if options.get("min_confidence") is not None else "the target was not reachable"
    return (f"{gender}: precision {claim['precision']:.3f} (point estimate; NOT certified, {why}; lower bound "
            f"{bound_text(claim['lower_bound'])}) on {above}")  # fmt: skip


def run_headline(metrics: dict[str, Any], speakers: pd.DataFrame) -> str:
    """A run in words: test accuracy at clip and speaker level, calibration, and what its reference
    speakers would certify at export's default target."""
    words = [
        f"On {metrics['clips']:,} test clips of {metrics.get('speakers', '?')} speakers: accuracy "
        f"{metrics['accuracy']:.3f} (balanced {metrics['balanced_accuracy']:.3f}), speaker accuracy "
        f"{metrics.get('speaker_accuracy', float('nan')):.3f}; calibrated with T = {metrics['temperature']:.2f}, "
        f"expected calibration error {metrics['ece']:.3f} (before: {metrics['ece_before_calibration']:.3f})."
    ]
    claims = certified_thresholds(speakers, DEFAULTS.target_precision, DEFAULTS.certainty)
    parts = []
    for gender, claim in claims.items():
        if claim["threshold"] is None:
            parts.append(f"no {gender} labels (best lower bound {bound_text(claim['best_lower_bound'])} on "
                         f"{claim['reference_speakers']} speakers)")  # fmt: skip
        else:
            parts.append(
                f"{gender} above {claim['threshold']:.3f} ({claim['speakers']} of {claim['reference_speakers']} "
                f"reference speakers, lower bound {bound_text(claim['lower_bound'])})"
            )
    words.append(
        f"Its {len(speakers):,} reference speakers (predicted by models that never heard them) would certify, at "
        f"export's default target precision {DEFAULTS.target_precision} ({DEFAULTS.certainty:.0%} lower bound): "
        + "; ".join(parts) + "."
    )  # fmt: skip
    dev = metrics.get("dev", {}).get("balanced_accuracy", 1.0)
    if not dev >= MIN_DEV_BALANCED_ACCURACY:
        words.append(
            f"WARNING: dev balanced accuracy {dev:.2f} < {MIN_DEV_BALANCED_ACCURACY}: export refuses this model."
        )
    return " ".join(words)


# ---- figures -------------------------------------------------------------------------------


def _confusion_figures(metrics: dict[str, Any]) -> list[Figure]:
    found = [Figure("Test confusion, clips", confusion_png(metrics["confusion"], f"test clips (n={metrics['clips']})"),
                    "Rows: the self-reported gender; columns: the committee's decision for each test clip. "
                    "Off-diagonal cells are the mistakes.")]  # fmt: skip
    if "speaker_confusion" in metrics:
        found.append(Figure("Test confusion, speakers",
                            confusion_png(metrics["speaker_confusion"], f"test speakers (n={metrics['speakers']})"),
                            "The same at speaker level (mean logit of the speaker's clips): mistakes come by whole "
                            "speakers, so this is the matrix a pseudo-label inherits."))  # fmt: skip
    return found


def _coverage_figure(speakers: pd.DataFrame, claims: Claims, target: float | None,
                     certainty: float) -> Figure:  # fmt: skip
    curves = precision_curves(speakers, certainty)
    thresholds = {gender: claim["threshold"] for gender, claim in claims.items()}
    chosen = "The dot is the threshold chosen by hand."
    if target is not None:
        chosen = (
            f"The grey line is the target {target}; the dot is the chosen threshold, the deepest cut whose lower "
            "bound reaches it (or, not certified, whose point estimate does)."
        )
    return Figure(
        "Coverage and precision per gender",
        coverage_precision_png(curves, thresholds, target, "reference speakers, undisputed"),
        "Walking down from the most confident reference speaker: x is the share of that gender's reference clips "
        f"labelled, y the clip-weighted precision (solid) and its one-sided {certainty:.0%} lower bound (dashed). "
        f"{chosen} Labelling more means moving right, where the bound falls.",
    )


def _speaker_reliability_figure(speakers: pd.DataFrame) -> Figure:
    table = equal_count_reliability(speakers["correct"].to_numpy(bool), speakers["confidence"].to_numpy(float))
    return Figure(
        "Reliability, reference speakers",
        reliability_png({"pooled speakers": table}, "reference speakers, equal-count bins", "speakers"),
        "Each point is a bin holding as many reference speakers as the others (the number beside it): its mean "
        "pooled confidence against the share of them decided right. On the diagonal, a speaker confidence of 0.95 "
        "is right 95% of the time; below it, the model is overconfident. Few speakers give few bins.",
    )


def _run_figures(run_dir: Path, metrics: dict[str, Any]) -> tuple[list[Figure], pd.DataFrame]:
    """The run's figures and its reference speakers."""
    run = RunFolder(run_dir)
    reference = read_reference(run.reference)
    speakers = reference_speakers(reference, metrics["temperature"])
    labels = label_index(reference["gender"])
    logits = reference["logit"].to_numpy(dtype=float)
    before = equal_count_reliability(*clip_correctness(labels, calibrate(logits, 1.0)))
    after = equal_count_reliability(*clip_correctness(labels, reference["p_female"].to_numpy(dtype=float)))
    reliability = Figure(
        "Reliability, held-out clips",
        reliability_png(
            {"before calibration": before, f"after (T={metrics['temperature']:.2f})": after},
            f"held-out clips (n={len(reference):,}), equal-count bins",
            "clips",
        ),  # fmt: skip
        "Every labelled clip, predicted by a model that never heard its speaker (train speakers out of fold, dev "
        "and test by the committee), cut into bins of equal count (the numbers beside the points). Points on the "
        "diagonal: a confidence of 0.9 is right 90% of the time. The temperature was fitted on the out-of-fold "
        "and dev clips, so 'after' is close to the diagonal by construction there; test is the honest part.",
    )
    claims = certified_thresholds(speakers, DEFAULTS.target_precision, DEFAULTS.certainty)
    figures = [
        _coverage_figure(speakers, claims, DEFAULTS.target_precision, DEFAULTS.certainty),
        reliability,
        _speaker_reliability_figure(speakers),
        Figure(
            "Per-speaker confidence, reference speakers",
            confidence_histogram_png(_by_outcome(speakers), {}, "reference speakers"),
            "How sure the committee is of each reference speaker, and whether it was right: wrong speakers far to "
            "the right are confident mistakes, the ones a threshold cannot remove.",
        ),
        *_confusion_figures(metrics),
    ]
    return figures, speakers


def _by_outcome(speakers: pd.DataFrame) -> dict[str, np.ndarray]:
    disputed = speakers["disputed"].astype(bool)
    correct = speakers["correct"].astype(bool)
    return {
        "right": speakers.loc[correct & ~disputed, "confidence"].to_numpy(),
        "wrong": speakers.loc[~correct & ~disputed, "confidence"].to_numpy(),
        "disputed": speakers.loc[disputed, "confidence"].to_numpy(),
    }


# ---- pages ---------------------------------------------------------------------------------


def write_run_report(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """A run's confusion.png, reliability.png and report.html, from its metrics and reference_predictions.parquet."""
    run = RunFolder(run_dir)
    figures, speakers = _run_figures(run.path, metrics)
    by_title = {figure.title: figure for figure in figures}
    write_png(by_title["Test confusion, clips"].png, run.confusion_plot)
    write_png(by_title["Reliability, held-out clips"].png, run.reliability_plot)
    splits = metrics.get("splits", {})
    facts = [f"{split}: {part['speakers']} speakers, {part['clips']:,} clips" for split, part in splits.items()]
    body = [_paragraph(run_headline(metrics, speakers), "headline"), _list(facts), _figures(figures)]
    write_text(run.report, _page(f"cvlabel training run: {run.path.name}", body))


def write_export_report(
    path: str | Path,
    summary: ExportSummary,
    speakers: pd.DataFrame,
    predictions: pd.DataFrame,
    run_metrics: dict[str, Any] | None,
) -> None:
    """An export's report.html: its headline and claims, the curves its thresholds were chosen on, the
    blank speakers' confidence, the model's test confusion (when its run folder's metrics.json is there)."""
    options = summary["options"]
    target = None if options.get("min_confidence") is not None else options["target_precision"]
    thresholds = {gender: claim["threshold"] for gender, claim in summary["claims"].items()}
    model = predictions[predictions["label_source"].eq("model")]
    blank_speakers = model.groupby("client_id").agg(p=("speaker_p_female", "first"),
                                                    disputed=("speaker_disputed", "first"))  # fmt: skip
    predicted, confidence = decide(blank_speakers["p"].to_numpy(dtype=float))
    disputed = blank_speakers["disputed"].to_numpy(dtype=bool)
    groups = {
        f"{gender}, undisputed": confidence[(predicted == k) & ~disputed] for k, gender in enumerate(BINARY_GENDERS)
    }
    groups["disputed (never labelled)"] = confidence[disputed]
    figures = [
        _coverage_figure(speakers, summary["claims"], target, options["certainty"]),
        Figure(
            "Per-speaker confidence, blank speakers",
            confidence_histogram_png(groups, thresholds, "speakers of the blank rows (predictions.parquet)"),
            "Each blank-row speaker the model labels, by its pooled confidence. Speakers right of their gender's "
            "dashed threshold are pseudo-labelled; disputed speakers never are, however confident.",
        ),
        _speaker_reliability_figure(speakers),
    ]
    if run_metrics is not None:
        figures += _confusion_figures(run_metrics)
    claims = [
        [gender, _number(c["threshold"]), "yes" if c["certified"] else "no", _number(c["lower_bound"]),
         _number(c["precision"]), f"{c['speakers']} of {c['reference_speakers']}"]
        for gender, c in summary["claims"].items()
    ]  # fmt: skip
    rows = [f"{name}.parquet: {n:,} rows" for name, n in summary.get("rows", {}).items()]
    body = [
        _paragraph(export_headline(summary), "headline"),
        _table(["gender", "threshold", "certified", "lower bound", "precision", "reference speakers above"], claims),
        *([_paragraph(sentence)] if (sentence := guarantee_sentence(summary)) else []),
        _paragraph(f"Rule: {_without_folders(summary['rule'], summary)}."),
        _list(rows + [f"model {_shown(summary['model'])} (sha256 {summary['model_sha256'][:12]}…)"]),
        _figures(figures),
    ]
    if run_metrics is None:
        body.append(_paragraph("The model's run folder has no metrics.json here: no test confusion to show."))
    write_text(Path(path), _page(f"cvlabel export ({summary['layout']} layout)", body))


def _shown(path: str | Path) -> str:
    """A path as a page shows it: its folder and file names, not the folders of the user's machine (a page is
    attached to an issue as it is). summary.json keeps the whole path."""
    path = Path(path)
    return str(Path(path.parent.name, path.name)) if path.parent.name else path.name


def _without_folders(text: str, summary: ExportSummary) -> str:
    """`text` with the summary's own paths (model, corpus, reference) shown as _shown does."""
    for path in (summary.get("model"), summary.get("corpus"), summary.get("reference")):
        if path:
            text = text.replace(path, _shown(path))
    return text


def compare_page(run_dirs: list[Path], table: pd.DataFrame, notes: list[str], metrics: list[dict[str, Any]]) -> str:
    """Runs side by side: the metrics table of `cvlabel compare`, then each run's figures in a column."""
    shown = {str(run_dir): _shown(run_dir) for run_dir in run_dirs}  # the run folders as the page names them
    table = table.rename(columns=lambda column: shown.get(column, column))
    for long, short in shown.items():
        notes = [note.replace(long, short) for note in notes]
    first, last = metrics[0], metrics[-1]
    words = [
        f"{Path(run_dirs[-1]).name} against {Path(run_dirs[0]).name}: balanced accuracy "
        f"{first['balanced_accuracy']:.3f} → {last['balanced_accuracy']:.3f}, speaker accuracy "
        f"{first.get('speaker_accuracy', float('nan')):.3f} → {last.get('speaker_accuracy', float('nan')):.3f}, "
        f"ECE {first['ece']:.3f} → {last['ece']:.3f}, train clips "
        f"{first.get('splits', {}).get('train', {}).get('clips', '?')} → "
        f"{last.get('splits', {}).get('train', {}).get('clips', '?')}."
    ]
    columns = [
        _run_figures(Path(run_dir), run_metrics)[0] for run_dir, run_metrics in zip(run_dirs, metrics, strict=True)
    ]
    grid = ['<div class="grid">']
    for run_dir, figures in zip(run_dirs, columns, strict=True):
        grid.append(f"<div><h2>{html.escape(_shown(run_dir))}</h2>{''.join(map(_figure, figures))}</div>")
    grid.append("</div>")
    body = [_paragraph(" ".join(words), "headline"), *(_paragraph(note, "warning") for note in notes),
            table.to_html(border=0, classes="metrics"), "".join(grid)]  # fmt: skip
    return _page("cvlabel compare", body)


# ---- HTML ----------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
.headline { font-size: 1.25em; font-weight: 600; }
.warning { color: #a40000; }
figure { margin: 2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { max-width: 46em; color: #444; } h2 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 0 2em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1em; }
"""


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _figures(figures: list[Figure]) -> str:
    return '<div class="figures">' + "".join(map(_figure, figures)) + "</div>"


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    title = html.escape(figure.title)
    return (
        f'<figure><h2>{title}</h2><img alt="{title}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    )


def _paragraph(text: str, kind: str = "") -> str:
    return f'<p class="{kind}">{html.escape(text)}</p>' if kind else f"<p>{html.escape(text)}</p>"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{cells}</table>"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
