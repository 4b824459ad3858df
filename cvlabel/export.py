"""`cvlabel export parquet` and `cvlabel export tsv`: the release with self-reported and pseudo labels.

Both label the rows by one rule (`label_release`): a blank row takes a pseudo-label where its
speaker is undisputed and at or above its gender's certified threshold, or the speaker's own
answer on other rows (`speaker`); nothing self-reported or opted out is ever changed. Then:

- `export parquet` (the classifier layout, the default) writes train/dev/test/unused.parquet for
  training a gender classifier:
  - dev and test hold the self-reported male/female rows of the model run's dev and test
    speakers: the same untouched evaluation data as training used. Pseudo-labels go to train only.
  - train holds the train speakers' male/female rows: self-reported, `speaker`, or `pseudo`; at
    most splits.max_clips_per_speaker per speaker; optionally rebalanced to a target female share.
  - unused holds the rest, with `unused_reason`.
- `export parquet --layout release` keeps every row, in the release's own train/dev/test split
  (the other rows in validated/other/invalidated.parquet): cap and rebalance become a
  `sample_weight` column instead of moving rows.
- `export tsv` writes the release's own TSVs with the blank genders filled in the release's
  vocabulary, byte for byte otherwise, and a link to its clips (artifacts.write_augmented_tsv).

Each Parquet file keeps every column of the release (the TSV's gender string in `gender_raw`,
untouched) plus artifacts.EXPORT_LABEL_COLUMNS.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .artifacts import (
    EXPORT_LAYOUTS,
    EXPORT_SPLITS,
    LHOTSE_CUSTOM_COLUMNS,
    LHOTSE_LABEL_COLUMNS,
    REFERENCE_SCHEMA,
    RELEASE_LAYOUT_FILES,
    ExportFolder,
    RunFolder,
    export_table,
    lhotse_manifest,
    read_metrics,
    read_predictions,
    read_reference,
    write_augmented_tsv,
    write_export_split,
)
from .cache import AudioCache, cache_root
from .certify import MIN_DEV_BALANCED_ACCURACY
from .checkpoint import heard_before, read_checkpoint_info, run_config
from .config import Config, ExportOptions
from .corpus import (
    BINARY_GENDER_NAMES,
    RELEASE_TSVS,
    SPLIT_TSVS,
    clips_dir,
    gender_vocabulary,
    read_release,
    release_fingerprint,
)
from .errors import CvlabelError
from .files import atomic_folder, write_json
from .html_report import write_export_report
from .labelling import (
    FILLED_SOURCES,
    INHERITED,
    PSEUDO,
    SELF_REPORTED,
    BlankReason,
    blank_clips_per_speaker,
    blank_row_summary,
    choose_claims,
    label_blank_rows,
    reference_for_claims,
    reference_locales,
)
from .labels import BINARY_GENDERS
from .pooling import reference_speakers as pooled_reference
from .splits import assign_splits

log = logging.getLogger(__name__)

SOURCE_ORDER = {SELF_REPORTED: 0, INHERITED: 1, PSEUDO: 2}  # who is kept first when capping or rebalancing
CLIPS_MODES = ("link", "copy", "none")  # how `export tsv` gives its release the clips
LHOTSE_INSTALL = "pip install 'cvlabel[lhotse]'"  # lhotse is an optional extra, imported by `export lhotse` only


@dataclass(frozen=True)
class LabelledRelease:
    """A release read for export, with every row labelled by the one rule (`_label_rows`)."""

    corpus_dir: Path
    manifest: pd.DataFrame  # as read: the self-reported genders only
    rows: pd.DataFrame  # the manifest's rows with gender filled where accepted, and the label columns
    plan: dict[str, Any]  # the predictions folder's plan.json
    config: Config  # the model run's config
    claims: dict[str, dict[str, Any]]  # per gender: the threshold and what the reference certifies of it
    metadata: dict[str, Any]  # the run's provenance: model hash, temperature, thresholds, options
    rule: str  # how the thresholds were chosen, in words
    reference_speakers: pd.DataFrame  # the pooled reference speakers the thresholds were chosen on
    predictions: pd.DataFrame  # the predictions folder's predictions.parquet
    blank_rows: dict[str, Any]  # the blank rows of the TSVs infer read: how many, labelled how, left blank why

    def summary(self, exported: pd.DataFrame, **own: Any) -> dict[str, Any]:
        """summary.json of an export of the rows `exported`: what every export states (provenance, claims,
        the rule, the labels given, the blank rows) and the export's `own` keys."""
        return {
            **self.metadata,
            "claims": self.claims,
            "rule": self.rule,
            **own,
            "pseudo_labels": _pseudo_labels(exported),
            "blank_rows": self.blank_rows,
        }


