"""The release layout of `export parquet`, `export tsv`, the probability columns and the refusals of bad input."""

import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cvlabel.artifacts import read_augmented_splits
from cvlabel.checkpoint import read_checkpoint_info
from cvlabel.cli import app
from cvlabel.config import ExportOptions, InferOptions
from cvlabel.corpus import GENDER_TABLE, normalise_gender, read_release, read_tsv
from cvlabel.errors import CvlabelError
from cvlabel.export import export_parquet, export_tsv
from cvlabel.export_layouts import cap_per_speaker, rebalance, sample_weights
from cvlabel.inference import infer
from cvlabel.testing import copy_corpus, rewrite_tsv

runner = CliRunner()
ALL_TSVS = ("validated", "other", "invalidated")


def with_release_splits(source, target):
    """A copy of the corpus with train/dev/test.tsv (speaker-disjoint subsets of validated, one
    speaker's rows in none) and a few self-reported validated rows moved to invalidated.tsv."""
    corpus = copy_corpus(source, target)
    validated = read_tsv(corpus / "validated.tsv")
    moved = validated[validated["gender"] != ""].iloc[::7]
    validated = validated.drop(moved.index)
    validated.loc[validated.index[0], "sentence"] = 'a "quoted sentence  with two spaces'  # quoting stays off
    rewrite_tsv(corpus / "validated.tsv", validated)
    rewrite_tsv(corpus / "invalidated.tsv", pd.concat([read_tsv(corpus / "invalidated.tsv"), moved]))
    speakers = sorted(validated["client_id"].unique())
    split_of = {s: ("dev", "test", "train", "train", "train")[k % 5] for k, s in enumerate(speakers[1:])}
    for split in ("train", "dev", "test"):
        rewrite_tsv(corpus / f"{split}.tsv", validated[validated["client_id"].map(split_of) == split])
    return corpus


@pytest.fixture(scope="module")
def release(synthetic_corpus, trained_run, tmp_path_factory):
    """A corpus with the release's own split TSVs, and its predictions over all three clip TSVs."""
    base = tmp_path_factory.mktemp("release")
    corpus = with_release_splits(synthetic_corpus, base / "corpus")
    infer(corpus, trained_run, base / "pred", InferOptions(jobs=1, tsvs=ALL_TSVS))
    return corpus, base / "pred"


