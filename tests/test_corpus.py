from pathlib import Path

import pandas as pd
import pytest

from cvlabel import corpus
from cvlabel.corpus import GENDER_TABLE, MANIFEST_COLUMNS, normalise_gender, read_release
from cvlabel.errors import CorpusError
from cvlabel.testing import NEW_COLUMNS, OLD_COLUMNS, write_tsv


def make_release(tmp_path: Path, columns: list[str], rows: list[dict], name: str = "validated") -> Path:
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True, exist_ok=True)
    write_tsv(corpus / f"{name}.tsv", columns, rows)
    return corpus


def test_old_schema_v16_vocabulary(tmp_path):
    rows = [
        {"client_id": "a", "path": "a1.mp3", "sentence": 'He said "hi', "gender": "male", "accent": "us"},
        {"client_id": "b", "path": "b1.mp3", "sentence": "ok", "gender": "female"},
        {"client_id": "c", "path": "c1.mp3", "sentence": "fine", "gender": "other"},
        {"client_id": "d", "path": "d1.mp3", "sentence": '"', "gender": ""},
    ]
    manifest = read_release(make_release(tmp_path, OLD_COLUMNS, rows))
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert manifest["gender"].tolist() == ["male", "female", "other", None]
    assert manifest["gender_raw"].tolist() == ["male", "female", "other", ""]
    # unbalanced quotes do not swallow the rows after them
    assert manifest["sentence"].tolist() == ['He said "hi', "ok", "fine", '"']
    assert manifest["accent"].tolist() == ["us", "", "", ""]
    assert (manifest["source_tsv"] == "validated").all()


def test_new_schema_v17_vocabulary(tmp_path):
    values = ["male_masculine", "female_feminine", "intersex", "transgender", "non-binary", "do_not_wish_to_say", ""]
    rows = [
        {
            "client_id": f"s{i}",
            "path": f"{i}.mp3",
            "sentence": "x",
            "gender": v,
            "accents": "a|b",
            "variant": "",
            "sentence_id": "id",
            "sentence_domain": "general",
        }
        for i, v in enumerate(values)
    ]
    manifest = read_release(make_release(tmp_path, NEW_COLUMNS, rows))
    assert manifest["gender"].tolist() == ["male", "female", "other", "other", "other", "declined", None]
    assert manifest["gender_raw"].tolist() == values
    for column in ("accents", "variant", "sentence_id", "sentence_domain"):
        assert column in manifest.columns


@pytest.mark.parametrize("raw,expected", sorted(GENDER_TABLE.items()))
def test_gender_table(raw, expected):
    assert normalise_gender(pd.Series([raw, f" {raw.upper()} "]), "x.tsv").tolist() == [expected, expected]


def test_unknown_gender_names_value_and_file(tmp_path):
    corpus = make_release(tmp_path, OLD_COLUMNS, [{"client_id": "a", "path": "a.mp3", "gender": "robot"}])
    with pytest.raises(CorpusError, match=r"validated\.tsv.*'robot'"):
        read_release(corpus)


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "/etc/passwd", "sub/../../x.mp3", "..", "C:\\x.mp3", "..\\x.mp3", ""]
)
def test_path_outside_clips_is_refused_naming_the_row(tmp_path, bad):
    rows = [{"client_id": "a", "path": "ok.mp3", "gender": "male"}, {"client_id": "b", "path": bad, "gender": "male"}]
    corpus = make_release(tmp_path, OLD_COLUMNS, rows)
    with pytest.raises(CorpusError, match=r"validated\.tsv, line 3"):
        read_release(corpus)


def test_harmless_paths_are_accepted(tmp_path):
    rows = [{"client_id": "a", "path": p, "gender": "male"} for p in ["a..b.mp3", "sub/x.mp3", "..hidden.mp3"]]
    assert len(read_release(make_release(tmp_path, OLD_COLUMNS, rows))) == 3


def test_missing_required_column(tmp_path):
    corpus = make_release(tmp_path, ["client_id", "path", "sentence"], [{"client_id": "a", "path": "a.mp3"}])
    with pytest.raises(CorpusError, match="missing column 'gender'"):
        read_release(corpus)


