"""Speaker-disjoint, gender-stratified train/dev/test splits over the self-reported binary rows.

Gender is a property of a speaker (`client_id`), so whole speakers go to one split. Placement
depends only on the seed and each speaker's id (a hash), never on row order, so the same
release always gives the same splits. Speakers in the release's own dev.tsv/test.tsv stay there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import SplitConfig
from .corpus import clips_dir, read_release
from .errors import ConfigError, CvlabelError
from .labels import BINARY_GENDERS, label_index

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
EVAL_SPLITS = SPLITS + ("all",)
SPLIT_COLUMNS = ("path", "client_id", "gender", "source_tsv", "cv_split")  # all that assign_splits reads


@dataclass
class SplitReport:
    conflicting_speakers: list[str] = field(default_factory=list)  # rows disagree about gender: left out
    capped_clips: int = 0  # train clips left out by max_clips_per_speaker
    speakers: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> gender -> speakers
    clips: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> gender -> clips


def speaker_genders(manifest: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """Each speaker's one self-reported gender, and the speakers whose rows disagree.

    Blank rows say nothing; a speaker whose non-blank rows hold more than one value (say
    `male` and `declined`) is a conflict. Returns (client_id -> gender, sorted conflicting ids).
    """
    stated = manifest.loc[manifest["gender"].notna(), ["client_id", "gender"]].drop_duplicates()
    answers = stated["client_id"].value_counts()  # distinct answers a speaker (no function a speaker: 10^6 rows)
    conflicting = sorted(answers.index[answers > 1])
    agreed = stated[stated["client_id"].map(answers) == 1].set_index("client_id")["gender"].sort_index()
    return agreed, conflicting


def assign_splits(manifest: pd.DataFrame, config: SplitConfig = SplitConfig()) -> tuple[pd.DataFrame, SplitReport]:
    """The manifest with a `split` column: train/dev/test, or "" for rows no split uses.

    A row is used when it comes from one of config.source_tsvs, says male or female, and its
    speaker's rows agree. Train keeps at most config.max_clips_per_speaker clips per speaker.
    """
    _check_fractions(config)
    report = SplitReport()
    genders, report.conflicting_speakers = speaker_genders(manifest)
    if report.conflicting_speakers:
        log.warning(
            "%d speakers have rows that disagree about gender and are left out of training: %s",
            len(report.conflicting_speakers),
            ", ".join(report.conflicting_speakers[:5]) + (" ..." if len(report.conflicting_speakers) > 5 else ""),
        )

    usable = (
        manifest["source_tsv"].isin(config.source_tsvs)
        & manifest["gender"].isin(BINARY_GENDERS)
        & ~manifest["client_id"].isin(report.conflicting_speakers)
    )
    speakers = genders[genders.isin(BINARY_GENDERS) & genders.index.isin(manifest.loc[usable, "client_id"])]
    fixed = _release_speaker_splits(manifest)
    split_of: dict[str, str] = {}
    for gender in BINARY_GENDERS:
        ids = sorted(speakers.index[speakers == gender], key=lambda cid: _rank(config.seed, cid))
        split_of.update(_allocate(ids, fixed, config))

    result = manifest.copy()
    result["split"] = result["client_id"].map(split_of).where(usable, "").fillna("").astype(object)
    if config.max_clips_per_speaker > 0:
        in_train = result["split"].eq("train")
        order = result.loc[in_train, "path"].map(lambda p: _rank(config.seed, p))
        rank_in_speaker = order.groupby(result.loc[in_train, "client_id"]).rank(method="first")
        capped = rank_in_speaker.index[rank_in_speaker > config.max_clips_per_speaker]
        result.loc[capped, "split"] = ""
        report.capped_clips = len(capped)

    used = result.loc[result["split"] != "", ["split", "gender", "client_id"]]
    for split in SPLITS:
        part = used[used["split"] == split]
        report.speakers[split] = {g: int(part.loc[part["gender"] == g, "client_id"].nunique()) for g in BINARY_GENDERS}
        report.clips[split] = {g: int((part["gender"] == g).sum()) for g in BINARY_GENDERS}
    return result, report


def labelled_rows(corpus_dir: str | Path, config: SplitConfig, split: str) -> pd.DataFrame:
    """Self-reported male/female rows of one split (or of all splits) with `clip` and `label`."""
    if split not in EVAL_SPLITS:
        raise CvlabelError(f"unknown split {split!r}; choose from {', '.join(EVAL_SPLITS)}")
    manifest, _ = assign_splits(read_release(corpus_dir), config)
    rows = manifest[manifest["split"] != ""] if split == "all" else manifest[manifest["split"] == split]
    rows = rows.copy()
    folder = clips_dir(corpus_dir)
    rows["clip"] = [str(folder / p) for p in rows["path"]]
    rows["label"] = label_index(rows["gender"])
    return rows.reset_index(drop=True)


def assign_folds(rows: pd.DataFrame, folds: int, seed: int) -> np.ndarray:
    """A fold index in [0, folds) for each row, by speaker: a speaker's rows share one fold, each
    gender's speakers are dealt round-robin in hashed order, so every fold holds both genders.

    rows: labelled rows with `client_id` and `gender`. Raises CvlabelError when a gender has fewer
    speakers than folds.
    """
    if folds < 2:
        raise ConfigError(f"train.folds must be at least 2, got {folds}")
    fold_of: dict[str, int] = {}
    for gender in BINARY_GENDERS:
        ids = sorted(set(rows.loc[rows["gender"] == gender, "client_id"]), key=lambda cid: _rank(seed, cid))
        if len(ids) < folds:
            raise CvlabelError(
                f"train.folds={folds} needs at least {folds} {gender} train speakers, the release has {len(ids)}; "
                "lower train.folds or label more speakers"
            )
        fold_of.update({cid: index % folds for index, cid in enumerate(ids)})
    return rows["client_id"].map(fold_of).to_numpy(dtype=int)


def spread_over_speakers(rows: pd.DataFrame, clips: int, seed: int) -> pd.DataFrame:
    """At most `clips` of the rows (0: all): every speaker's first clip, then every one's second, and so on,
    the speakers of a round in a seeded order (not the TSV's, which may hold one locale after another): as
    many speakers as possible, none with more clips than another but for one. Kept in the rows' order."""
    if clips <= 0 or len(rows) <= clips:
        return rows
    turn = rows.groupby("client_id", sort=False).cumcount().to_numpy()
    speaker_order = rows["client_id"].map(lambda cid: _rank(seed, cid)).to_numpy()
    chosen = np.sort(np.lexsort((speaker_order, turn))[:clips])
    return rows.iloc[chosen].reset_index(drop=True)


def _allocate(ids: list[str], fixed: dict[str, str], config: SplitConfig) -> dict[str, str]:
    """Place one gender's speakers (in hashed order) so dev and test reach their shares."""
    n = len(ids)
    wanted = {}
    for split, fraction in (("test", config.test_fraction), ("dev", config.dev_fraction)):
        share = round(n * fraction)
        # with 3 or more speakers, every held-out split gets at least one of each gender
        wanted[split] = max(share, 1) if fraction > 0 and n >= 3 else share
    placed = {cid: fixed[cid] for cid in ids if cid in fixed}
    for split in ("test", "dev"):
        missing = wanted[split] - sum(1 for s in placed.values() if s == split)
        for cid in [c for c in ids if c not in placed][: max(0, missing)]:
            placed[cid] = split
    return {cid: placed.get(cid, "train") for cid in ids}


def _release_speaker_splits(manifest: pd.DataFrame) -> dict[str, str]:
    """Speakers the release itself puts in test or dev (test wins if a speaker is in both)."""
    fixed: dict[str, str] = {}
    for split in ("dev", "test"):
        fixed.update(dict.fromkeys(manifest.loc[manifest["cv_split"] == split, "client_id"], split))
    return fixed


def _rank(seed: int, key: str) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def _check_fractions(config: SplitConfig) -> None:
    for name in ("dev_fraction", "test_fraction"):
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ConfigError(f"splits.{name} must be in [0, 1), got {value}")
    if config.dev_fraction + config.test_fraction >= 1:
        raise ConfigError("splits.dev_fraction + splits.test_fraction must leave speakers for train")