def export_parquet(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    aug_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
) -> dict[str, Any]:
    """Write AUG_DIR's Parquet files in options.layout, and summary.json; return the summary."""
    # the folder is checked (new or empty, writable) before any work, and appears whole or not at all
    with atomic_folder(aug_dir, "cvlabel export") as tmp:
        labelled = label_release(corpus_dir, predictions_dir, options, reference, layout=options.layout)
        # the release layout keeps every row, also of TSVs infer did not read (their blank rows say so)
        read = labelled.rows["source_tsv"].isin(labelled.plan["tsvs"]) | (options.layout == "release")
        rows = labelled.rows[read].copy()
        if options.layout == "classifier":
            rows, files, counts = _classifier_layout(rows, labelled, options)
        else:
            rows, files, counts = _release_layout(rows, labelled, options)
        # one schema for every file, so `AUG/*.parquet` reads as one table in polars, DuckDB, datasets
        table = export_table(rows)
        folder = ExportFolder(tmp)
        for name in files:
            write_export_split(table.filter(pa.array(rows["split"].to_numpy() == name)), folder.split(name),
                               labelled.metadata)  # fmt: skip
        summary = labelled.summary(rows, rows={name: int((rows["split"] == name).sum()) for name in files}, **counts)
        write_json(folder.summary, summary)
        _write_report(folder, labelled, summary)
    return summary


def export_tsv(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
    clips: str = "link",
) -> dict[str, Any]:
    """Write OUT_DIR as an augmented copy of the release: its own TSVs with the accepted labels filled
    into blank genders (artifacts.write_augmented_tsv), `clips` linked (or copied, or left out)."""
    if clips not in CLIPS_MODES:
        raise CvlabelError(f"--clips must be one of {', '.join(CLIPS_MODES)}, got {clips!r}")
    with atomic_folder(out_dir, "cvlabel export tsv") as tmp:
        labelled = label_release(corpus_dir, predictions_dir, options, reference, layout="tsv")
        rows, corpus_dir = labelled.rows, labelled.corpus_dir
        vocabulary = gender_vocabulary(labelled.manifest["gender_raw"])
        filled = rows["gender_source"].isin(FILLED_SOURCES)
        fills = dict(zip(rows.loc[filled, "path"], _release_genders(rows, vocabulary)[filled], strict=True))
        stated = rows[rows["gender_source"].notna()]
        confidence = stated["gender_confidence"].map("{:.4f}".format)
        provenance = dict(zip(stated["path"], zip(stated["gender_source"], confidence, strict=True), strict=True))
        written = {tsv.name: write_augmented_tsv(tsv, tmp / tsv.name, fills, provenance)
                   for tsv in sorted(corpus_dir.glob("*.tsv")) if tsv.stem in RELEASE_TSVS}  # fmt: skip
        foreign = sorted(tsv.name for tsv in corpus_dir.glob("*.tsv") if tsv.stem not in RELEASE_TSVS)
        _give_clips(corpus_dir, tmp, clips)
        summary = labelled.summary(
            rows,
            vocabulary=vocabulary,
            clips=clips,
            filled={name: n for name, n in written.items() if n is not None},
            copied=sorted(name for name, n in written.items() if n is None),
            not_copied=foreign,  # TSVs of the folder that are not a release's (truth.tsv, notes)
            blank_reasons=_reasons(rows["blank_reason"]),
        )
        write_json(ExportFolder(tmp).summary, summary)
        _write_report(ExportFolder(tmp), labelled, summary)
    return summary