def test_folder_errors(tmp_path):
    with pytest.raises(CorpusError, match="no such folder"):
        read_release(tmp_path / "nope")
    (tmp_path / "noclips").mkdir()
    with pytest.raises(CorpusError, match="no clips/ folder"):
        read_release(tmp_path / "noclips")
    (tmp_path / "notsv" / "clips").mkdir(parents=True)
    with pytest.raises(CorpusError, match="none of"):
        read_release(tmp_path / "notsv")


def test_all_tsvs_durations_release_splits_and_duplicates(tiny_release):
    write_tsv(tiny_release / "dev.tsv", NEW_COLUMNS, [{"client_id": "spk1", "path": "clip_1_0.mp3"}])
    write_tsv(tiny_release / "test.tsv", NEW_COLUMNS, [{"client_id": "spk2", "path": "clip_2_1.mp3"}])
    write_tsv(
        tiny_release / "clip_durations.tsv", ["clip", "duration[ms]"], [{"clip": "clip_0_0.mp3", "duration[ms]": 4250}]
    )
    # a clip listed twice (in validated and invalidated) is kept once, from validated
    write_tsv(
        tiny_release / "invalidated.tsv", NEW_COLUMNS, [{"client_id": "spk0", "path": "clip_0_0.mp3", "gender": ""}]
    )
    manifest = read_release(tiny_release)
    assert len(manifest) == 16
    assert manifest["path"].is_unique
    assert set(manifest["source_tsv"]) == {"validated", "other"}
    by_path = manifest.set_index("path")
    assert by_path.loc["clip_0_0.mp3", "gender"] == "male"
    assert by_path.loc["clip_0_0.mp3", "duration_s"] == pytest.approx(4.25)
    assert pd.isna(by_path.loc["clip_0_1.mp3", "duration_s"])
    assert by_path.loc["clip_1_0.mp3", "cv_split"] == "dev"
    assert by_path.loc["clip_2_1.mp3", "cv_split"] == "test"
    assert by_path.loc["clip_3_0.mp3", "cv_split"] == ""


def test_non_utf8_bytes_and_empty_tsv(tmp_path):
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    (corpus / "validated.tsv").write_bytes(b"client_id\tpath\tsentence\tgender\na\ta.mp3\tcaf\xe9 \xff\tmale\n")
    (corpus / "other.tsv").write_bytes(b"")
    (corpus / "invalidated.tsv").write_bytes(b"\n\n")  # blank lines alone: empty too
    manifest = read_release(corpus)
    assert len(manifest) == 1
    assert manifest["sentence"].iloc[0].startswith("caf")


def test_only_requested_tsvs(tiny_release):
    manifest = read_release(tiny_release, tsvs=("other",))
    assert set(manifest["source_tsv"]) == {"other"}
    with pytest.raises(CorpusError, match="unknown clip TSV"):
        read_release(tiny_release, tsvs=("train",))


def test_a_release_root_points_at_its_locale_folders(tiny_release, tmp_path):
    root = tmp_path / "cv-corpus-17.0"
    root.mkdir()
    tiny_release.rename(root / "en")
    (root / "de" / "clips").mkdir(parents=True)
    with pytest.raises(CorpusError, match=r"is a release root.*de, en"):
        read_release(root)


# ---------------------------------------------------------------- rows that do not fit the header


def release_of_lines(tmp_path: Path, *lines: str, name: str = "validated") -> Path:
    """A locale folder whose `name`.tsv is these lines as written (v17 header first)."""
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True, exist_ok=True)
    text = "\n".join(["\t".join(NEW_COLUMNS), *lines]) + "\n"
    (corpus / f"{name}.tsv").write_bytes(text.encode())
    return corpus


def v17_row(client_id: str, path: str, gender: str, sentence: str = "x") -> str:
    values = {"client_id": client_id, "path": path, "sentence_id": f"id-{path}", "sentence": sentence,
              "up_votes": "2", "down_votes": "0", "gender": gender, "locale": "pl"}  # fmt: skip
    return "\t".join(values.get(c, "") for c in NEW_COLUMNS)


