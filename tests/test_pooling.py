"""The per-speaker rule: pooled committee logits, disputed speakers, shared accounts."""

import numpy as np
import pandas as pd

from cvlabel.certify import certified_thresholds
from cvlabel.pooling import MIN_CLIP_AGREEMENT, pool_by_speaker, reference_speakers, speaker_table


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


def reference_clips(speakers):
    """speakers: (client_id, gender, [clip logits]) -> reference rows, one member a clip."""
    rows = [(cid, gender, x) for cid, gender, logits in speakers for x in logits]
    logits = [float(r[2]) for r in rows]
    return pd.DataFrame({"client_id": [r[0] for r in rows], "gender": [r[1] for r in rows],
                         "logit": logits, "member_logits": [[x] for x in logits]})  # fmt: skip


def test_reference_speakers_scored_at_the_blank_speakers_clip_counts():
    # eight-clip women, each with two clips confidently wrong (pooled, they are right); one-clip men, right
    rng = np.random.default_rng(0)
    speakers = [(f"long{i}", "female", [3.0] * 6 + [-3.0] * 2) for i in range(100)]
    speakers += [(f"short{i}", "male", [-3.0]) for i in range(300)]
    rows = reference_clips(speakers).sample(frac=1.0, random_state=1)
    whole = reference_speakers(rows, 1.0)
    assert whole["correct"].all() and whole.loc["long0", "clips"] == 8
    # a release whose blank speakers all have one clip: every reference speaker is scored on one clip
    single = reference_speakers(rows, 1.0, np.ones(50, dtype=int))
    assert (single["clips"] == 1).all() and len(single) == 400
    # a long speaker's one clip is wrong a quarter of the time, as a blank speaker's one clip would be
    wrong = 1 - single.loc[[f"long{i}" for i in range(100)], "correct"].mean()
    assert 0.1 < wrong < 0.4
    mixed = reference_speakers(rows, 1.0, rng.choice([1, 2, 3], 300))
    assert mixed["clips"].max() <= 3 and (mixed.loc[[f"short{i}" for i in range(300)], "clips"] == 1).all()
    # and the claim drops: those wrong clips land among the men, whom whole speakers showed flawless
    claim = certified_thresholds(whole.assign(disputed=False), 0.95, 0.95)["male"]
    honest = certified_thresholds(single.assign(disputed=False), 0.95, 0.95)["male"]
    assert claim["certified"] and claim["precision"] is not None
    assert honest["threshold"] is None or (honest["precision"] or 1.0) < claim["precision"]
    # seeded: the same export twice scores the same clips
    assert reference_speakers(rows, 1.0, np.ones(5, dtype=int)).equals(single)