def export_lhotse(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
) -> dict[str, Any]:
    """Write OUT_DIR as lhotse manifests the way lhotse's Common Voice recipe writes them, with the
    accepted labels: per locale and file of the release layout (its train/dev/test split, the other
    rows by TSV), recordings and supervisions (speaker = client_id, recording_id and id = the clip's
    stem, gender in the release's vocabulary, age/accents/variant and the label's provenance and
    probabilities in `custom`). A clip missing on disk is left out, as the recipe does, and counted."""
    try:
        from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    except ImportError:
        raise CvlabelError(f"export lhotse needs lhotse: {LHOTSE_INSTALL}") from None
    with atomic_folder(out_dir, "cvlabel export lhotse") as tmp:
        labelled = label_release(corpus_dir, predictions_dir, options, reference, layout="lhotse")
        rows = labelled.rows[labelled.rows["source_tsv"].isin(labelled.plan["tsvs"])].copy()
        rows["split"] = rows["cv_split"].where(rows["cv_split"] != "", rows["source_tsv"])
        rows["gender_written"] = _release_genders(rows, gender_vocabulary(labelled.manifest["gender_raw"]))
        rows["gender_label"] = rows["gender"].where(rows["gender"].isin(BINARY_GENDERS), None)
        locale = rows["locale"] if "locale" in rows else pd.Series("", index=rows.index)
        rows["language"] = locale.fillna("").where(locale.fillna("") != "", labelled.corpus_dir.name)
        # absolute: a manifest loads its audio from any working directory, as lhotse's recipe's do
        clips, written, missing = clips_dir(labelled.corpus_dir).resolve(), {}, 0
        for (language, split), part in rows.groupby(["language", "split"], sort=True):
            recordings, supervisions = [], []
            for row in part.to_dict("records"):
                audio = clips / row["path"]
                if not audio.is_file():
                    missing += 1
                    continue
                recording = Recording.from_file(audio, recording_id=Path(row["path"]).stem)
                recordings.append(recording)
                supervisions.append(SupervisionSegment(
                    id=recording.id, recording_id=recording.id, start=0.0, duration=recording.duration, channel=0,
                    language=language, speaker=row["client_id"], gender=row["gender_written"],
                    text=str(_json_value(row.get("sentence")) or "").strip(),
                    custom={**{c: _json_value(row.get(c)) or "" for c in LHOTSE_CUSTOM_COLUMNS},
                            **{c: _json_value(row[c]) for c in LHOTSE_LABEL_COLUMNS}},
                ))  # fmt: skip
            if recordings:
                RecordingSet.from_recordings(recordings).to_file(lhotse_manifest(tmp, "recordings", language, split))
                SupervisionSet.from_segments(supervisions).to_file(
                    lhotse_manifest(tmp, "supervisions", language, split)
                )
                written[f"{language}/{split}"] = len(recordings)
        summary = labelled.summary(rows, manifests=written, missing_clips=missing)
        write_json(ExportFolder(tmp).summary, summary)
        _write_report(ExportFolder(tmp), labelled, summary)
    return summary


def _release_genders(rows: pd.DataFrame, vocabulary: str) -> pd.Series:
    """Each row's gender as the release writes it (the TSV export's value): the TSV's own string, or
    for a filled blank row the label in the release's `vocabulary` (corpus.gender_vocabulary)."""
    filled = rows["gender_source"].isin(FILLED_SOURCES)
    return rows["gender_raw"].where(~filled, rows["gender"].map(BINARY_GENDER_NAMES[vocabulary]))


