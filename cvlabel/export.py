"""`cvlabel export parquet|tsv|lhotse`: the release with self-reported and pseudo labels, in a format.

Every format is one writer registered by name (`@export_format`): it gets the release labelled once
by the one rule (release_labels.label_release: labelling's thresholds, inheritance, blank reasons)
and a new folder, and writes its files; `write_export` does the rest for all of them (the folder
appears whole or not at all, then summary.json and report.html). Adding a format is one writer here
and its command in cli_export.py (docs/architecture.md).

- parquet: train/dev/test/unused.parquet in the classifier layout (the default) or every row in the
  release's own split (`--layout release`), export_layouts.py; every column of the release (the TSV's
  gender string in `gender_raw`, untouched) plus artifacts.EXPORT_LABEL_COLUMNS, one schema for all.
- tsv: the release's own TSVs with the blank genders filled in the release's vocabulary, byte for
  byte otherwise (artifacts.write_augmented_tsv), and a link to its clips.
- lhotse: recordings and supervisions manifests as lhotse's Common Voice recipe writes them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import (
    LHOTSE_CUSTOM_COLUMNS,
    LHOTSE_LABEL_COLUMNS,
    ExportFolder,
    export_table,
    lhotse_manifest,
    write_augmented_tsv,
    write_export_splits,
)
from .config import ExportOptions
from .corpus import RELEASE_TSVS, clips_dir, gender_vocabulary
from .errors import CvlabelError
from .export_layouts import classifier_layout, release_layout
from .files import atomic_folder, write_json
from .labelling import FILLED_SOURCES
from .labels import BINARY_GENDERS
from .release_labels import LabelledRelease, label_release, reason_counts, release_genders, write_report
from .summaries import ExportSummary, FormatCounts

CLIPS_MODES = ("link", "copy", "none")  # how `export tsv` gives its release the clips
# what write_lhotse reads of a labelled row (the supervision's fields, `custom`, the summary's counts)
LHOTSE_ROW_COLUMNS = (
    ("path", "client_id", "sentence", "locale", "cv_split", "source_tsv", "gender", "gender_raw")
    + LHOTSE_CUSTOM_COLUMNS
    + tuple(c for c in LHOTSE_LABEL_COLUMNS if c != "gender_label")
)
LHOTSE_INSTALL = "pip install 'cvlabel[lhotse]'"  # lhotse is an optional extra, imported by `export lhotse` only

# A writer: (the labelled release, the new folder, the options, the format's own settings) -> the rows it
# exported and the keys its summary.json adds to what every export states.
Writer = Callable[[LabelledRelease, Path, ExportOptions, Mapping[str, Any]], tuple[pd.DataFrame, FormatCounts]]


@dataclass(frozen=True)
class ExportFormat:
    name: str  # `cvlabel export NAME`
    write: Writer
    layout: Callable[[ExportOptions], str]  # summary.json's "layout"
    check: Callable[[Mapping[str, Any]], None]  # refuses bad settings (or a missing extra) before any work


FORMATS: dict[str, ExportFormat] = {}


def export_format(
    name: str,
    layout: Callable[[ExportOptions], str] | None = None,
    check: Callable[[Mapping[str, Any]], None] = lambda settings: None,
) -> Callable[[Writer], Writer]:
    """Register a writer as the format `name`."""

    def register(write: Writer) -> Writer:
        FORMATS[name] = ExportFormat(name, write, layout or (lambda options: name), check)
        return write

    return register


def write_export(
    name: str,
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
    **settings: Any,
) -> ExportSummary:
    """Write OUT_DIR in the format `name` (FORMATS), with summary.json and report.html; return the summary."""
    if name not in FORMATS:
        raise CvlabelError(f"no export format {name!r}: one of {', '.join(FORMATS)}")
    chosen = FORMATS[name]
    chosen.check(settings)
    # the folder is checked (new or empty, writable) before any work, and appears whole or not at all
    with atomic_folder(out_dir, f"cvlabel export {name}") as tmp:
        labelled = label_release(corpus_dir, predictions_dir, options, reference, layout=chosen.layout(options))
        rows, own = chosen.write(labelled, tmp, options, settings)
        summary = labelled.summary(rows, own)
        write_json(ExportFolder(tmp).summary, summary)
        write_report(ExportFolder(tmp), labelled, summary)
    return summary


def export_parquet(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    aug_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
) -> ExportSummary:
    """Write AUG_DIR's Parquet files in options.layout, and summary.json; return the summary."""
    return write_export("parquet", corpus_dir, predictions_dir, aug_dir, options, reference)


