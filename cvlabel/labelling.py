"""The labelling rule, in one place: which blank row gets which label, and why the others stay blank.

- **Eligible** (`eligible_rows`): a blank-gender row of the TSVs infer reads, of a speaker who never
  answered `other` or `do_not_wish_to_say` on any row, nor gave conflicting answers: an opt-out is the
  speaker's, so it covers their blank rows too. infer scores these and nothing else.
- **Pooled by speaker** (pooling.py): a speaker's own male/female answer on other rows is inherited
  (`speaker`); otherwise the committee's pooled prediction is the speaker's, unless the members or the
  clips disagree (disputed).
- **A pseudo-label** needs an undisputed speaker, a certified threshold for the predicted gender at or
  below the speaker's confidence (`choose_claims`: certify.py over `reference_for_claims`, the
  self-reported reference speakers scored as the blank speakers are), and, in a release of several
  locales, reference speakers of the row's locale (--accept-uncertified lifts that).
- **Every blank row left blank says why**: one BlankReason.

Pure functions of tables: export reads the files and writes the results.
"""

from __future__ import annotations

import logging
from enum import Enum

import numpy as np
import pandas as pd

from .audio import MISSING_FILE
from .certify import bound_text, certified_thresholds, claims_at
from .checkpoint import speaker_digest
from .config import ExportOptions
from .labels import BINARY_GENDERS, or_null
from .pooling import reference_speakers
from .splits import speaker_genders
from .summaries import BlankRows, Claims

log = logging.getLogger(__name__)


class BlankReason(str, Enum):
    """Why a blank row stayed blank: its value is the export's `blank_reason`; `short` the headline's words."""

    BELOW_THRESHOLD = "below confidence threshold"
    DISPUTED = "disputed speaker (committee members or clips disagree)"
    OPTED_OUT = "speaker opted out (do_not_wish_to_say) or answered other on another row"
    NO_THRESHOLD = "no certified threshold for this gender"
    NO_REFERENCE_LOCALE = "no reference speaker of this locale"
    MISSING = "clip not on disk"
    UNDECODABLE = "clip could not be decoded"
    NOT_PREDICTED = "not predicted (its TSV was not given to infer --tsv)"
    NO_LABEL = "no male/female label"

    @property
    def short(self) -> str:
        return _SHORT[self]


_SHORT = {
    BlankReason.BELOW_THRESHOLD: "below threshold",
    BlankReason.DISPUTED: "from disputed speakers",
    BlankReason.OPTED_OUT: "opted out",
    BlankReason.NO_THRESHOLD: "with no certified threshold for their gender",
    BlankReason.NO_REFERENCE_LOCALE: "of locales no reference speaker covers",
    BlankReason.MISSING: "without audio on disk",
    BlankReason.UNDECODABLE: "undecodable",
    BlankReason.NOT_PREDICTED: "not predicted",
    BlankReason.NO_LABEL: "with no male/female label",
}
PSEUDO, INHERITED, SELF_REPORTED = "pseudo", "speaker", "self_reported"  # a row's gender_source
FILLED_SOURCES = (INHERITED, PSEUDO)  # the gender_source of a blank row an export fills


def opted_out_speakers(manifest: pd.DataFrame) -> set[str]:
    """Speakers whose answer on some row is not male/female (other, do_not_wish_to_say, ...), or who
    gave conflicting answers: none of their rows is ever labelled."""
    genders, conflicting = speaker_genders(manifest)
    return set(genders.index[~genders.isin(BINARY_GENDERS)]) | set(conflicting)


def eligible_rows(manifest: pd.DataFrame, tsvs: tuple[str, ...] | list[str]) -> tuple[np.ndarray, int]:
    """Which rows infer scores (blank gender, of `tsvs`, of a speaker who did not opt out), and how many
    blank rows of `tsvs` are skipped because their speaker opted out."""
    blank = manifest["gender"].isna() & manifest["source_tsv"].isin(tsvs)
    opted_out = blank & manifest["client_id"].isin(opted_out_speakers(manifest))
    return (blank & ~opted_out).to_numpy(), int(opted_out.sum())


def blank_clips_per_speaker(predictions: pd.DataFrame, manifest: pd.DataFrame) -> np.ndarray:
    """The predicted clips of each speaker the model labels (no answer of their own on any row)."""
    genders, _ = speaker_genders(manifest)
    scored = predictions[predictions["logit"].notna() & ~predictions["client_id"].isin(genders.index)]
    return scored.groupby("client_id").size().to_numpy()


def reference_for_claims(
    rows: pd.DataFrame, temperature: float, heard: frozenset[str], blank_clips: np.ndarray
) -> pd.DataFrame:
    """Reference rows (self-reported, with logits) pooled as blank speakers are, each speaker scored on
    as many clips as a blank speaker has (pooling.scored_as_blank), with `correct`; without the speakers
    the model's starting weights had heard (`heard`: checkpoint.heard_before), whose answers it knows."""
    heard_here = {c for c in rows["client_id"].unique() if speaker_digest(c) in heard} if heard else set()
    known = rows["client_id"].isin(heard_here)  # one digest a speaker, not a row
    if known.any():
        log.warning(
            "%d of %d reference speakers are left out of the claims: the model's starting weights were trained "
            "on them (the base model's own speakers), so they are no test of it",
            rows.loc[known, "client_id"].nunique(),
            rows["client_id"].nunique(),
        )
    return reference_speakers(rows[~known], temperature, blank_clips)