def _json_value(value: Any) -> Any:
    """A JSON-safe value: NaN and None are null, numpy scalars plain numbers."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


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
    metadata = {
        "layout": layout,
        "model_sha256": plan["model_sha256"],
        "model": plan["model"],
        "temperature": checkpoint.temperature,
        "corpus": plan["corpus"],
        "tsvs_sha256": plan.get("tsvs_sha256"),
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


def _write_report(folder: ExportFolder, labelled: LabelledRelease, summary: dict[str, Any]) -> None:
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
            "run infer again (into a new --out folder) to label the release as it is now"
        )


def _classifier_layout(
    rows: pd.DataFrame, labelled: LabelledRelease, options: ExportOptions
) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, Any]]:
    """Place the rows in train/dev/test/unused for training a classifier; the summary's counts."""
    config, manifest = labelled.config, labelled.manifest
    # the speakers' placement decides the export's splits; the training cap is applied below
    with_splits, _ = assign_splits(manifest, replace(config.splits, max_clips_per_speaker=0))
    speaker_split = with_splits[with_splits["split"] != ""].groupby("client_id")["split"].first()
    rows["split"] = rows["client_id"].map(speaker_split).fillna("train")

    rows["unused_reason"] = None
    # dev/test are exactly the rows the run was evaluated on, so a retrained run meets the same test
    evaluation = set(with_splits.loc[with_splits["split"].isin(["dev", "test"]), "path"])
    held_out = rows["split"].isin(["dev", "test"])
    rows.loc[held_out & ~rows["path"].isin(evaluation), "unused_reason"] = "held-out speaker, not an evaluation row"
    in_train = rows["split"].eq("train")
    # a clip that cannot be read never lands in a training split; its reason is kept
    broken = _unusable_clips(rows, labelled.corpus_dir, config) if len(rows) else pd.Series(dtype=object)
    bad = broken.notna() & rows["unused_reason"].isna() & rows["gender"].isin(BINARY_GENDERS)
    rows.loc[bad, "unused_reason"] = broken[bad]
    unlabelled = in_train & ~rows["gender"].isin(BINARY_GENDERS) & rows["unused_reason"].isna()
    rows.loc[unlabelled, "unused_reason"] = rows.loc[unlabelled, "blank_reason"].fillna(BlankReason.NO_LABEL.value)
    before = _counts(rows[in_train & rows["unused_reason"].isna()])
    _cap_per_speaker(rows, config.splits.max_clips_per_speaker)
    if options.rebalance:
        _rebalance(rows, options.female_share)
    rows.loc[rows["unused_reason"].notna(), "split"] = "unused"
    invalidated = int((rows["split"].eq("train") & rows["source_tsv"].eq("invalidated")).sum())
    if invalidated:
        log.warning(
            "%d rows of invalidated.tsv (clips Common Voice's voters rejected) are in train.parquet, since infer read "
            "--tsv invalidated; --layout release keeps them apart, in invalidated.parquet", invalidated,
        )  # fmt: skip
    counts = {
        "train_before_cap_and_rebalance": before,
        "train_after": _counts(rows[rows["split"] == "train"]),
        "invalidated_rows_in_train": invalidated,
        "unused_reasons": _reasons(rows["unused_reason"]),
    }
    return rows.drop(columns=["blank_reason"]), EXPORT_SPLITS, counts


def _release_layout(
    rows: pd.DataFrame, labelled: LabelledRelease, options: ExportOptions
) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, Any]]:
    """Keep every row, in the release's own split or else its TSV's file; the summary's counts."""
    own_split = any((labelled.corpus_dir / f"{name}.tsv").is_file() for name in SPLIT_TSVS)
    if not own_split:
        log.warning("%s has no train/dev/test.tsv: every row goes to the file of its TSV (validated, other, ...)",
                    labelled.corpus_dir)  # fmt: skip
    rows["split"] = rows["cv_split"].where(rows["cv_split"] != "", rows["source_tsv"])
    share = options.female_share if options.rebalance else None
    rows["sample_weight"] = _sample_weights(rows, labelled.config.splits.max_clips_per_speaker, share)
    files = tuple(name for name in RELEASE_LAYOUT_FILES if (rows["split"] == name).any())
    return rows, files, {"release_split": own_split, "blank_reasons": _reasons(rows["blank_reason"])}


def _sample_weights(rows: pd.DataFrame, cap: int, female_share: float | None) -> pd.Series:
    """Per male/female row of the release's train split, the weight that caps and rebalances without
    dropping a row: a speaker's rows weigh min(1, cap / their rows) together at most `cap`, and with
    `female_share` the female rows' share of the weight is that (the total weight unchanged).
    Null elsewhere."""
    train = rows["split"].eq("train") & rows["gender"].isin(BINARY_GENDERS)
    weights = pd.Series(np.nan, index=rows.index)
    per_speaker = rows[train].groupby("client_id")["path"].transform("size")
    weights[train] = np.minimum(1.0, cap / per_speaker) if cap > 0 else 1.0
    female = train & rows["gender"].eq("female")
    total, female_total = weights[train].sum(), weights[female].sum()
    if female_share is not None and 0 < female_total < total:
        weights[female] *= female_share * total / female_total
        weights[train & ~female] *= (1 - female_share) * total / (total - female_total)
    return weights