def export_tsv(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
    clips: str = "link",
) -> ExportSummary:
    """Write OUT_DIR as an augmented copy of the release: its own TSVs with the accepted labels filled
    into blank genders (artifacts.write_augmented_tsv), `clips` linked (or copied, or left out)."""
    return write_export("tsv", corpus_dir, predictions_dir, out_dir, options, reference, clips=clips)


def export_lhotse(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
) -> ExportSummary:
    """Write OUT_DIR as lhotse manifests the way lhotse's Common Voice recipe writes them, with the
    accepted labels (see write_lhotse)."""
    return write_export("lhotse", corpus_dir, predictions_dir, out_dir, options, reference)


@export_format("parquet", layout=lambda options: options.layout)
def write_parquet(
    labelled: LabelledRelease, folder: Path, options: ExportOptions, settings: Mapping[str, Any]
) -> tuple[pd.DataFrame, FormatCounts]:
    """The Parquet files of options.layout (export_layouts.py), one schema for every file, so
    `AUG/*.parquet` reads as one table in polars, DuckDB, datasets."""
    # the release layout keeps every row, also of TSVs infer did not read (their blank rows say so)
    read = labelled.rows["source_tsv"].isin(labelled.plan["tsvs"]) | (options.layout == "release")
    rows = labelled.rows[read]  # a copy already (a mask): the layout adds its columns to it alone
    layout = classifier_layout if options.layout == "classifier" else release_layout
    rows, files, counts = layout(rows, labelled, options)
    paths = {name: ExportFolder(folder).split(name) for name in files}
    write_export_splits(export_table(rows), rows["split"].to_numpy(), paths, labelled.metadata)
    return rows, {"rows": {name: int((rows["split"] == name).sum()) for name in files}, **counts}


def _check_clips_mode(settings: Mapping[str, Any]) -> None:
    if settings.get("clips", "link") not in CLIPS_MODES:
        raise CvlabelError(f"--clips must be one of {', '.join(CLIPS_MODES)}, got {settings['clips']!r}")


@export_format("tsv", check=_check_clips_mode)
def write_tsv(
    labelled: LabelledRelease, folder: Path, options: ExportOptions, settings: Mapping[str, Any]
) -> tuple[pd.DataFrame, FormatCounts]:
    """The release's TSVs with the blank genders filled (and provenance columns), its clips given as
    settings["clips"] says; other TSVs of the folder are not copied."""
    rows, corpus_dir, clips = labelled.rows, labelled.corpus_dir, settings.get("clips", "link")
    vocabulary = gender_vocabulary(labelled.manifest["gender_raw"])
    filled = rows["gender_source"].isin(FILLED_SOURCES)
    fills = dict(zip(rows.loc[filled, "path"], release_genders(rows, vocabulary)[filled], strict=True))
    stated = rows[rows["gender_source"].notna()]
    confidence = stated["gender_confidence"].map("{:.4f}".format)
    provenance = dict(zip(stated["path"], zip(stated["gender_source"], confidence, strict=True), strict=True))
    written = {tsv.name: write_augmented_tsv(tsv, folder / tsv.name, fills, provenance)
               for tsv in sorted(corpus_dir.glob("*.tsv")) if tsv.stem in RELEASE_TSVS}  # fmt: skip
    foreign = sorted(tsv.name for tsv in corpus_dir.glob("*.tsv") if tsv.stem not in RELEASE_TSVS)
    _give_clips(corpus_dir, folder, clips)
    return rows, {
        "vocabulary": vocabulary,
        "clips": clips,
        "filled": {name: n for name, n in written.items() if n is not None},
        "copied": sorted(name for name, n in written.items() if n is None),
        "not_copied": foreign,  # TSVs of the folder that are not a release's (truth.tsv, notes)
        "blank_reasons": reason_counts(rows["blank_reason"]),
    }


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


