"""Plain-text summaries of a release for `cvlabel inspect`."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import Config
from .corpus import read_release
from .splits import SPLITS, assign_splits

GENDER_ORDER = ["male", "female", "other", "declined", "blank"]


def describe_release(corpus_dir: str | Path, config: Config) -> str:
    """Rows per TSV and gender, the unlabeled rows and speakers, and the planned splits."""
    manifest = read_release(corpus_dir)
    gender = manifest["gender"].fillna("blank")
    table = pd.crosstab(manifest["source_tsv"], gender).reindex(columns=GENDER_ORDER, fill_value=0)
    blank = manifest["gender"].isna()
    speakers_all_blank = manifest.groupby("client_id")["gender"].agg(lambda g: g.isna().all())
    _, report = assign_splits(manifest, config.splits)

    lines = [
        f"{corpus_dir}: {len(manifest)} clips, {manifest['client_id'].nunique()} speakers",
        "",
        "rows by TSV and gender:",
        table.to_string(),
        "",
        f"unlabeled (blank gender): {int(blank.sum())} rows; "
        f"{int(speakers_all_blank.sum())} speakers never state a gender",
        "",
        f"splits over {', '.join(config.splits.source_tsvs)} (speakers / clips, male + female):",
    ]
    for split in SPLITS:
        spk, clips = report.speakers[split], report.clips[split]
        lines.append(
            f"  {split:<5} {spk['male']:>5} + {spk['female']:<5} speakers  {clips['male']:>7} + {clips['female']:<7} clips"
        )
    if report.capped_clips:
        lines.append(f"  {report.capped_clips} train clips over the cap of {config.splits.max_clips_per_speaker} per speaker")
    if report.conflicting_speakers:
        lines.append(f"  {len(report.conflicting_speakers)} speakers whose rows disagree about gender are left out")
    return "\n".join(lines)
