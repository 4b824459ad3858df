"""The base model: shipped inside the package, used with `--model base`, its reference the release's own
self-reported speakers (it never heard them)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import cvlabel
from cvlabel.artifacts import BASE_MODEL_FILE
from cvlabel.checkpoint import (
    HEARD_BEFORE,
    existing_model_file,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
    speaker_digest,
)
from cvlabel.cli import app
from cvlabel.errors import CvlabelError
from cvlabel.metrics import balanced_accuracy
from cvlabel.predict import predict_files
from cvlabel.splits import labelled_rows
from cvlabel.testing import infer_command, write_voice

runner = CliRunner()


def test_the_base_model_ships_inside_the_package_and_says_what_it_heard():
    file = existing_model_file("base")
    assert file == BASE_MODEL_FILE and file.is_relative_to(Path(cvlabel.__file__).parent)
    info = read_checkpoint_info("base")
    assert info.info["base_model"] is True and info.info["members"] >= 2
    assert len(info.info["locales"]) >= 20 and set(info.info["speakers"]) == {"male", "female"}
    assert info.config.train.cache_dir == ""  # a user's cache, not the machine that built it
    assert info.config.features.min_decode_rate > 0  # every Common Voice rate on the fast path


def test_the_base_model_labels_clips_with_no_training(tmp_path):
    low = write_voice(tmp_path / "low.mp3", 100, seconds=2.0, sample_rate=32_000)
    high = write_voice(tmp_path / "high.mp3", 240, seconds=2.0, sample_rate=32_000)
    results = {Path(r["path"]).stem: r for r in predict_files([low, high], "base")}
    assert all(r["error"] is None and r["label"] in ("male", "female") for r in results.values())
    assert results["high"]["p_female"] > results["low"]["p_female"]  # pitch is a cue it learnt


def test_a_folder_named_base_is_not_silently_taken_for_the_base_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    with pytest.raises(CvlabelError, match="names the packaged base model and also"):
        existing_model_file("base")
    assert existing_model_file(BASE_MODEL_FILE) == BASE_MODEL_FILE


@pytest.mark.slow
def test_with_the_base_model_every_self_reported_speaker_is_the_reference(synthetic_corpus, trained_run, tmp_path):
    """infer --unlabeled --model base, infer --split all --model base, export --reference: the claims
    rest on all of the release's self-reported speakers; a run's own --split all is refused (its
    members heard its train speakers), and without --reference export says what to run."""
    pred, ref, aug = tmp_path / "pred", tmp_path / "ref", tmp_path / "aug"
    result = runner.invoke(app, infer_command(synthetic_corpus, Path("base"), pred, "--jobs", "1"))
    assert result.exit_code == 0, result.output
    # the share it was trained on has neither English nor German: infer says so
    assert "the model never heard 2 of these rows' locales (de, en)" in result.output
    result = runner.invoke(app, ["infer", str(synthetic_corpus), "--split", "all", "--model", "base", "--out",
                                 str(ref), "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    reference = pd.read_parquet(ref / "predictions.parquet")
    labelled = labelled_rows(synthetic_corpus, read_checkpoint_info("base").config.splits, "all")
    # infer --split says how the model did on those self-reported rows, computed from them
    truth = reference["path"].map(labelled.set_index("path")["gender"])
    expected = balanced_accuracy(truth.to_numpy(), np.where(reference["clip_p_female"] >= 0.5, "female", "male"))
    assert f"balanced clip accuracy on these self-reported rows: {expected:.4f}" in result.output
    assert set(reference["path"]) == set(labelled["path"])  # every self-reported row, not a test split
    assert reference["client_id"].nunique() == labelled["client_id"].nunique() >= 8
    export = ["export", "parquet", str(synthetic_corpus), "--predictions", str(pred), "--target-precision", "0.6"]
    result = runner.invoke(app, [*export, "--out", str(aug)])
    assert result.exit_code == 1 and "the base model never heard this release" in result.output
    assert "--split all --model base --out REF' and pass --reference REF" in result.output
    # a threshold of the user's own needs no reference, and claims nothing (a release of blank speakers only)
    mine = tmp_path / "mine"
    result = runner.invoke(app, [*export[:-2], "--min-confidence", "0.6", "--out", str(mine)])
    assert result.exit_code == 0, result.output
    assert "no reference speaker reaches it, nothing is claimed" in result.output
    assert all(
        claim["reference_speakers"] == 0 for claim in json.loads((mine / "summary.json").read_text())["claims"].values()
    )
    result = runner.invoke(app, [*export, "--out", str(aug), "--reference", str(ref), "--accept-uncertified"])
    assert result.exit_code == 0, result.output
    summary = json.loads((aug / "summary.json").read_text())
    assert str(ref) in summary["rule"]  # the thresholds were chosen on the --split all folder
    speakers = labelled["client_id"].nunique()  # less the disputed ones (never in a claim)
    assert speakers - 3 <= sum(claim["reference_speakers"] for claim in summary["claims"].values()) <= speakers

    own = tmp_path / "own"
    result = runner.invoke(app, ["infer", str(synthetic_corpus), "--split", "all", "--model", str(trained_run),
                                 "--out", str(own), "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    pred_run = tmp_path / "pred-run"
    assert runner.invoke(app, infer_command(synthetic_corpus, trained_run, pred_run, "--jobs", "1")).exit_code == 0
    result = runner.invoke(app, ["export", "parquet", str(synthetic_corpus), "--predictions", str(pred_run), "--out",
                                 str(tmp_path / "aug2"), "--reference", str(own), "--allow-weak-model"])  # fmt: skip
    assert result.exit_code == 1 and "--split all' with --model base" in result.output


def test_a_reference_of_nobody_is_refused_in_one_line(tmp_path):
    """infer --split all on a release whose speakers never gave a gender: nothing to certify on, said
    before any work (export can still use --min-confidence)."""
    corpus = tmp_path / "corpus"
    (corpus / "clips").mkdir(parents=True)
    write_voice(corpus / "clips" / "a.mp3", 150, seconds=0.5)
    (corpus / "validated.tsv").write_text("client_id\tpath\tsentence\tgender\nx\ta.mp3\thello\t\n")
    result = runner.invoke(
        app, ["infer", str(corpus), "--split", "all", "--model", "base", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "no self-reported male/female rows" in result.output
    assert "export can only label with --min-confidence" in result.output and not (tmp_path / "r").exists()


def test_speakers_the_base_model_was_trained_on_are_left_out_of_the_claims(synthetic_corpus, tmp_path, caplog):
    """A user's release may hold speakers of the share the base model learned from: they are no test of
    it, so export certifies on the others only (and says how many it left out)."""
    base = load_checkpoint("base")
    labelled = labelled_rows(synthetic_corpus, base.config.splits, "all")
    trained_on = sorted(labelled["client_id"].unique())[:3]
    model = tmp_path / "heard.safetensors"
    info = {k: v for k, v in base.info.items() if k != "members"}
    save_checkpoint(base.model, base.config, base.temperature, model,
                    info={**info, HEARD_BEFORE: [speaker_digest(c) for c in trained_on]})  # fmt: skip
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    assert runner.invoke(app, infer_command(synthetic_corpus, model, pred, "--jobs", "1")).exit_code == 0
    result = runner.invoke(app, ["infer", str(synthetic_corpus), "--split", "all", "--model", str(model), "--out",
                                 str(ref), "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summaries = {}
    for name, checkpoint in (("heard", model), ("clean", None)):
        if checkpoint is None:  # the same weights (and predictions), with no speaker marked as heard
            save_checkpoint(base.model, base.config, base.temperature, model, info=info)
        out = tmp_path / f"aug-{name}"
        result = runner.invoke(app, ["export", "parquet", str(synthetic_corpus), "--predictions", str(pred), "--out",
                                     str(out), "--reference", str(ref), "--target-precision", "0.6",
                                     "--accept-uncertified"])  # fmt: skip
        assert result.exit_code == 0, result.output
        summaries[name] = json.loads((out / "summary.json").read_text())
        assert (f"3 of {labelled['client_id'].nunique()} reference speakers are left out" in caplog.text) == (
            name == "heard"
        )
        caplog.clear()
    claimed = {
        name: sum(c["reference_speakers"] for c in summary["claims"].values()) for name, summary in summaries.items()
    }
    assert claimed["heard"] == claimed["clean"] - 3 > 0