def _check_lhotse(settings: Mapping[str, Any]) -> None:
    try:
        import lhotse  # noqa: F401
    except ImportError:
        raise CvlabelError(f"export lhotse needs lhotse: {LHOTSE_INSTALL}") from None


@export_format("lhotse", check=_check_lhotse)
def write_lhotse(
    labelled: LabelledRelease, folder: Path, options: ExportOptions, settings: Mapping[str, Any]
) -> tuple[pd.DataFrame, FormatCounts]:
    """Per locale and file of the release layout (its train/dev/test split, the other rows by TSV),
    recordings and supervisions (speaker = client_id, recording_id and id = the clip's stem, gender in
    the release's vocabulary, age/accents/variant and the label's provenance and probabilities in
    `custom`). A clip missing on disk is left out, as the recipe does, and counted."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    # only the columns the manifests and the summary read: a copy of every column of 10^6 rows, and of
    # each group's, took the export past 2 GB
    read = labelled.rows["source_tsv"].isin(labelled.plan["tsvs"])
    rows = labelled.rows.loc[read, [c for c in LHOTSE_ROW_COLUMNS if c in labelled.rows.columns]]
    rows["split"] = rows["cv_split"].where(rows["cv_split"] != "", rows["source_tsv"])
    rows["gender_written"] = release_genders(rows, gender_vocabulary(labelled.manifest["gender_raw"]))
    rows["gender_label"] = rows["gender"].where(rows["gender"].isin(BINARY_GENDERS), None)
    locale = rows["locale"] if "locale" in rows else pd.Series("", index=rows.index)
    rows["language"] = locale.fillna("").where(locale.fillna("") != "", labelled.corpus_dir.name)
    # absolute: a manifest loads its audio from any working directory, as lhotse's recipe's do
    clips, written, missing = clips_dir(labelled.corpus_dir).resolve(), {}, 0
    for (language, split), part in rows.groupby(["language", "split"], sort=True):
        present = part[[(clips / path).is_file() for path in part["path"]]]
        missing += len(part) - len(present)
        if not len(present):
            continue
        # written a row at a time: a million rows' lhotse objects held at once took 3.4 GB
        with (
            RecordingSet.open_writer(lhotse_manifest(folder, "recordings", language, split)) as recordings,
            SupervisionSet.open_writer(lhotse_manifest(folder, "supervisions", language, split)) as supervisions,
        ):
            for row in _records(present):
                recording = Recording.from_file(clips / row["path"], recording_id=Path(row["path"]).stem)
                recordings.write(recording)
                supervisions.write(SupervisionSegment(
                    id=recording.id, recording_id=recording.id, start=0.0, duration=recording.duration, channel=0,
                    language=language, speaker=row["client_id"], gender=row["gender_written"],
                    text=str(_json_value(row.get("sentence")) or "").strip(),
                    custom={**{c: _json_value(row.get(c)) or "" for c in LHOTSE_CUSTOM_COLUMNS},
                            **{c: _json_value(row[c]) for c in LHOTSE_LABEL_COLUMNS}},
                ))  # fmt: skip
        written[f"{language}/{split}"] = len(present)
    return rows, {"manifests": written, "missing_clips": missing}


def _records(rows: pd.DataFrame, block: int = 10_000) -> Iterator[dict[str, Any]]:
    """The rows as dicts, a block at a time (all of them at once is a dict a row in memory)."""
    for start in range(0, len(rows), block):
        yield from rows.iloc[start : start + block].to_dict("records")


def _json_value(value: Any) -> Any:
    """A JSON-safe value: NaN and None are null, numpy scalars plain numbers."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
