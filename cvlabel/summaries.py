"""The shapes of the summaries a stage returns and writes as summary.json: `infer`'s (InferSummary) and
an export's (ExportSummary: its claims, which certify makes, and labelling's headline numbers).

One definition each, for the stages that write them (certify, labelling, inference, release_labels,
export), the folder that reads them back (artifacts) and those that put them in words (html_report,
report). Types only: nothing here computes anything, and it imports nothing of cvlabel.
A summary.json of an older cvlabel may lack keys, so its readers use .get() for those.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Certifiable(TypedDict):
    """The highest TARGET_LADDER target below the one asked for that the reference certifies."""

    target: float
    threshold: float
    coverage: float  # of the gender's undisputed reference clips


class Claim(TypedDict):
    """One gender's threshold and what the reference speakers say of it (summary.json's `claims`)."""

    threshold: float | None  # None: label nothing of this gender
    certified: bool
    lower_bound: float | None  # of a certified claim: the target (what the fixed sequence guarantees)
    precision: float | None  # point estimate at the threshold
    speakers: int  # reference speakers above the threshold
    clips: int
    reference_speakers: int  # reference speakers predicted as this gender
    reference_clips: int
    best_lower_bound: float | None  # over all cuts: a description of the reference, not a claim
    cut_lower_bound: NotRequired[float]  # a certified claim's own cut bound (higher, not guaranteed)
    certifiable: NotRequired[Certifiable]  # an uncertifiable target: what a lower one would give


Claims = dict[str, Claim]  # per gender: male, female


class InferSummary(TypedDict):
    """What `cvlabel infer` did (its closing lines: report.describe_infer)."""

    rows: int
    errors: int  # rows no label could be given (missing or undecodable clip, no speech)
    missing_clips: int
    labels: dict[str, int]  # by label (male, female; a row of error has none)
    label_source: dict[str, int]  # clip, speaker (the speaker's own answer on other rows), ...
    speakers: int
    disputed_rows: int  # rows of speakers whose clips disagree: never pseudo-labelled
    skipped_opted_out_rows: int
    blank_rows_not_read: int  # blank rows of TSVs not given to --tsv
    unheard_locales: list[str] | None  # locales of these rows the model never heard (None: it lists none)
    decoders: dict[str, int]  # clips each decoder read (bandmp3, mpg123, soundfile), as the rows name it
    slow_decodes: dict[int, int]  # native rate -> clips decoded by soundfile + soxr
    clip_balanced_accuracy: float | None  # --split dev|test|all only
    seconds: float


class BlankRows(TypedDict):
    """An export's headline numbers (summary.json's `blank_rows`)."""

    rows: int  # blank-gender rows of the TSVs infer read
    labelled: dict[str, int]  # by gender_source: pseudo-labelled, or the speaker's own answer on other rows
    left_blank: dict[str, int]  # by BlankReason.short


class ScoredAsBlank(TypedDict):
    """What the claims were measured on: reference speakers scored on as many clips as the blank ones have."""

    blank_speakers: int
    blank_clips_per_speaker: float | None
    reference_speakers: int
    reference_clips_per_speaker: float | None


class ExportMetadata(TypedDict):
    """An export's provenance: also written into every Parquet file's schema metadata."""

    layout: str  # classifier, release, tsv, lhotse
    model_sha256: str
    model: str
    temperature: float
    corpus: str
    tsvs_sha256: dict[str, str] | None  # the release's TSVs as infer read them
    reference: str | None  # what the claims were chosen on (None with --min-confidence)
    committee_clips: int | None  # how infer shared the committee
    thresholds: dict[str, float | None]  # per gender; None labels nothing of it
    reference_locales: dict[str, int] | None  # reference speakers per locale (None: a release of one locale)
    scored_as_blank: ScoredAsBlank
    options: dict[str, Any]  # config.ExportOptions as given, less the layout


class FormatCounts(TypedDict, total=False):
    """The keys an export format adds to its summary (export.py's writers, export_layouts' layouts)."""

    rows: dict[str, int]  # parquet: rows per file
    train_before_cap_and_rebalance: dict[str, int]  # --layout classifier
    train_after: dict[str, int]
    invalidated_rows_in_train: int
    unused_reasons: dict[str, int]
    release_split: bool  # --layout release: whether the release has its own train/dev/test.tsv
    blank_reasons: dict[str, int]  # --layout release, tsv
    vocabulary: str  # tsv: the gender vocabulary the filled values are written in
    clips: str  # tsv: link, copy, none
    filled: dict[str, int]  # tsv: blank genders filled per TSV
    copied: list[str]  # tsv: TSVs copied as they are
    not_copied: list[str]  # tsv: files of the folder that are not a release's TSVs
    manifests: dict[str, int]  # lhotse: clips per manifest
    missing_clips: int  # lhotse: clips missing on disk, left out


class ExportSummary(ExportMetadata, FormatCounts):
    """An export's summary.json: its provenance, claims and rule, the labels it gave, the blank rows."""

    claims: Claims
    rule: str  # how the thresholds were chosen, in words
    pseudo_labels: dict[str, int]  # pseudo-labelled rows per gender
    blank_rows: BlankRows
