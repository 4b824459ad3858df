"""The per-speaker rule: pooled committee logits, disputed speakers, shared accounts."""

import numpy as np
import pandas as pd

from cvlabel.pooling import MIN_CLIP_AGREEMENT, pool_by_speaker, speaker_table


def clips(rows):
    """rows: (client_id, [member logits]) per clip."""
    frame = pd.DataFrame({"client_id": [r[0] for r in rows], "member_logits": [list(r[1]) for r in rows]}).assign(
        path=[f"c{i}.mp3" for i in range(len(rows))], source_tsv="validated", duration_s=np.nan, error=None
    )
    frame["logit"] = [float(np.mean(r[1])) for r in rows]
    frame["p_female"] = 1 / (1 + np.exp(-frame["logit"]))
    frame["label"] = np.where(frame["logit"] >= 0, "female", "male")
    frame["confidence"] = np.maximum(frame["p_female"], 1 - frame["p_female"])
    return frame


def manifest(answers):
    return pd.DataFrame({"client_id": list(answers), "gender": list(answers.values()), "path": "x"})


def test_a_client_id_whose_clips_disagree_is_disputed_not_pooled():
    # a low and a high voice behind one account: two clips say male, two say female
    table = speaker_table(
        clips([("shared", [3, 3]), ("shared", [4, 4]), ("shared", [-3, -3]), ("shared", [-4, -4])]), 1
    )
    assert table.loc["shared", "clip_agreement"] == 0.5 < MIN_CLIP_AGREEMENT and table.loc["shared", "disputed"]


def test_a_member_that_disagrees_disputes_the_speaker():
    table = speaker_table(clips([("a", [3, 2, -1]), ("a", [3, 1, -2]), ("b", [3, 2, 1]), ("b", [2, 2, 2])]), 1)
    assert table.loc["a", "member_agreement"] == 2 / 3 and table.loc["a", "disputed"]
    assert table.loc["b", "member_agreement"] == 1 and not table.loc["b", "disputed"]
    assert table.loc["b", "clips"] == 2 and table.loc["b", "logit"] == 2.0


def test_one_member_speakers_and_committee_speakers_share_a_table():
    """The reference mixes out-of-fold speakers (one member each) and committee speakers."""
    table = speaker_table(clips([("oof", [2.0]), ("oof", [1.0]), ("dev", [1, 2, 3])]), 2)
    assert table.loc["oof", "member_agreement"] == 1 and table.loc["oof", "p_female"] == 1 / (1 + np.exp(-0.75))


def test_a_shared_account_does_not_inherit_its_answer():
    frame = clips([("s", [3, 3]), ("s", [-3, -3]), ("t", [-3, -3]), ("t", [-2, -2])])
    final = pool_by_speaker(frame, manifest({"s": "male", "t": "female"}), 1.0)
    s, t = final[final["client_id"] == "s"], final[final["client_id"] == "t"]
    assert (s["label_source"] == "model").all() and s["speaker_disputed"].all()  # clips disagree: not inherited
    assert (t["label_source"] == "speaker").all() and (t["label"] == "female").all()  # the model's doubt is not enough