def choose_claims(options: ExportOptions, speakers: pd.DataFrame) -> Claims:
    """Per gender: the threshold and what the reference speakers certify of it (the user's
    --min-confidence, or certify's threshold for --target-precision)."""
    if options.min_confidence is not None:
        chosen = dict.fromkeys(BINARY_GENDERS, options.min_confidence)
        return claims_at(speakers, chosen, options.certainty)
    claims = certified_thresholds(speakers, options.target_precision, options.certainty, options.accept_uncertified)
    for gender, claim in claims.items():
        if claim["threshold"] is None:
            log.warning(
                "cannot certify precision %.3f for %s on %d reference speakers (best lower bound %s): "
                "no %s pseudo-labels; lower --target-precision, or pass --accept-uncertified",
                options.target_precision, gender, claim["reference_speakers"],
                bound_text(claim["best_lower_bound"]), gender,
            )  # fmt: skip
    return claims


def reference_locales(manifest: pd.DataFrame, speakers: pd.DataFrame) -> dict[str, int] | None:
    """Reference speakers per locale of the release, or None where the release has one locale (or no
    `locale` column): then every blank row is covered."""
    if "locale" not in manifest or manifest["locale"].fillna("").nunique() <= 1:
        return None
    theirs = manifest[manifest["client_id"].isin(speakers.index)]
    counts = theirs.groupby(theirs["locale"].fillna(""))["client_id"].nunique()
    return {str(locale): int(n) for locale, n in counts.items()}


def label_blank_rows(
    rows: pd.DataFrame,
    manifest: pd.DataFrame,
    predictions: pd.DataFrame,
    thresholds: dict[str, float | None],
    tsvs: list[str],
    covered: dict[str, int] | None = None,
) -> None:
    """Set gender, gender_source, gender_confidence, p_female, speaker_p_female in place, and for blank
    rows left blank, why (`blank_reason`, a BlankReason's value). A pseudo-label needs an undisputed
    speaker at or above its gender's threshold, of a locale in `covered` (None: every locale); a
    self-reported or opted-out row is never changed."""
    stated = rows["gender"].notna()
    rows["gender_source"] = or_null(stated, SELF_REPORTED)
    rows["gender_confidence"] = np.where(stated, 1.0, np.nan)
    by_path = predictions.set_index("path")
    # the probabilities travel with every predicted row, labelled or not (below the threshold, say)
    rows["p_female"] = rows["path"].map(by_path["clip_p_female"]).astype(float)
    rows["speaker_p_female"] = rows["path"].map(by_path["speaker_p_female"]).astype(float)
    rows["blank_reason"] = None
    blank = rows.index[~stated & rows["path"].isin(by_path.index)]
    found = by_path.loc[rows.loc[blank, "path"]]
    label, confidence = found["label"].to_numpy(dtype=object), found["confidence"].to_numpy(dtype=float)
    missing = (found["error"] == MISSING_FILE).to_numpy()
    # a row whose clip is not on disk is no training example: not even the speaker's own answer fills it
    from_speaker = (found["label_source"] == "speaker").to_numpy() & ~missing
    by_model = (found["label_source"] == "model").to_numpy()
    disputed = found["speaker_disputed"].to_numpy(dtype=bool)
    threshold = np.array([thresholds.get(g) if isinstance(g, str) else None for g in label], dtype=object)
    certified = np.array([t is not None for t in threshold], dtype=bool)
    passes = certified & (confidence >= np.where(certified, threshold, np.inf).astype(float))
    if covered is None:
        in_covered_locale = np.ones(len(blank), dtype=bool)
    else:
        speakers_there = rows.loc[blank, "locale"].fillna("").astype(str).map(covered).fillna(0)
        in_covered_locale = (speakers_there > 0).to_numpy()
    take = from_speaker | (by_model & ~disputed & passes & in_covered_locale)
    rows.loc[blank[take], "gender"] = label[take]
    rows.loc[blank[take], "gender_source"] = np.where(from_speaker[take], INHERITED, PSEUDO)
    rows.loc[blank[take], "gender_confidence"] = confidence[take]
    reason = np.select(
        [missing, found["error"].notna().to_numpy(), disputed, ~certified, ~passes, ~in_covered_locale],
        [BlankReason.MISSING.value, BlankReason.UNDECODABLE.value, BlankReason.DISPUTED.value,
         BlankReason.NO_THRESHOLD.value,
         BlankReason.BELOW_THRESHOLD.value, BlankReason.NO_REFERENCE_LOCALE.value],
        default=BlankReason.NO_LABEL.value,
    )  # fmt: skip
    rows.loc[blank[~take], "blank_reason"] = reason[~take]

    # the blank rows infer did not predict: the speaker's own answer (infer skips the blank rows of a
    # speaker who opted out or answered other), or a TSV infer did not read
    unexplained = rows["gender"].isna() & rows["blank_reason"].isna()
    opted_out = rows["client_id"].isin(opted_out_speakers(manifest))
    rows.loc[unexplained & opted_out, "blank_reason"] = BlankReason.OPTED_OUT.value
    rows.loc[unexplained & ~opted_out & ~rows["source_tsv"].isin(tsvs), "blank_reason"] = (
        BlankReason.NOT_PREDICTED.value
    )


def blank_row_summary(rows: pd.DataFrame, manifest: pd.DataFrame) -> BlankRows:
    """The export's headline numbers: the blank rows (of the TSVs infer read), how many were labelled
    and by what, and why the others stayed blank (BlankReason.short)."""
    blank = rows[manifest.loc[rows.index, "gender"].isna()]
    reasons = blank.loc[blank["gender"].isna(), "blank_reason"].fillna(BlankReason.NO_LABEL.value)
    left = reasons.map({reason.value: reason.short for reason in BlankReason})
    return {
        "rows": int(len(blank)),
        "labelled": {source: int((blank["gender_source"] == source).sum()) for source in (PSEUDO, INHERITED)},
        "left_blank": {k: int(v) for k, v in left.value_counts().items()},
    }
