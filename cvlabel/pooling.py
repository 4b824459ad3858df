"""From clip predictions to speaker labels: gender is a property of a speaker (`client_id`).

The rule, in one place:
- A speaker's predicted clips are pooled: speaker_p_female = sigmoid(mean clip logit / T), where a
  clip's logit is the mean of the committee members that scored it (infer scores a speaker's first
  clips by every member, later ones by one member in turn: inference.scoring_turns);
  its decision and confidence follow labels.decide.
- A speaker is **disputed**, and never pseudo-labelled, when the committee's members disagree
  about the speaker (any member's own pooled decision, over the clips it scored, differs from the
  committee's), or when the
  speaker's clips disagree (fewer than MIN_CLIP_AGREEMENT of them decided as the speaker is): one
  Common Voice client_id can hold several people, a shared account.
- A speaker's blank rows take the speaker's own male/female answer on other rows (label_source
  `speaker`, confidence 1), unless the blank clips disagree among themselves: a shared account's
  answer is one person's, so it is not inherited blindly; the speaker is then disputed.
- Otherwise the pooled prediction labels every clip of the speaker (label_source `model`).
- Rows whose clip failed to decode keep a null label unless the speaker's answer covers them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import (
    BINARY_GENDERS,
    FEMALE,
    LABELS,
    calibrate,
    decide,
    decide_logits,
    label_index,
    label_names,
    or_null,
)
from .splits import speaker_genders

MIN_CLIP_AGREEMENT = 0.75  # a speaker whose clips split more evenly than 3:1 may be two people


def speaker_table(clips: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """Per speaker (index client_id) of predicted clips with `client_id`, `logit` (the committee's)
    and `member_logits` (a list per clip; lists may differ in length between speakers):
    clips, logit, p_female, predicted (0/1), confidence, member_agreement, clip_agreement, disputed."""
    if clips.empty:
        return pd.DataFrame(
            columns=[
                "clips",
                "logit",
                "p_female",
                "predicted",
                "confidence",
                "member_agreement",
                "clip_agreement",
                "disputed",
            ]
        )
    speakers = clips["client_id"].to_numpy()
    grouped = pd.DataFrame({"logit": clips["logit"].to_numpy(dtype=float)}).groupby(speakers)["logit"]
    table = pd.DataFrame({"clips": grouped.size(), "logit": grouped.mean()})
    table["p_female"] = calibrate(table["logit"].to_numpy(), temperature)
    predicted, confidence = decide(table["p_female"].to_numpy())
    table["predicted"], table["confidence"] = predicted, confidence

    # each member's own pooled logit of the speaker (members that did not predict a clip: NaN)
    lists = clips["member_logits"].tolist()
    width = max(len(x) for x in lists)
    members = np.full((len(lists), width), np.nan)
    for row, values in enumerate(lists):
        members[row, : len(values)] = values
    pooled = pd.DataFrame(members).groupby(speakers).mean().reindex(table.index).to_numpy()
    voted = ~np.isnan(pooled)
    agrees = (decide_logits(pooled) == table["predicted"].to_numpy()[:, None]) & voted
    table["member_agreement"] = agrees.sum(axis=1) / np.maximum(voted.sum(axis=1), 1)

    clip_says = decide_logits(clips["logit"].to_numpy(dtype=float))
    same = clip_says == table["predicted"].reindex(speakers).to_numpy()
    table["clip_agreement"] = pd.Series(same.astype(float)).groupby(speakers).mean().reindex(table.index)
    table["disputed"] = (table["member_agreement"] < 1.0) | (table["clip_agreement"] < MIN_CLIP_AGREEMENT)
    return table


def reference_speakers(
    clips: pd.DataFrame, temperature: float, blank_clips_per_speaker: np.ndarray | None = None
) -> pd.DataFrame:
    """Self-reported reference clips (`client_id`, `gender`, `logit`, `member_logits`) pooled as blank
    speakers are (speaker_table), with `correct`: the pooled decision is the speaker's own answer.
    Rows without a male/female answer or a logit are left out. With `blank_clips_per_speaker` (the
    predicted clips of each blank speaker of the release), each reference speaker is scored on as many
    clips as a blank speaker has (scored_as_blank)."""
    clips = clips[clips["gender"].isin(BINARY_GENDERS) & clips["logit"].notna()]
    if blank_clips_per_speaker is not None and len(blank_clips_per_speaker):
        clips = scored_as_blank(clips, blank_clips_per_speaker)
    speakers = speaker_table(clips, temperature)
    truth = clips.groupby("client_id")["gender"].first().reindex(speakers.index)
    speakers["correct"] = label_index(truth) == speakers["predicted"].to_numpy()
    return speakers


def scored_as_blank(clips: pd.DataFrame, blank_clips_per_speaker: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Each speaker's clips cut to k of them at random, k drawn from the blank speakers' clips per
    speaker (at most the speaker's own). A voice pooled over 8 clips is surer, and more often right,
    than the same voice on one clip, and Common Voice's blank speakers mostly have 1-3: a claim
    measured on whole reference speakers would overstate the precision of the blank rows it labels.
    Seeded, so an export is reproducible."""
    rng = np.random.default_rng(seed)
    speaker_ids, speaker_of = np.unique(clips["client_id"].to_numpy(), return_inverse=True)
    wanted = rng.choice(np.asarray(blank_clips_per_speaker, dtype=int), size=len(speaker_ids))
    rank = pd.Series(rng.random(len(clips))).groupby(speaker_of).rank(method="first").to_numpy()
    return clips[rank <= wanted[speaker_of]]


def pool_by_speaker(clips: pd.DataFrame, manifest: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """Clip predictions (PREDICTION_SCHEMA) -> the rows of FINAL_SCHEMA, by the rule above."""
    final = clips.copy()
    final["clip_p_female"] = final["p_female"]
    ok = final["logit"].notna().to_numpy()
    table = speaker_table(final[ok], temperature)
    by_speaker = final["client_id"]
    final["speaker_n_clips"] = by_speaker.map(table["clips"]).fillna(0).astype("int64")
    final["speaker_p_female"] = by_speaker.map(table["p_female"]).astype(float)
    final["speaker_member_agreement"] = by_speaker.map(table["member_agreement"]).astype(float)
    final["speaker_clip_agreement"] = by_speaker.map(table["clip_agreement"]).astype(float)
    final["speaker_disputed"] = by_speaker.map(table["disputed"]).fillna(False).astype(bool)

    genders, _ = speaker_genders(manifest)
    stated = by_speaker.map(genders[genders.isin(BINARY_GENDERS)])
    clips_split = final["speaker_clip_agreement"].fillna(1.0) < MIN_CLIP_AGREEMENT
    inherit = (stated.notna() & ~clips_split).to_numpy()
    predicted = ok & final["speaker_p_female"].notna().to_numpy()
    model_label = label_names(decide(final["speaker_p_female"].fillna(0.5).to_numpy())[0])
    final["label"] = np.where(inherit, stated, or_null(predicted, model_label))
    model_p = np.where(predicted, final["speaker_p_female"], np.nan)
    final["p_female"] = np.where(inherit, (stated == LABELS[FEMALE]).astype(float), model_p)
    final["confidence"] = decide(final["p_female"].to_numpy())[1]
    final["label_source"] = np.where(inherit, "speaker", or_null(predicted, "model"))
    final["label"] = final["label"].astype(object).where(final["label"].notna(), None)
    final["label_source"] = final["label_source"].astype(object).where(final["label_source"].notna(), None)
    return final
