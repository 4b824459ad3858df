"""An export's input: the release and its predictions, checked against each other, with every row
labelled by labelling's rule once for every format (`label_release`).

Checks before any label: the predictions are `infer --unlabeled`'s for this release as it is now (its
TSVs' fingerprint), the model is not near chance, and the reference the claims rest on is clean (a
run's own out-of-fold reference, an `infer --split dev|test` folder, or with the base model `--split
all`). Then the thresholds are chosen (labelling.choose_claims) and the rows labelled
(labelling.label_blank_rows). The formats (export.py) only lay out and write the result.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import (
    EXPORT_LAYOUTS,
    REFERENCE_SCHEMA,
    ExportFolder,
    RunFolder,
    read_metrics,
    read_predictions,
    read_reference,
)
from .certify import MIN_DEV_BALANCED_ACCURACY
from .checkpoint import heard_before, read_checkpoint_info, run_config
from .config import Config, ExportOptions
from .corpus import BINARY_GENDER_NAMES, read_release, release_fingerprint
from .errors import CvlabelError
from .html_report import write_export_report
from .labelling import (
    FILLED_SOURCES,
    PSEUDO,
    blank_clips_per_speaker,
    blank_row_summary,
    choose_claims,
    label_blank_rows,
    reference_for_claims,
    reference_locales,
)
from .labels import BINARY_GENDERS
from .pooling import reference_speakers as pooled_reference
from .summaries import BlankRows, Claims, ExportMetadata, ExportSummary, FormatCounts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledRelease:
    """A release read for export, with every row labelled by labelling's rule (label_blank_rows)."""

    corpus_dir: Path
    manifest: pd.DataFrame  # as read: the self-reported genders only
    rows: pd.DataFrame  # the manifest's rows with gender filled where accepted, and the label columns
    plan: dict[str, Any]  # the predictions folder's plan.json
    config: Config  # the model run's config
    claims: Claims  # per gender: the threshold and what the reference certifies of it
    metadata: ExportMetadata  # the run's provenance: model hash, temperature, thresholds, options
    rule: str  # how the thresholds were chosen, in words
    reference_speakers: pd.DataFrame  # the pooled reference speakers the thresholds were chosen on
    predictions: pd.DataFrame  # the predictions folder's predictions.parquet
    blank_rows: BlankRows  # the blank rows of the TSVs infer read: how many, labelled how, left blank why

    def summary(self, exported: pd.DataFrame, own: FormatCounts) -> ExportSummary:
        """summary.json of an export of the rows `exported`: what every export states (provenance, claims,
        the rule, the labels given, the blank rows) and the export's `own` keys."""
        return {
            **self.metadata,
            "claims": self.claims,
            "rule": self.rule,
            **own,
            "pseudo_labels": pseudo_label_counts(exported),
            "blank_rows": self.blank_rows,
        }


