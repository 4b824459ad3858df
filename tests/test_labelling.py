"""The labelling rule on small tables: eligibility, locales without reference speakers, blank reasons."""

import pandas as pd

from cvlabel.labelling import (
    BlankReason,
    blank_row_summary,
    eligible_rows,
    label_blank_rows,
    reference_locales,
)


def release(rows):
    """rows: (client_id, gender or None, locale, source_tsv)."""
    frame = pd.DataFrame(rows, columns=["client_id", "gender", "locale", "source_tsv"])
    frame["path"] = [f"c{i}.mp3" for i in range(len(frame))]
    return frame


def predictions(manifest, confidence=0.99, label="female"):
    blank = manifest[manifest["gender"].isna()]
    return pd.DataFrame({
        "path": blank["path"], "client_id": blank["client_id"], "label": label, "confidence": confidence,
        "label_source": "model", "speaker_disputed": False, "error": None, "clip_p_female": 0.9,
        "speaker_p_female": 0.9,
    })  # fmt: skip


def test_opted_out_speakers_and_other_tsvs_are_not_eligible():
    manifest = release([("a", None, "fr", "validated"), ("a", "do_not_wish_to_say", "fr", "validated"),
                        ("b", None, "fr", "validated"), ("c", None, "fr", "invalidated")])  # fmt: skip
    eligible, opted_out = eligible_rows(manifest, ["validated", "other"])
    assert eligible.tolist() == [False, False, True, False] and opted_out == 1


def test_a_locale_without_reference_speakers_is_left_blank():
    manifest = release([("r1", "male", "fr", "validated"), ("r2", "female", "fr", "validated"),
                        ("b1", None, "fr", "validated"), ("b2", None, "de", "validated")])  # fmt: skip
    reference = pd.DataFrame(index=pd.Index(["r1", "r2"], name="client_id"))
    covered = reference_locales(manifest, reference)
    assert covered == {"fr": 2}  # de has blank speakers only
    rows = manifest.copy()
    label_blank_rows(rows, manifest, predictions(manifest), {"male": 0.9, "female": 0.9}, ["validated"], covered)
    by_speaker = rows.set_index("client_id")
    assert by_speaker.loc["b1", "gender"] == "female" and by_speaker.loc["b1", "gender_source"] == "pseudo"
    assert pd.isna(by_speaker.loc["b2", "gender"])
    assert by_speaker.loc["b2", "blank_reason"] == BlankReason.NO_REFERENCE_LOCALE.value
    # without the locale rule (a threshold the user chose) the same row is labelled
    free = manifest.copy()
    label_blank_rows(free, manifest, predictions(manifest), {"male": 0.9, "female": 0.9}, ["validated"], None)
    assert free.set_index("client_id").loc["b2", "gender"] == "female"
    assert blank_row_summary(rows, manifest)["left_blank"] == {"of locales no reference speaker covers": 1}


def test_a_release_of_one_locale_needs_no_locale_rule():
    manifest = release([("r1", "male", "fr", "validated"), ("b1", None, "fr", "validated")])
    assert reference_locales(manifest, pd.DataFrame(index=pd.Index(["r1"]))) is None
    assert reference_locales(manifest.drop(columns=["locale"]), pd.DataFrame(index=pd.Index(["r1"]))) is None


def test_every_reason_a_row_stays_blank_is_one_enum_member_with_headline_words():
    manifest = release([("r", "male", "fr", "validated"), ("low", None, "fr", "validated"),
                        ("split", None, "fr", "validated"), ("bad", None, "fr", "validated"),
                        ("out", None, "fr", "validated"), ("out", "non-binary", "fr", "validated"),
                        ("unread", None, "fr", "other")])  # fmt: skip
    found = predictions(manifest[manifest["client_id"].isin(["low", "split", "bad"])], confidence=0.95)
    found.loc[found["client_id"] == "split", "speaker_disputed"] = True
    found.loc[found["client_id"] == "bad", "error"] = "no speech found"
    rows = manifest.copy()
    label_blank_rows(rows, manifest, found, {"male": 0.99, "female": 0.99}, ["validated"], None)
    reasons = rows.set_index("client_id")["blank_reason"].dropna()
    assert reasons.loc["low"] == BlankReason.BELOW_THRESHOLD.value
    assert reasons.loc["split"] == BlankReason.DISPUTED.value
    assert reasons.loc["bad"] == BlankReason.UNDECODABLE.value
    assert reasons.loc["out"] == BlankReason.OPTED_OUT.value
    assert reasons.loc["unread"] == BlankReason.NOT_PREDICTED.value
    assert all(BlankReason(value).short for value in reasons)
    stated = rows.set_index("client_id").loc["r"]
    assert (
        stated["gender"] == "male" and stated["gender_source"] == "self_reported" and stated["gender_confidence"] == 1
    )
