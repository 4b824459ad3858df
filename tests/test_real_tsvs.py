"""Real releases' TSVs: rows copied byte for byte from two Common Voice releases (tests/fixtures/README.md).

ru-cv7 has the column set of releases 5-7 (`accent`, `segment`) and the old vocabulary; pl-cv17 is
a v17 delta (`sentence_id`, `sentence_domain`, `variant`, `accents`, the v17 vocabulary) with a
reported.tsv and a clip_durations.tsv beside its clip TSVs. Neither has clips: reading and
`inspect` need the TSVs alone.
"""

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cvlabel.artifacts import write_augmented_tsv
from cvlabel.cli import app
from cvlabel.config import InferOptions
from cvlabel.corpus import BINARY_GENDER_NAMES, gender_vocabulary, read_release
from cvlabel.errors import CorpusError
from cvlabel.inference import select_rows
from cvlabel.splits import speaker_genders

FIXTURES = Path(__file__).parent / "fixtures"
RU, PL = FIXTURES / "ru-cv7", FIXTURES / "pl-cv17"
runner = CliRunner()


def by_speaker(manifest: pd.DataFrame) -> dict[str, str]:
    """Each speaker's one stated gender, by the first 8 characters of the client_id."""
    genders, conflicting = speaker_genders(manifest)
    assert conflicting == []
    return {client_id[:8]: gender for client_id, gender in genders.items()}


def test_ru_cv7_old_columns_and_vocabulary():
    manifest = read_release(RU, need_clips=False)
    assert manifest["gender_raw"].tolist() == ["", "male", "male", "male", "female", "", "female", "female",
                                               "", "", "other", "other"]  # fmt: skip
    assert manifest["gender"].tolist() == [None, "male", "male", "male", "female", None, "female", "female",
                                           None, None, "other", "other"]  # fmt: skip
    assert by_speaker(manifest) == {"c3263673": "male", "d640393c": "male", "db602929": "male",
                                    "f74762bf": "female", "542ff449": "female", "2497cabf": "other"}  # fmt: skip
    assert manifest["client_id"].nunique() == 9  # three speakers never state a gender
    # a speaker who gave an age and no gender is blank, not guessed
    aged = manifest[manifest["client_id"].str.startswith("b36909ba")]
    assert aged["age"].tolist() == ["twenties", "twenties"] and aged["gender"].isna().all()
    assert {"accent", "segment"} <= set(manifest.columns)
    assert not {"accents", "variant", "sentence_id", "sentence_domain"} & set(manifest.columns)
    assert set(manifest["segment"]) == {"Singleword Benchmark"} and set(manifest["sentence"]) >= {"Эй", "ноль"}
    assert gender_vocabulary(manifest["gender_raw"]) == "v16"
    # test.tsv, the release's own split, lists four of the validated clips; no clip_durations.tsv
    assert manifest.loc[manifest["cv_split"] == "test", "path"].tolist() == [
        "common_voice_ru_22485647.mp3",
        "common_voice_ru_22159794.mp3",
        "common_voice_ru_21670602.mp3",
        "common_voice_ru_21781606.mp3",
    ]
    assert set(manifest["cv_split"]) == {"test", ""} and manifest["duration_s"].isna().all()
    assert set(manifest["source_tsv"]) == {"validated"}


def test_pl_cv17_new_columns_vocabulary_durations_and_reported():
    manifest = read_release(PL, need_clips=False)
    assert manifest["source_tsv"].value_counts().to_dict() == {"validated": 11, "other": 8, "invalidated": 4}
    validated = manifest[manifest["source_tsv"] == "validated"]
    assert validated["gender"].tolist() == [None, "male", None, "male", "female", "female", "male", "female",
                                            None, None, "male"]  # fmt: skip
    assert set(manifest["gender_raw"]) == {"", "male_masculine", "female_feminine"}
    # 7aaafe34 left the answer blank on their first clips and said male_masculine on later ones
    assert by_speaker(manifest) == {"0df23af0": "male", "05beeef7": "male", "c0af0a34": "female",
                                    "c7d1ca83": "male", "ac14b3bc": "female", "7aaafe34": "male",
                                    "9fabe063": "male", "ef8fbeac": "male", "2f1e9e2e": "male"}  # fmt: skip
    assert gender_vocabulary(manifest["gender_raw"]) == "v17"
    assert {"sentence_id", "sentence_domain", "accents", "variant", "segment"} <= set(manifest.columns)
    assert "accent" not in manifest.columns
    # reported.tsv (sentence_id, sentence, locale, reason) lists sentences, not clips: never read as rows
    assert "reason" not in manifest.columns and "reported" not in set(manifest["source_tsv"])
    # clip_durations.tsv gives the clips it lists a duration, the others none
    durations = manifest.set_index("path")["duration_s"]
    assert durations["common_voice_pl_39880035.mp3"] == pytest.approx(9.72)
    assert durations["common_voice_pl_40006981.mp3"] == pytest.approx(4.14)
    assert durations.notna().sum() == 12 and pd.isna(durations["common_voice_pl_39606644.mp3"])
    # as published: quotes (balanced or not), a trailing space in an accent, a stray test value
    sentences = set(manifest["sentence"])
    assert {"Naprawdę potrzebny jest poważny kryzys\"", "\"Nie ma problemu",
            "\"Ja pragnę, muszę jeszcze żyć!\""} <= sentences  # fmt: skip
    assert {"Polish language with normal accent ", "test", "Czysty polski"} <= set(manifest["accents"])
    assert set(manifest["cv_split"]) == {""}  # a delta release has no train/dev/test.tsv