def label_release(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    options: ExportOptions,
    reference: str | Path | None,
    layout: str,
) -> LabelledRelease:
    """Check the predictions against the release, choose the thresholds, label every row."""
    corpus_dir = Path(corpus_dir)
    _check_options(options)
    predictions, plan = read_predictions(predictions_dir)
    if plan.get("selection") != "unlabeled":
        raise CvlabelError(
            f"{predictions_dir} holds predictions of the {plan.get('selection')!r} split; "
            "export needs those of 'cvlabel infer --unlabeled'"
        )
    if Path(plan["corpus"]) != corpus_dir.resolve():
        raise CvlabelError(f"{predictions_dir} was made for the corpus {plan['corpus']}, not {corpus_dir.resolve()}")
    _check_unchanged(corpus_dir, predictions_dir, plan)
    config = run_config(plan["model"])

    manifest = read_release(corpus_dir)
    unknown = set(predictions["path"]) - set(manifest.loc[manifest["gender"].isna(), "path"])
    if unknown:
        raise CvlabelError(
            f"{predictions_dir} predicts clips that are not blank-gender rows of {corpus_dir} "
            f"(e.g. {sorted(unknown)[0]}); was it made for another corpus or release?"
        )
    checkpoint = read_checkpoint_info(plan["model"])
    dev_balanced_accuracy = checkpoint.info.get("dev_balanced_accuracy", 1.0)
    if not dev_balanced_accuracy >= MIN_DEV_BALANCED_ACCURACY and not options.allow_weak_model:
        raise CvlabelError(
            f"{plan['model']} is near chance on its dev speakers (balanced accuracy {dev_balanced_accuracy:.2f} < "
            f"{MIN_DEV_BALANCED_ACCURACY}): its labels are not usable; retrain it, or pass --allow-weak-model"
        )
    reference_path = Path(reference or RunFolder(Path(plan["model"]).parent).reference)
    blank_clips = blank_clips_per_speaker(predictions, manifest)
    if reference is None and checkpoint.info.get("base_model"):
        if options.min_confidence is None:
            raise CvlabelError(
                "the base model never heard this release, so its claims rest on the release's own self-reported "
                f"speakers: run 'cvlabel infer {corpus_dir} --split all --model base --out REF' and pass "
                "--reference REF (or choose a threshold yourself with --min-confidence)"
            )
        reference_rows = REFERENCE_SCHEMA.empty_table().to_pandas()  # --min-confidence: nothing to certify on
        reference_speakers = pooled_reference(reference_rows, checkpoint.temperature)
    else:
        reference_rows = _reference_rows(reference_path, plan["model_sha256"])
        reference_speakers = reference_for_claims(
            reference_rows, checkpoint.temperature, heard_before(checkpoint.info), blank_clips
        )
    claims = choose_claims(options, reference_speakers)
    thresholds = {gender: claim["threshold"] for gender, claim in claims.items()}
    locales = reference_locales(manifest, reference_speakers)
    # a claim speaks for the locales its reference speakers cover (a threshold the user chose, or an
    # uncertified one they accepted, claims nothing)
    certifying = options.min_confidence is None and not options.accept_uncertified
    rows = manifest.copy()
    label_blank_rows(rows, manifest, predictions, thresholds, plan["tsvs"], locales if certifying else None)
    metadata: ExportMetadata = {
        "layout": layout,
        "model_sha256": plan["model_sha256"],
        "model": plan["model"],
        "temperature": checkpoint.temperature,
        "corpus": plan["corpus"],
        "tsvs_sha256": plan.get("tsvs_sha256"),
        "reference": str(reference_path) if options.min_confidence is None else None,  # what claims were chosen on
        "committee_clips": plan.get("committee_clips"),  # how infer shared the committee (clip p_female)
        "thresholds": thresholds,
        "reference_locales": locales,  # reference speakers per locale (null: a release of one locale)
        # what the claims were measured on: reference speakers scored on as many clips as the blank speakers have
        "scored_as_blank": {
            "blank_speakers": len(blank_clips),
            "blank_clips_per_speaker": round(float(blank_clips.mean()), 2) if len(blank_clips) else None,
            "reference_speakers": len(reference_speakers),
            "reference_clips_per_speaker": round(float(reference_speakers["clips"].mean()), 2)
            if len(reference_speakers)
            else None,
        },
        "options": {k: v for k, v in asdict(options).items() if k != "layout"},  # the layout is above
    }
    rule = _rule(options, reference_path)
    blank_rows = blank_row_summary(rows[rows["source_tsv"].isin(plan["tsvs"])], manifest)
    return LabelledRelease(
        corpus_dir, manifest, rows, plan, config, claims, metadata, rule, reference_speakers, predictions, blank_rows
    )


def write_report(folder: ExportFolder, labelled: LabelledRelease, summary: ExportSummary) -> None:
    """The export's report.html (every format writes one): headline, claims, figures."""
    run_metrics = _run_metrics(labelled.plan["model"])
    write_export_report(folder.report, summary, labelled.reference_speakers, labelled.predictions, run_metrics)


def _run_metrics(model: str) -> dict[str, Any] | None:
    """The model's run's metrics.json, for the report's confusion matrices; None for a lone checkpoint."""
    try:
        return read_metrics(Path(model).parent)
    except CvlabelError:
        return None


