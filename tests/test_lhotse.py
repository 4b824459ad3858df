"""`cvlabel export lhotse`: manifests as lhotse's Common Voice recipe writes them, loadable by lhotse."""

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cvlabel.artifacts import ExportFolder, lhotse_manifest
from cvlabel.cli import app
from cvlabel.config import ExportOptions, InferOptions
from cvlabel.corpus import BINARY_GENDER_NAMES, gender_vocabulary, read_release
from cvlabel.export import export_lhotse, export_parquet
from cvlabel.inference import infer

runner = CliRunner()
WEAK = ExportOptions(allow_weak_model=True, accept_uncertified=True, target_precision=0.6)  # the tiny model


@pytest.fixture(scope="module")
def predictions(synthetic_corpus, trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("lhotse") / "pred"
    infer(synthetic_corpus, trained_run, out, InferOptions(jobs=1))
    return out


def test_lhotse_loads_the_manifests_with_every_row_and_its_label(synthetic_corpus, predictions, tmp_path):
    lhotse = pytest.importorskip("lhotse", reason="the lhotse extra is not installed (pip install 'cvlabel[lhotse]')")
    summary = export_lhotse(synthetic_corpus, predictions, tmp_path / "lhotse", WEAK)
    # the same labels, by the same rule, as the release layout's Parquet files
    export_parquet(
        synthetic_corpus,
        predictions,
        tmp_path / "rel",
        replace(WEAK, layout="release"),
    )
    rows = ExportFolder(tmp_path / "rel").read_rows()
    vocabulary = BINARY_GENDER_NAMES[gender_vocabulary(read_release(synthetic_corpus)["gender_raw"])]
    by_stem = rows.assign(stem=rows["path"].str.rsplit(".", n=1).str[0]).set_index("stem")

    seen = 0
    for name, count in summary["manifests"].items():
        language, split = name.split("/")
        recordings = lhotse.load_manifest(lhotse_manifest(tmp_path / "lhotse", "recordings", language, split))
        supervisions = lhotse.load_manifest(lhotse_manifest(tmp_path / "lhotse", "supervisions", language, split))
        assert isinstance(recordings, lhotse.RecordingSet) and isinstance(supervisions, lhotse.SupervisionSet)
        assert len(recordings) == len(supervisions) == count
        for segment in supervisions:
            row = by_stem.loc[segment.recording_id]
            assert segment.id == segment.recording_id and segment.speaker == row["client_id"]
            assert row["split"] == split and segment.language == language
            assert recordings[segment.recording_id].duration == pytest.approx(segment.duration)
            assert segment.custom["gender_source"] == (None if pd.isna(row["gender_source"]) else row["gender_source"])
            if row["gender_source"] in ("pseudo", "speaker"):
                assert segment.gender == vocabulary[row["gender"]]
                assert segment.custom["gender_confidence"] == pytest.approx(row["gender_confidence"])
            else:
                assert segment.gender == row["gender_raw"]  # the release's own string, blank included
            assert set(segment.custom) >= {"age", "accents", "variant", "p_female", "speaker_p_female"}
            # the export's binary label beside the release's string, as Parquet's `gender` says it
            assert segment.custom["gender_label"] == (row["gender"] if row["gender"] in ("male", "female") else None)
        seen += len(supervisions)
    assert seen == len(rows)  # every row of the TSVs infer read, each once
    assert summary["missing_clips"] == 0


def test_export_lhotse_without_lhotse_is_one_line(synthetic_corpus, predictions, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lhotse", None)  # as if not installed
    result = runner.invoke(
        app,
        ["export", "lhotse", str(synthetic_corpus), "--predictions", str(predictions), "--out", str(tmp_path / "x"),
         "--allow-weak-model"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "pip install 'cvlabel[lhotse]'" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_a_manifest_loads_its_audio_from_any_working_directory(synthetic_corpus, predictions, tmp_path, monkeypatch):
    lhotse = pytest.importorskip("lhotse", reason="the lhotse extra is not installed (pip install 'cvlabel[lhotse]')")
    monkeypatch.chdir(synthetic_corpus.parent)  # the corpus given by a relative path, as users type it
    summary = export_lhotse(synthetic_corpus.name, predictions, tmp_path / "lhotse", WEAK)
    assert (tmp_path / "lhotse" / "report.html").is_file()  # as every export writes one
    language, split = next(iter(summary["manifests"])).split("/")
    monkeypatch.chdir(tmp_path)
    recordings = lhotse.load_manifest(lhotse_manifest(tmp_path / "lhotse", "recordings", language, split))
    recording = next(iter(recordings))
    assert Path(recording.sources[0].source).is_absolute()
    assert recording.load_audio().size > 0
