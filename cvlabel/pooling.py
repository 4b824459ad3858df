"""From clip predictions to speaker labels: gender is a property of a speaker (`client_id`).

The one rule, in one place:
- A speaker's blank rows take the speaker's own male/female answer on other rows when they gave
  one (label_source `speaker`, confidence 1).
- Otherwise the speaker's predicted clips are pooled: speaker_p_female = sigmoid(mean clip logit
  / T), and every clip of the speaker gets that label and confidence (label_source `model`).
- Rows whose clip failed to decode keep a null label unless the speaker's answer covers them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .labels import BINARY_GENDERS, FEMALE, LABELS, calibrate, decide, label_names, or_null
from .splits import speaker_genders


def pool_by_speaker(clips: pd.DataFrame, manifest: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """Clip predictions (PREDICTION_SCHEMA) -> the rows of FINAL_SCHEMA, by the rule above."""
    final = clips.copy()
    final["clip_p_female"] = final["p_female"]
    pooled = final.dropna(subset=["logit"]).groupby("client_id")["logit"].agg(["mean", "size"])
    final["speaker_n_clips"] = final["client_id"].map(pooled["size"]).fillna(0).astype("int64")
    final["speaker_p_female"] = calibrate(final["client_id"].map(pooled["mean"]).to_numpy(dtype=float), temperature)
    genders, _ = speaker_genders(manifest)
    stated = final["client_id"].map(genders[genders.isin(BINARY_GENDERS)])
    ok = final["error"].isna()
    model_label = label_names(decide(final["speaker_p_female"])[0])
    final["label"] = np.where(stated.notna(), stated, or_null(ok, model_label))
    final["p_female"] = np.where(stated.notna(), (stated == LABELS[FEMALE]).astype(float), final["speaker_p_female"])
    final.loc[~ok & stated.isna(), "p_female"] = np.nan
    final["confidence"] = decide(final["p_female"])[1]
    final["label_source"] = np.where(stated.notna(), "speaker", or_null(ok, "model"))
    final["label"] = final["label"].astype(object).where(final["label"].notna(), None)
    return final