def test_a_truncated_row_is_refused_naming_file_and_line(tmp_path):
    # the row of b is cut off after `age`: its gender field is missing, not blank
    truncated = "\t".join(v17_row("b", "b.mp3", "female_feminine").split("\t")[:8])
    corpus = release_of_lines(tmp_path, v17_row("a", "a.mp3", "male_masculine"), truncated, v17_row("c", "c.mp3", ""))
    with pytest.raises(CorpusError, match=r"validated\.tsv, line 3: 8 fields, the header has 13 \(a truncated"):
        read_release(corpus)


def test_a_row_with_an_extra_field_is_refused_naming_file_and_line(tmp_path):
    rows = [v17_row(c, f"{c}.mp3", "male_masculine") for c in "abcde"]
    rows[3] += "\tstray"
    with pytest.raises(CorpusError, match=r"validated\.tsv, line 5: 14 fields, the header has 13"):
        read_release(release_of_lines(tmp_path, *rows))


def test_an_extra_field_in_the_first_row_does_not_shift_the_columns(tmp_path):
    # pandas takes a first row one field longer than the header as an index column and shifts every
    # column of every row by one: paths read as sentence ids, genders as ages (blank)
    rows = [v17_row("a", "a.mp3", "male_masculine") + "\tstray", v17_row("b", "b.mp3", "")]
    with pytest.raises(CorpusError, match=r"validated\.tsv, line 2: 14 fields, the header has 13"):
        read_release(release_of_lines(tmp_path, *rows))


def test_broken_rows_are_counted_and_blank_lines_are_skipped_but_counted(tmp_path):
    short = "\t".join(v17_row("b", "b.mp3", "male_masculine").split("\t")[:5])
    corpus = release_of_lines(tmp_path, v17_row("a", "a.mp3", ""), "", short, short, name="other")
    with pytest.raises(CorpusError, match=r"other\.tsv, line 4: 5 fields, the header has 13 .*2 such rows"):
        read_release(corpus)


def test_field_counts_across_block_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "FIELD_COUNT_BLOCK_BYTES", 7)  # lines span blocks, some blocks hold no newline
    rows = [v17_row(c, f"{c}.mp3", "male_masculine") for c in "abc"]
    tsv = release_of_lines(tmp_path, *rows) / "validated.tsv"
    corpus.check_field_counts(tsv)
    tsv.write_bytes(tsv.read_bytes().rstrip(b"\n"))  # no newline after the last row
    corpus.check_field_counts(tsv)
    tsv.write_bytes(tsv.read_bytes().rsplit(b"\t", 2)[0])
    with pytest.raises(CorpusError, match=r"line 4: 11 fields"):
        corpus.check_field_counts(tsv)


def test_a_carriage_return_inside_a_sentence_does_not_split_its_row(tmp_path):
    rows = [v17_row("a", "a.mp3", "male_masculine", sentence="half\rway"), v17_row("b", "b.mp3", "female_feminine")]
    manifest = read_release(release_of_lines(tmp_path, *rows))
    assert manifest["gender"].tolist() == ["male", "female"]
    assert manifest["sentence"].iloc[0] == "half\rway"


def test_windows_line_ends_are_read(tmp_path):
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    (corpus / "validated.tsv").write_bytes(b"client_id\tpath\tgender\r\na\ta.mp3\tmale\r\nb\tb.mp3\t\r\n")
    manifest = read_release(corpus)
    assert manifest["gender_raw"].tolist() == ["male", ""]
    assert "gender" in manifest.columns and manifest["path"].tolist() == ["a.mp3", "b.mp3"]


def test_unknown_gender_names_the_line(tmp_path):
    rows = [v17_row("a", "a.mp3", "male_masculine"), "", v17_row("b", "b.mp3", "robot"), v17_row("c", "c.mp3", "x")]
    with pytest.raises(CorpusError, match=r"validated\.tsv, line 4: unknown gender value 'robot'; also 'x' on later"):
        read_release(release_of_lines(tmp_path, *rows))