def middle_threshold(pred):
    """A confidence that some undisputed model labels reach and some do not."""
    predictions = pd.read_parquet(pred / "predictions.parquet")
    usable = predictions[(predictions["label_source"] == "model") & ~predictions["speaker_disputed"]]
    levels = np.unique(usable["confidence"])
    assert len(levels) >= 2, "the tiny model gave every speaker one confidence"
    return float(levels[len(levels) // 2])


def parquet_rows(folder, names):
    return pd.concat([pd.read_parquet(folder / f"{name}.parquet") for name in names], ignore_index=True)


def test_the_release_layout_keeps_every_row_in_the_releases_own_split(release, tmp_path):
    corpus, pred = release
    threshold = middle_threshold(pred)
    options = ExportOptions(allow_weak_model=True, min_confidence=threshold, layout="release")
    summary = export_parquet(corpus, pred, tmp_path / "aug", options)
    assert summary["layout"] == "release" and summary["release_split"] is True
    assert set(summary["rows"]) == {"train", "dev", "test", "validated", "other", "invalidated"}
    rows = parquet_rows(tmp_path / "aug", summary["rows"])
    manifest = read_release(corpus)
    assert sorted(rows["path"]) == sorted(manifest["path"])  # every row of the TSVs read, once
    for name, count in summary["rows"].items():
        in_file = set(rows.loc[rows["split"] == name, "path"])
        if name in ("train", "dev", "test"):
            assert in_file == set(read_tsv(corpus / f"{name}.tsv")["path"])
        else:  # the rows of that TSV that no split TSV lists
            expected = manifest[(manifest["source_tsv"] == name) & (manifest["cv_split"] == "")]
            assert in_file == set(expected["path"]) and len(in_file) == count
    # every column of the release, with its values
    by_path = rows.set_index("path")
    assert set(read_tsv(corpus / "validated.tsv").columns) <= set(rows.columns)
    for column in ("client_id", "sentence", "locale", "gender_raw", "source_tsv"):
        assert (by_path.loc[manifest["path"], column].to_numpy() == manifest[column].to_numpy()).all(), column
    assert 'a "quoted sentence  with two spaces' in set(rows["sentence"])
    # self-reported and opted-out rows unchanged; below the threshold: no label, but p_female kept
    stated = rows[rows["gender_raw"] != ""]
    assert (stated["gender"] == normalise_gender(stated["gender_raw"], "x").to_numpy()).all()
    below = rows[rows["blank_reason"] == "below confidence threshold"]
    assert len(below) and below["gender"].isna().all() and below["gender_source"].isna().all()
    assert below["p_female"].between(0, 1).all() and below["speaker_p_female"].between(0, 1).all()
    pseudo = rows[rows["gender_source"] == "pseudo"]
    assert len(pseudo) and (pseudo["gender_confidence"] >= threshold).all()
    # cap and rebalance are weights on the release's train rows, never moved rows
    train = rows[(rows["split"] == "train") & rows["gender"].isin(["male", "female"])]
    assert (
        train["sample_weight"].notna().all() and rows.loc[~rows.index.isin(train.index), "sample_weight"].isna().all()
    )
    female_weight = train.loc[train["gender"] == "female", "sample_weight"].sum()
    assert female_weight / train["sample_weight"].sum() == pytest.approx(0.5)
    assert pq.read_schema(tmp_path / "aug" / "train.parquet").field("sample_weight").type == pa.float64()
    # a release-layout export is not a classifier's training set
    with pytest.raises(CvlabelError, match="needs the classifier layout"):
        read_augmented_splits(tmp_path / "aug", corpus)


def test_sample_weights_cap_speakers_and_rebalance_without_dropping_rows():
    rows = pd.DataFrame(
        {
            "path": [f"c{k}" for k in range(8)],
            "client_id": ["a"] * 4 + ["b", "c", "d", "e"],
            "gender": ["male"] * 4 + ["male", "female", "female", None],
            "split": ["train"] * 7 + ["train"],
        }
    )
    capped = sample_weights(rows, cap=2, female_share=None)
    assert capped[:4].sum() == pytest.approx(2) and (capped[4:7] == 1).all() and np.isnan(capped[7])
    balanced = sample_weights(rows, cap=2, female_share=0.5)
    female = rows["gender"] == "female"
    assert balanced[female].sum() == pytest.approx(balanced[:7].sum() / 2)
    assert balanced[:7].sum() == pytest.approx(capped[:7].sum())  # the total weight is kept


def test_without_split_tsvs_the_release_layout_files_rows_by_their_tsv(synthetic_corpus, trained_run, tmp_path, caplog):
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    with caplog.at_level(logging.WARNING):
        summary = export_parquet(synthetic_corpus, tmp_path / "pred", tmp_path / "aug",
                                 ExportOptions(allow_weak_model=True, layout="release"))  # fmt: skip
    assert "has no train/dev/test.tsv" in caplog.text
    assert summary["release_split"] is False and set(summary["rows"]) == {"validated", "other"}
    rows = parquet_rows(tmp_path / "aug", summary["rows"])
    assert (rows["split"] == rows["source_tsv"]).all()


def test_classifier_splits_say_only_male_or_female_and_carry_the_probabilities(release, trained_run, tmp_path, caplog):
    corpus, pred = release
    threshold = middle_threshold(pred)
    with caplog.at_level(logging.WARNING):
        summary = export_parquet(corpus, pred, tmp_path / "aug",
                                 ExportOptions(allow_weak_model=True, min_confidence=threshold))  # fmt: skip
    for split in ("train", "dev", "test"):
        gender = pd.read_parquet(tmp_path / "aug" / f"{split}.parquet")["gender"]
        # dataspeech and Parler-TTS bin exactly these two strings and fail on anything else, null included
        assert len(gender) and set(gender) <= {"male", "female"} and gender.notna().all(), split
    rows = parquet_rows(tmp_path / "aug", summary["rows"])
    predicted = pd.read_parquet(pred / "predictions.parquet").set_index("path")
    mine = rows[rows["path"].isin(predicted.index)].set_index("path")
    expected = predicted.loc[mine.index]
    np.testing.assert_allclose(mine["p_female"], expected["clip_p_female"])
    np.testing.assert_allclose(mine["speaker_p_female"], expected["speaker_p_female"])
    assert rows.loc[~rows["path"].isin(predicted.index), "p_female"].isna().all()
    below = rows[rows["unused_reason"] == "below confidence threshold"]
    assert len(below) and below["gender"].isna().all() and below["p_female"].notna().all()
    # the run's model hash, temperature and thresholds in every file's metadata
    plan = json.loads((pred / "plan.json").read_text())
    for split in summary["rows"]:
        metadata = json.loads(pq.read_schema(tmp_path / "aug" / f"{split}.parquet").metadata[b"cvlabel"])
        assert metadata["model_sha256"] == plan["model_sha256"] and metadata["layout"] == "classifier"
        assert metadata["temperature"] == read_checkpoint_info(trained_run / "model.safetensors").temperature
        assert metadata["thresholds"] == {"male": threshold, "female": threshold}
        assert metadata["committee_clips"] == plan["committee_clips"] == InferOptions().committee_clips
    # infer read invalidated.tsv: its rows in train are announced
    in_train = rows[(rows["split"] == "train") & (rows["source_tsv"] == "invalidated")]
    assert summary["invalidated_rows_in_train"] == len(in_train) > 0
    assert f"{len(in_train)} rows of invalidated.tsv" in caplog.text


def test_export_tsv_fills_only_accepted_blank_rows_and_keeps_every_other_byte(release, tmp_path):
    corpus, pred = release
    out = tmp_path / "aug"
    threshold = middle_threshold(pred)
    result = runner.invoke(app, ["export", "tsv", str(corpus), "--predictions", str(pred), "--out", str(out),
                                 "--min-confidence", str(threshold), "--allow-weak-model"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vocabulary"] == "v17" and summary["layout"] == "tsv"
    assert (out / "clips").is_symlink() and (out / "clips").resolve() == (corpus / "clips").resolve()
    assert summary["copied"] == ["clip_durations.tsv"]  # a release's TSV without genders: as it is
    for name in summary["copied"]:
        assert (out / name).read_bytes() == (corpus / name).read_bytes()
    # a TSV that is no release's (the demo's truth.tsv) stays out of the augmented release
    assert summary["not_copied"] == ["truth.tsv"] and not (out / "truth.tsv").exists()
    assert (out / "report.html").is_file() and f"open {out / 'report.html'}" in result.output  # as every export
    labels = parquet_labels(corpus, pred, tmp_path, threshold)
    filled_total = 0
    for name in ("validated", "other", "invalidated", "train", "dev", "test"):
        before = (corpus / f"{name}.tsv").read_bytes().split(b"\n")
        after = (out / f"{name}.tsv").read_bytes().split(b"\n")
        assert len(before) == len(after) and after[0] == before[0] + b"\tgender_source\tgender_confidence"
        columns = before[0].decode().split("\t")
        gender_at, path_at = columns.index("gender"), columns.index("path")
        filled = 0
        for old, new in zip(before[1:], after[1:], strict=True):
            if not old:
                assert new == old
                continue
            body, source, confidence = new.rsplit(b"\t", 2)
            path = old.split(b"\t")[path_at].decode()
            assert source.decode() == labels.loc[path, "gender_source"]
            if source in (b"pseudo", b"speaker") and old.split(b"\t")[gender_at] == b"":
                filled += 1
                old_fields, new_fields = old.split(b"\t"), body.split(b"\t")
                assert (
                    new_fields[:gender_at] + new_fields[gender_at + 1 :]
                    == old_fields[:gender_at] + old_fields[gender_at + 1 :]
                )
                assert GENDER_TABLE[new_fields[gender_at].decode()] == labels.loc[path, "gender"]
                assert new_fields[gender_at] in (b"male_masculine", b"female_feminine")
                assert float(confidence) == pytest.approx(labels.loc[path, "gender_confidence"], abs=1e-4)
            else:
                assert body == old  # a row not pseudo-labelled is byte-identical to the input line
        assert filled == summary["filled"][f"{name}.tsv"]
        filled_total += filled
    assert filled_total >= summary["pseudo_labels"]["male"] + summary["pseudo_labels"]["female"] > 0
    # a Common Voice reader reads the augmented release as it read the original
    augmented, original = read_release(out), read_release(corpus)
    assert augmented["path"].tolist() == original["path"].tolist()
    assert (augmented["cv_split"] == original["cv_split"]).all()
    changed = augmented["gender_raw"] != original["gender_raw"]
    assert (original.loc[changed, "gender_raw"] == "").all()  # only blanks were filled
    assert set(augmented.loc[changed, "path"]) == set(labels.index[labels["gender_source"].isin(["pseudo", "speaker"])])


def parquet_labels(corpus, pred, tmp_path, threshold):
    """The labels the Parquet export gives each row (the release layout keeps them all), by path."""
    options = ExportOptions(allow_weak_model=True, min_confidence=threshold, layout="release")
    summary = export_parquet(corpus, pred, tmp_path / "as-parquet", options)
    rows = parquet_rows(tmp_path / "as-parquet", summary["rows"]).set_index("path")
    return rows.assign(gender_source=rows["gender_source"].fillna(""))


def test_export_tsv_writes_a_v16_release_in_its_own_vocabulary(synthetic_corpus, trained_run, tmp_path):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    old_names = {"male_masculine": "male", "female_feminine": "female", "non-binary": "other",
                 "do_not_wish_to_say": "other"}  # fmt: skip
    for name in ALL_TSVS:
        table = read_tsv(corpus / f"{name}.tsv")
        rewrite_tsv(corpus / f"{name}.tsv", table.assign(gender=table["gender"].replace(old_names)))
    infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    summary = export_tsv(corpus, tmp_path / "pred", tmp_path / "aug",
                         ExportOptions(allow_weak_model=True, min_confidence=0.5001), clips="none")  # fmt: skip
    assert summary["vocabulary"] == "v16" and not (tmp_path / "aug" / "clips").exists()
    augmented = pd.concat([read_tsv(tmp_path / "aug" / f"{name}.tsv") for name in ALL_TSVS])
    filled = augmented[augmented["gender_source"].isin(["pseudo", "speaker"])]
    assert len(filled) and set(filled["gender"]) <= {"male", "female"}
    assert set(augmented["gender"]) <= {"", "male", "female", "other"}


def test_export_tsv_without_symlink_rights_is_one_line_and_leaves_nothing(release, tmp_path, monkeypatch):
    import os

    corpus, pred = release

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", refused)
    out = tmp_path / "aug"
    result = runner.invoke(app, ["export", "tsv", str(corpus), "--predictions", str(pred), "--out", str(out),
                                 "--allow-weak-model", "--min-confidence", "0.6"])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "--clips copy" in result.output
    assert not out.exists() and not list(tmp_path.glob(".aug.tmp-*"))
    summary = export_tsv(corpus, pred, out, ExportOptions(allow_weak_model=True, min_confidence=0.6), clips="copy")
    assert (out / "clips").is_dir() and not (out / "clips").is_symlink() and summary["clips"] == "copy"
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(p.name for p in (corpus / "clips").iterdir())


def test_a_release_changed_since_infer_is_refused_in_one_line(synthetic_corpus, trained_run, tmp_path, caplog):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    other = read_tsv(corpus / "other.tsv")
    other.loc[other.index[0], "up_votes"] = "7"  # the same clips and genders; the release changed all the same
    rewrite_tsv(corpus / "other.tsv", other)
    for command in ("parquet", "tsv"):
        out = tmp_path / f"aug-{command}"
        result = runner.invoke(app, ["export", command, str(corpus), "--predictions", str(tmp_path / "pred"),
                                     "--out", str(out), "--allow-weak-model"])  # fmt: skip
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines() == [
            f"cvlabel: error: {corpus}: other.tsv changed since 'cvlabel infer' made {tmp_path / 'pred'}; "
            "run 'cvlabel infer' again to label the release as it is now (into the same --out folder where the "
            "blank rows are unchanged, else into a new one)"
        ]
        assert not out.exists()
    # a predictions folder of an older cvlabel has no fingerprint: export says it cannot check, and goes on
    plan = json.loads((tmp_path / "pred" / "plan.json").read_text())
    del plan["tsvs_sha256"]
    (tmp_path / "pred" / "plan.json").write_text(json.dumps(plan))
    with caplog.at_level(logging.WARNING):
        export_parquet(corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True))
    assert "made by an older cvlabel: cannot check" in caplog.text and (tmp_path / "aug" / "summary.json").is_file()


def test_an_export_that_fails_while_writing_leaves_no_folder(release, tmp_path, monkeypatch):
    import cvlabel.export

    corpus, pred = release

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cvlabel.export, "write_json", disk_full)  # summary.json: the last file written
    for run in (lambda out: export_parquet(corpus, pred, out, ExportOptions(allow_weak_model=True, layout="release")),
                lambda out: export_tsv(corpus, pred, out, ExportOptions(allow_weak_model=True))):  # fmt: skip
        with pytest.raises(OSError, match="No space"):
            run(tmp_path / "aug")
        assert not list(tmp_path.iterdir())  # neither the folder nor its temp folder
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(CvlabelError, match="is not empty"):
        export_tsv(corpus, pred, tmp_path / "full", ExportOptions(allow_weak_model=True))
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]


def layout_rows(rows):
    """rows: (client_id, gender, gender_source, confidence) -> train rows as the classifier layout holds them."""
    frame = pd.DataFrame(rows, columns=["client_id", "gender", "gender_source", "gender_confidence"])
    return frame.assign(path=[f"c{i}.mp3" for i in range(len(frame))], split="train", unused_reason=None)


def test_the_cap_keeps_a_speakers_own_answers_first_then_the_surest():
    rows = layout_rows([("a", "male", "pseudo", 0.99), ("a", "male", "self_reported", 1.0),
                        ("a", "male", "pseudo", 0.7), ("a", "male", "speaker", 1.0),
                        ("b", "male", "pseudo", 0.6)])  # fmt: skip
    cap_per_speaker(rows, 2)
    kept = rows[rows["unused_reason"].isna()]
    assert sorted(kept.loc[kept["client_id"] == "a", "gender_source"]) == ["self_reported", "speaker"]
    assert (rows.loc[rows["unused_reason"].notna(), "unused_reason"] == "over 2 clips per speaker").all()
    assert (kept["client_id"] == "b").sum() == 1  # under the cap: untouched


def test_rebalancing_drops_the_majoritys_least_sure_pseudo_labels_first_and_keeps_the_minority():
    rows = layout_rows([("m1", "male", "self_reported", 1.0)] * 4 + [("m2", "male", "pseudo", 0.9),
                        ("m3", "male", "pseudo", 0.6), ("f1", "female", "self_reported", 1.0),
                        ("f2", "female", "pseudo", 0.55)])  # fmt: skip
    rebalance(rows, 0.3)  # 2 female rows: at most 4 male rows keep a 30% female share
    kept = rows[rows["unused_reason"].isna()]
    assert (kept["gender"] == "female").sum() == 2  # every minority row kept, pseudo included
    assert (kept["gender"] == "male").sum() == 4
    dropped = rows[rows["unused_reason"] == "rebalanced away"]
    assert sorted(dropped["client_id"]) == ["m2", "m3"]  # pseudo-labels go before the speakers' own answers
    # a share whose arithmetic is not exact in floating point keeps its whole count (2 female: 4 male at 1/3)
    thirds = layout_rows([("m", "male", "pseudo", 0.9)] * 6 + [("f", "female", "self_reported", 1.0)] * 2)
    rebalance(thirds, 1 / 3)
    assert (thirds["unused_reason"].isna() & (thirds["gender"] == "male")).sum() == 4


def test_columns_blank_in_every_row_are_still_text_in_the_parquet_schema(release, tmp_path):
    """Two releases' exports share a schema: a column the release leaves blank (accents, segment...)
    is a string column of nulls, not a column of type null."""
    import pyarrow as pa

    corpus, pred = release
    blank = [
        c for c in read_tsv(corpus / "validated.tsv").columns if (read_tsv(corpus / "validated.tsv")[c] == "").all()
    ]
    assert blank  # the synthetic release has such columns (else this test shows nothing)
    export_parquet(corpus, pred, tmp_path / "aug", ExportOptions(allow_weak_model=True, min_confidence=0.6))
    schema = pq.read_schema(tmp_path / "aug" / "train.parquet")
    assert not [f.name for f in schema if pa.types.is_null(f.type)]
    assert all(schema.field(c).type == pa.string() for c in blank if c in schema.names)


def test_the_release_layout_keeps_the_rows_of_tsvs_infer_did_not_read(synthetic_corpus, trained_run, tmp_path):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    validated = read_tsv(corpus / "validated.tsv")
    moved = pd.concat([validated[validated["gender"] == ""].iloc[:3], validated[validated["gender"] != ""].iloc[:3]])
    rewrite_tsv(corpus / "validated.tsv", validated.drop(moved.index))
    rewrite_tsv(corpus / "invalidated.tsv", moved)
    pred = tmp_path / "pred"
    infer(corpus, trained_run, pred, InferOptions(jobs=1))  # validated and other: not invalidated
    export_parquet(corpus, pred, tmp_path / "rel", ExportOptions(allow_weak_model=True, min_confidence=0.6,
                                                                 layout="release"))  # fmt: skip
    invalidated = read_tsv(corpus / "invalidated.tsv")
    written = pd.read_parquet(tmp_path / "rel" / "invalidated.parquet")
    assert sorted(written["path"]) == sorted(invalidated["path"])
    blank = written[written["gender_raw"] == ""]
    assert len(blank) == 3 and blank["gender"].isna().all()
    assert (blank["blank_reason"] == "not predicted (its TSV was not given to infer --tsv)").all()
