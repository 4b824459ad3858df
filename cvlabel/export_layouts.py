"""Where each labelled row of an export goes: the Parquet layouts of `cvlabel export parquet`.

- classifier (the default): train/dev/test/unused for training a gender classifier. dev and test
  hold the self-reported male/female rows of the model run's dev and test speakers (the untouched
  evaluation data training used); pseudo-labels go to train only, at most
  splits.max_clips_per_speaker a speaker, optionally rebalanced to a female share; unused holds the
  rest, each with its `unused_reason`.
- release: every row in the release's own train/dev/test split (other rows in the file of their
  TSV); cap and rebalance become a `sample_weight` column instead of moving rows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import EXPORT_SPLITS, RELEASE_LAYOUT_FILES
from .cache import AudioCache, cache_root
from .config import Config, ExportOptions
from .corpus import SPLIT_TSVS, clips_dir
from .labelling import INHERITED, PSEUDO, SELF_REPORTED, BlankReason
from .labels import BINARY_GENDERS
from .release_labels import LabelledRelease, reason_counts
from .splits import SPLIT_COLUMNS, assign_splits
from .summaries import FormatCounts

log = logging.getLogger(__name__)

SOURCE_ORDER = {SELF_REPORTED: 0, INHERITED: 1, PSEUDO: 2}  # who is kept first when capping or rebalancing
# what capping and rebalancing rank rows by: a copy of these, not of whole rows (10^6 rows)
RANKED_COLUMNS = ["client_id", "gender", "gender_source", "gender_confidence", "path"]
Layout = tuple[pd.DataFrame, tuple[str, ...], FormatCounts]  # the rows with `split`, the files, summary counts


def classifier_layout(rows: pd.DataFrame, labelled: LabelledRelease, options: ExportOptions) -> Layout:
    """Place the rows in train/dev/test/unused for training a classifier; the summary's counts."""
    config, manifest = labelled.config, labelled.manifest
    # the speakers' placement decides the export's splits; the training cap is applied below
    with_splits, _ = assign_splits(manifest[list(SPLIT_COLUMNS)], replace(config.splits, max_clips_per_speaker=0))
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
    cap_per_speaker(rows, config.splits.max_clips_per_speaker)
    if options.rebalance:
        rebalance(rows, options.female_share)
    rows.loc[rows["unused_reason"].notna(), "split"] = "unused"
    invalidated = int((rows["split"].eq("train") & rows["source_tsv"].eq("invalidated")).sum())
    if invalidated:
        log.warning(
            "%d rows of invalidated.tsv (clips Common Voice's voters rejected) are in train.parquet, since infer read "
            "--tsv invalidated; --layout release keeps them apart, in invalidated.parquet", invalidated,
        )  # fmt: skip
    counts: FormatCounts = {
        "train_before_cap_and_rebalance": before,
        "train_after": _counts(rows[rows["split"] == "train"]),
        "invalidated_rows_in_train": invalidated,
        "unused_reasons": reason_counts(rows["unused_reason"]),
    }
    return rows.drop(columns=["blank_reason"]), EXPORT_SPLITS, counts


def release_layout(rows: pd.DataFrame, labelled: LabelledRelease, options: ExportOptions) -> Layout:
    """Keep every row, in the release's own split or else its TSV's file; the summary's counts."""
    own_split = any((labelled.corpus_dir / f"{name}.tsv").is_file() for name in SPLIT_TSVS)
    if not own_split:
        log.warning("%s has no train/dev/test.tsv: every row goes to the file of its TSV (validated, other, ...)",
                    labelled.corpus_dir)  # fmt: skip
    rows["split"] = rows["cv_split"].where(rows["cv_split"] != "", rows["source_tsv"])
    share = options.female_share if options.rebalance else None
    rows["sample_weight"] = sample_weights(rows, labelled.config.splits.max_clips_per_speaker, share)
    files = tuple(name for name in RELEASE_LAYOUT_FILES if (rows["split"] == name).any())
    return rows, files, {"release_split": own_split, "blank_reasons": reason_counts(rows["blank_reason"])}


def sample_weights(rows: pd.DataFrame, cap: int, female_share: float | None) -> pd.Series:
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


def _unusable_clips(rows: pd.DataFrame, corpus_dir: Path, config: Config) -> pd.Series:
    """Why each labelled row's clip cannot be trained on (None where it can): missing or empty on
    disk, or recorded as undecodable in the decode cache by training."""
    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    folder = str(clips_dir(corpus_dir))
    labelled = np.flatnonzero(rows["gender"].isin(BINARY_GENDERS).to_numpy())
    paths = rows["path"].to_numpy()
    reasons: list[str | None] = [None] * len(rows)
    on_disk, clips = [], []  # a clip's path only for the labelled rows on disk: 10^6 Paths cost ~0.5 GB
    for index in labelled:
        clip = os.path.join(folder, paths[index])
        try:
            size = os.stat(clip).st_size
        except OSError:
            size = -1
        if size <= 0:
            reasons[index] = "clip missing" if size < 0 else "clip is empty (0 bytes)"
        else:
            on_disk.append(index)
            clips.append(clip)
    failed = cache.failed_among(clips)
    for index, clip in zip(on_disk, clips, strict=True):
        if clip in failed:
            reasons[index] = "clip could not be decoded"
    return pd.Series(reasons, index=rows.index, dtype=object)


def cap_per_speaker(rows: pd.DataFrame, cap: int) -> None:
    """Mark train rows over `cap` per speaker unused: self-reported kept first, then by confidence."""
    if cap <= 0:
        return
    train = rows.loc[(rows["split"] == "train") & rows["unused_reason"].isna(), RANKED_COLUMNS]
    order = train.assign(_source=train["gender_source"].map(SOURCE_ORDER), _conf=-train["gender_confidence"])
    order = order.sort_values(["client_id", "_source", "_conf", "path"])
    over = order.groupby("client_id").cumcount() >= cap
    rows.loc[order.index[over.to_numpy()], "unused_reason"] = f"over {cap} clips per speaker"


def rebalance(rows: pd.DataFrame, female_share: float) -> None:
    """Drop majority-gender train rows (pseudo first, lowest confidence first) until the share holds.

    Pseudo-labels of the minority gender are all kept: they are what enlarges it.
    """
    train = rows.loc[(rows["split"] == "train") & rows["unused_reason"].isna(), RANKED_COLUMNS]
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