def test_the_rows_infer_would_predict():
    ru, _ = select_rows(read_release(RU, need_clips=False), InferOptions(), Path("unused"))
    assert sorted(ru["client_id"].str[:8]) == ["673764e8", "9e9729d6", "b36909ba", "b36909ba"]
    pl, opted_out = select_rows(read_release(PL, need_clips=False), InferOptions(), Path("unused"))
    # blank rows of validated and other (infer's default TSVs), 7aaafe34's among them
    assert sorted(pl["client_id"].str[:8]) == ["079413f5", "0bb43526", "139f0021", "150ade80", "7aaafe34",
                                               "7aaafe34", "7aaafe34", "a18b24ff"]  # fmt: skip
    assert opted_out == 0 and pl["gender"].isna().all()


def test_a_folder_with_clips_reads_the_same(tmp_path):
    corpus = shutil.copytree(PL, tmp_path / "pl")
    (corpus / "clips").mkdir()
    pd.testing.assert_frame_equal(read_release(corpus), read_release(PL, need_clips=False))
    with pytest.raises(CorpusError, match="no clips/ folder"):
        read_release(PL)  # what train and infer read: they need the clips


@pytest.mark.parametrize(
    "corpus,lines",
    [
        (RU, [r"12 clips, 9 speakers \(no clips/ folder", r"validated\s+3\s+3\s+2\s+0\s+4\n",
              r"unlabeled \(blank gender\): 4 rows; 3 speakers never state a gender",
              r"test\.tsv  the release's own test split: 4 of these clips"]),
        (PL, [r"23 clips, 15 speakers \(no clips/ folder", r"invalidated\s+2\s+1\s+0\s+0\s+1\n",
              r"other\s+3\s+1\s+0\s+0\s+4\n", r"validated\s+4\s+3\s+0\s+0\s+4\n",
              r"unlabeled \(blank gender\): 9 rows \(3 of speakers who state a gender on other rows\); "
              r"6 speakers never state a gender",
              r"clip_durations\.tsv  durations of 12 of 23 clips", r"reported\.tsv +lists no clips: not read"]),
    ],
    ids=["ru-cv7", "pl-cv17"],
)  # fmt: skip
def test_inspect_summarises_real_tsvs(corpus, lines):
    result = runner.invoke(app, ["inspect", str(corpus)])
    assert result.exit_code == 0, result.output
    for line in lines:
        assert re.search(line, result.output), line


def test_inspect_of_the_folder_above_names_its_locales():
    result = runner.invoke(app, ["inspect", str(FIXTURES)])
    assert result.exit_code == 1
    assert "is a release root, not a locale folder; pick one of its locales: pl-cv17, ru-cv7" in result.output


@pytest.mark.parametrize("corpus", [RU, PL], ids=["ru-cv7", "pl-cv17"])
def test_export_tsv_fills_a_real_blank_row_and_keeps_every_other_byte(corpus, tmp_path):
    manifest = read_release(corpus, need_clips=False)
    blank_path = manifest.loc[manifest["gender"].isna(), "path"].iloc[0]
    male = BINARY_GENDER_NAMES[gender_vocabulary(manifest["gender_raw"])]["male"]  # male, or male_masculine
    filled_rows = 0
    for tsv in sorted(corpus.glob("*.tsv")):
        filled = write_augmented_tsv(tsv, tmp_path / tsv.name, {blank_path: male}, {})
        if tsv.name in ("reported.tsv", "clip_durations.tsv"):  # no path and gender: copied as they are
            assert filled is None and (tmp_path / tsv.name).read_bytes() == tsv.read_bytes()
            continue
        old, new = tsv.read_bytes().splitlines(), (tmp_path / tsv.name).read_bytes().splitlines()
        gender_at = old[0].split(b"\t").index(b"gender")
        assert filled == sum(blank_path.encode() in line for line in old)
        filled_rows += filled
        for before, after in zip(old, new, strict=True):
            fields = after.split(b"\t")[:-2]  # less the two provenance columns export adds
            if blank_path.encode() in before:
                assert fields[gender_at] == male.encode()
                fields[gender_at] = b""
            assert b"\t".join(fields) == before
    assert filled_rows == (2 if corpus == RU else 1)  # ru's clip is in validated.tsv and test.tsv