def _give_clips(corpus_dir: Path, out: Path, mode: str) -> None:
    """The augmented release's `clips`: a symlink to the release's (default), a copy, or none."""
    source = clips_dir(corpus_dir).resolve()
    if mode == "copy":
        shutil.copytree(source, out / "clips")
    elif mode == "link":
        try:
            os.symlink(source, out / "clips", target_is_directory=True)
        except OSError as exc:
            raise CvlabelError(
                f"cannot link {out.name}/clips to {source} ({exc.strerror or exc}); on Windows a symlink needs "
                "Developer Mode or administrator rights. Pass --clips copy (copies every clip) or --clips none "
                "(then point your loader at the original clips folder)"
            ) from None


def _pseudo_labels(rows: pd.DataFrame) -> dict[str, int]:
    return {g: int(((rows["gender_source"] == PSEUDO) & (rows["gender"] == g)).sum()) for g in BINARY_GENDERS}


def _reasons(reasons: pd.Series) -> dict[str, int]:
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


def _unusable_clips(rows: pd.DataFrame, corpus_dir: Path, config: Config) -> pd.Series:
    """Why each labelled row's clip cannot be trained on (None where it can): missing or empty on
    disk, or recorded as undecodable in the decode cache by training."""
    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    folder = clips_dir(corpus_dir)
    reasons = []
    for path, labelled in zip(rows["path"], rows["gender"].isin(BINARY_GENDERS), strict=True):
        reason = None
        if labelled:
            clip = folder / path
            try:
                size = clip.stat().st_size
            except OSError:
                size = -1
            if size <= 0:
                reason = "clip missing" if size < 0 else "clip is empty (0 bytes)"
            elif cache.entry(clip).with_suffix(".err").exists():
                reason = "clip could not be decoded"
        reasons.append(reason)
    return pd.Series(reasons, index=rows.index, dtype=object)


def _cap_per_speaker(rows: pd.DataFrame, cap: int) -> None:
    """Mark train rows over `cap` per speaker unused: self-reported kept first, then by confidence."""
    if cap <= 0:
        return
    train = rows[(rows["split"] == "train") & rows["unused_reason"].isna()]
    order = train.assign(_source=train["gender_source"].map(SOURCE_ORDER), _conf=-train["gender_confidence"])
    order = order.sort_values(["client_id", "_source", "_conf", "path"])
    over = order.groupby("client_id").cumcount() >= cap
    rows.loc[order.index[over.to_numpy()], "unused_reason"] = f"over {cap} clips per speaker"


def _rebalance(rows: pd.DataFrame, female_share: float) -> None:
    """Drop majority-gender train rows (pseudo first, lowest confidence first) until the share holds.

    Pseudo-labels of the minority gender are all kept: they are what enlarges it.
    """
    train = rows[(rows["split"] == "train") & rows["unused_reason"].isna()]
    counts = train["gender"].value_counts()
    female, male = int(counts.get("female", 0)), int(counts.get("male", 0))
    if female + male == 0:
        return
    # floor, less a rounding error: 2 * (2/3) / (1/3) is 3.9999999999999996 in floating point, and 4 rows fit
    if female / (female + male) < female_share:
        majority, keep = "male", int(np.floor(female * (1 - female_share) / female_share + 1e-9))
    else:
        majority, keep = "female", int(np.floor(male * female_share / (1 - female_share) + 1e-9))
    candidates = train[train["gender"] == majority]
    if len(candidates) <= keep:
        return
    ranked = candidates.assign(
        _source=candidates["gender_source"].map(SOURCE_ORDER), _conf=-candidates["gender_confidence"]
    )
    ranked = ranked.sort_values(["_source", "_conf", "path"])
    rows.loc[ranked.index[keep:], "unused_reason"] = "rebalanced away"


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    table = frame.groupby(["gender", "gender_source"]).size()
    return {f"{gender}/{source}": int(n) for (gender, source), n in table.items()}


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