def _check_unchanged(corpus_dir: Path, predictions_dir: str | Path, plan: dict[str, Any]) -> None:
    """Refuse a release whose TSVs changed since `cvlabel infer` read them (plan.json's fingerprint)."""
    made_from, now = plan.get("tsvs_sha256"), release_fingerprint(corpus_dir)
    if made_from is None:
        log.warning("%s was made by an older cvlabel: cannot check that %s is unchanged since", predictions_dir,
                    corpus_dir)  # fmt: skip
        return
    changed = sorted(name for name in made_from.keys() | now.keys() if made_from.get(name) != now.get(name))
    if changed:
        raise CvlabelError(
            f"{corpus_dir}: {', '.join(changed)} changed since 'cvlabel infer' made {predictions_dir}; "
            "run 'cvlabel infer' again to label the release as it is now (into the same --out folder where the "
            "blank rows are unchanged, else into a new one)"
        )


def release_genders(rows: pd.DataFrame, vocabulary: str) -> pd.Series:
    """Each row's gender as the release writes it (the TSV export's value): the TSV's own string, or
    for a filled blank row the label in the release's `vocabulary` (corpus.gender_vocabulary)."""
    filled = rows["gender_source"].isin(FILLED_SOURCES)
    return rows["gender_raw"].where(~filled, rows["gender"].map(BINARY_GENDER_NAMES[vocabulary]))


def pseudo_label_counts(rows: pd.DataFrame) -> dict[str, int]:
    return {g: int(((rows["gender_source"] == PSEUDO) & (rows["gender"] == g)).sum()) for g in BINARY_GENDERS}


def reason_counts(reasons: pd.Series) -> dict[str, int]:
    return {k: int(v) for k, v in reasons.value_counts().items()}


def _rule(options: ExportOptions, reference_path: Path) -> str:
    if options.min_confidence is not None:
        return f"min_confidence {options.min_confidence} (chosen by the user, not certified)"
    return (
        f"per gender, the lowest speaker confidence whose clip-weighted precision over the reference speakers "
        f"({reference_path}) reaches {options.target_precision} as a one-sided {options.certainty:.0%} lower bound"
        + ("; where none does, the point estimate (not certified)" if options.accept_uncertified else "")
    )


def _reference_rows(path: Path, model_sha256: str) -> pd.DataFrame:
    """Reference rows: the run's reference_predictions.parquet, or a `cvlabel infer --split` folder."""
    if path.is_dir():
        frame, plan = read_predictions(path)
        heard_nobody = read_checkpoint_info(plan["model"]).info.get("base_model", False)  # never heard this release
        if plan.get("selection") not in ("dev", "test", *(("all",) if heard_nobody else ())):
            raise CvlabelError(
                f"{path}: reference predictions must come from 'cvlabel infer --split dev|test' (a run's own "
                "model heard its train speakers), or '--split all' with --model base"
            )
        if plan["model_sha256"] != model_sha256:
            raise CvlabelError(f"{path}: reference predictions were made by another model")
        manifest = read_release(plan["corpus"])
        return frame.merge(manifest[["path", "gender"]], on="path")
    if not path.is_file():
        raise CvlabelError(
            f"{path}: no reference predictions to choose thresholds on; pass --min-confidence, "
            "or --reference with a 'cvlabel infer --split test' folder"
        )
    return read_reference(path)


def _check_options(options: ExportOptions) -> None:
    if options.layout not in EXPORT_LAYOUTS:
        raise CvlabelError(f"--layout must be one of {', '.join(EXPORT_LAYOUTS)}, got {options.layout!r}")
    if options.min_confidence is not None and not 0.5 < options.min_confidence <= 1:
        raise CvlabelError(f"--min-confidence must be in (0.5, 1], got {options.min_confidence}")
    if not 0.5 < options.target_precision <= 1:
        raise CvlabelError(f"--target-precision must be in (0.5, 1], got {options.target_precision}")
    if not 0.5 < options.certainty < 1:
        raise CvlabelError(f"--certainty must be in (0.5, 1), got {options.certainty}")
    if not 0 < options.female_share < 1:
        raise CvlabelError(f"--female-share must be in (0, 1), got {options.female_share}")
