import json
import os
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import cvlabel.inference
from cvlabel import audio
from cvlabel.artifacts import ExportFolder
from cvlabel.cli import app
from cvlabel.config import ExportOptions, InferOptions, load_config
from cvlabel.corpus import normalise_gender, read_release, read_tsv
from cvlabel.errors import CvlabelError
from cvlabel.export import export_parquet
from cvlabel.inference import FINAL_SCHEMA, PREDICTION_SCHEMA, infer, scoring_turns
from cvlabel.testing import as_set_options, copy_corpus, infer_command, rewrite_tsv, tiny_train_config, write_voice
from cvlabel.training import train

runner = CliRunner()
WEAK_OK = ExportOptions(allow_weak_model=True)  # the tiny test model is near chance on dev
EXPORT_EXTRA = ["gender", "gender_source", "gender_confidence", "split"]


def blank_rows(corpus):
    manifest = read_release(corpus)
    return manifest[manifest["gender"].isna() & manifest["source_tsv"].isin(["validated", "other"])]


@pytest.mark.slow
def test_full_chain_through_the_cli(synthetic_corpus, trained_run, tmp_path):
    pred, aug, run2 = tmp_path / "pred", tmp_path / "aug", tmp_path / "run2"
    result = runner.invoke(
        app,
        infer_command(synthetic_corpus, trained_run, pred, "--jobs", "2", "--shard-size", "7"),
    )
    assert result.exit_code == 0, result.output
    parts = sorted(pred.glob("part-*.parquet"))
    assert len(parts) >= 2
    assert all(pq.read_schema(p).remove_metadata() == PREDICTION_SCHEMA for p in parts)
    final = pq.read_table(pred / "predictions.parquet")
    assert final.schema.remove_metadata() == FINAL_SCHEMA
    predictions = final.to_pandas()
    assert predictions["path"].is_unique
    # every blank row inspect counts is accounted for: predicted, opted out, or in a TSV infer did not read
    manifest = read_release(synthetic_corpus)
    not_read = int((manifest["gender"].isna() & ~manifest["source_tsv"].isin(["validated", "other"])).sum())
    assert f"and {not_read} in TSVs not given to --tsv" in result.output
    # the summary line counts the rows of disputed speakers (never pseudo-labelled)
    assert f"{int(predictions['speaker_disputed'].sum())} of disputed speakers, never pseudo-labelled" in result.output
    # and names the decoders that read the clips, with counts that add up to the decoded rows
    decoded = predictions["decoder"].value_counts()
    assert decoded.sum() == predictions["decoder"].notna().sum() > 0
    words = ", ".join(f"{name} ({count:,} clips)" for name, count in decoded.sort_index().items())
    assert f"; decoded by {words}. Predictions:" in result.output
    assert set(predictions["label"].dropna()) <= {"male", "female"}
    assert predictions["confidence"].dropna().between(0.5, 1).all()

    result = runner.invoke(
        app,
        [
            "export",
            "parquet",
            str(synthetic_corpus),
            "--predictions",
            str(pred),
            "--out",
            str(aug),
            "--min-confidence",
            "0.6",
        ],
    )
    # the tiny test model is at chance: export refuses it, in one line, unless told otherwise
    assert result.exit_code == 1 and "near chance on its dev speakers" in result.output
    assert "--allow-weak-model" in result.output and not aug.exists()
    result = runner.invoke(app, ["export", "parquet", str(synthetic_corpus), "--predictions", str(pred), "--out",
                                 str(aug), "--min-confidence", "0.5001", "--allow-weak-model"])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = read_release(synthetic_corpus)
    exported = []
    for split in ("train", "dev", "test", "unused"):
        frame = pd.read_parquet(aug / f"{split}.parquet")
        counted = duckdb.sql(f"select count(*) from read_parquet('{aug / f'{split}.parquet'}')").fetchone()
        via_duckdb = counted[0] if counted else None
        assert via_duckdb == len(frame)
        for column in list(manifest.columns) + EXPORT_EXTRA:
            assert column in frame.columns, (split, column)
        assert (frame["split"] == split).all()
        exported.append(frame)
    everything = pd.concat(exported, ignore_index=True)
    # every validated/other row exactly once
    selected = manifest[manifest["source_tsv"].isin(["validated", "other"])]
    assert sorted(everything["path"]) == sorted(selected["path"])
    # pseudo-labels only in train; dev/test self-reported only (at this threshold even the tiny model gives some)
    assert (everything["gender_source"] == "pseudo").any()
    assert set(everything.loc[everything["gender_source"] == "pseudo", "split"]) <= {"train", "unused"}
    for split in ("dev", "test"):
        part = everything[everything["split"] == split]
        assert (part["gender_source"] == "self_reported").all() and part["gender"].isin(["male", "female"]).all()
    # speaker-disjoint splits
    speakers = everything[everything["split"] != "unused"].groupby("client_id")["split"].nunique()
    assert (speakers == 1).all()
    summary = json.loads((aug / "summary.json").read_text())
    assert summary["thresholds"] == {"male": 0.5001, "female": 0.5001}

    sets = as_set_options(tiny_train_config(tmp_path / "cache", "train.epochs=1"))
    result = runner.invoke(app, ["train", str(synthetic_corpus), "--augmented", str(aug), "--out", str(run2), *sets])
    assert result.exit_code == 0, result.output
    first, second = (json.loads((r / "metrics.json").read_text()) for r in (trained_run, run2))
    assert second["splits"]["test"] == first["splits"]["test"]  # the same untouched test rows
    result = runner.invoke(app, ["compare", str(trained_run), str(run2)])
    assert result.exit_code == 0 and "balanced_accuracy" in result.output and "train_clips" in result.output
    clips_line = next(line for line in result.output.splitlines() if line.startswith("clips "))
    assert clips_line.split()[1:] == [str(first["clips"]), str(second["clips"]), "+0"]  # counts as integers, a delta
    assert "change (run2)" in result.output and "trained on different corpora" not in result.output  # the same corpus
    alone = runner.invoke(app, ["compare", str(trained_run)])
    assert alone.exit_code == 1 and "two or more run folders" in alone.output


def test_a_retrained_runs_reference_holds_only_self_reported_rows(synthetic_corpus, trained_run, tmp_path):
    """train --augmented trains on an export's pseudo-labels; its reference (export's claims, the
    calibration) must rest on the speakers' own answers alone, not on the first model's guesses."""
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    options = ExportOptions(allow_weak_model=True, min_confidence=0.5001, rebalance=False)
    export_parquet(synthetic_corpus, tmp_path / "pred", tmp_path / "aug", options)
    exported = pd.read_parquet(tmp_path / "aug" / "train.parquet")
    filled = exported[exported["gender_source"].isin(["pseudo", "speaker"])]
    assert len(filled)  # the retraining does get pseudo-labels...
    run = tmp_path / "run2"
    metrics = train(synthetic_corpus, run, load_config(None, tiny_train_config(tmp_path / "cache", "train.epochs=1")),
                    augmented=tmp_path / "aug")  # fmt: skip
    assert metrics["splits"]["train"]["clips"] == len(exported[exported["gender"].isin(["male", "female"])])
    reference = pd.read_parquet(run / "reference_predictions.parquet")
    assert len(reference) and not set(reference["path"]) & set(filled["path"])  # ...which never vouch
    stated = set(exported.loc[exported["gender_source"] == "self_reported", "path"])
    assert set(reference.loc[reference["split"] == "train", "path"]) == stated


def test_self_reported_values_are_never_changed(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    export_parquet(
        synthetic_corpus,
        tmp_path / "pred",
        tmp_path / "aug",
        ExportOptions(allow_weak_model=True, min_confidence=0.5001),
    )
    rows = pd.concat([pd.read_parquet(tmp_path / "aug" / f"{s}.parquet") for s in ("train", "dev", "test", "unused")])
    stated = rows[rows["gender_raw"] != ""]
    assert (stated["gender"] == normalise_gender(stated["gender_raw"], "x").to_numpy()).all()
    assert (stated["gender_source"] == "self_reported").all()
    assert (stated["gender_confidence"] == 1.0).all()
    # the original TSV strings are untouched
    original = read_release(synthetic_corpus).set_index("path")["gender_raw"]
    assert (rows.set_index("path")["gender_raw"] == original.loc[rows["path"]].to_numpy()).all()


def test_opt_out_and_other_speakers_are_never_labelled(synthetic_corpus, trained_run, tmp_path):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    validated = read_tsv(corpus / "validated.tsv")
    blanked = []
    for value in ("do_not_wish_to_say", "non-binary"):
        index = validated.index[validated["gender"] == value][0]
        validated.loc[index, "gender"] = ""  # a blank row of a speaker who opted out / answered other
        blanked.append(validated.loc[index, "path"])
    rewrite_tsv(corpus / "validated.tsv", validated)
    summary = infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    predicted = pd.read_parquet(tmp_path / "pred" / "predictions.parquet")
    assert not set(blanked) & set(predicted["path"])
    assert summary["skipped_opted_out_rows"] >= 2
    export_parquet(
        corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True, min_confidence=0.5001)
    )
    rows = pd.concat([pd.read_parquet(tmp_path / "aug" / f"{s}.parquet") for s in ("train", "dev", "test", "unused")])
    rows = rows.set_index("path")
    assert rows.loc[blanked, "gender"].isna().all()
    declined = rows[rows["gender_raw"] == "do_not_wish_to_say"]
    assert (declined["gender"] == "declined").all()
    assert not rows.loc[rows["gender"].isin(["other", "declined"]), "split"].isin(["train", "dev", "test"]).any()


def test_bad_clips_become_error_rows(synthetic_corpus, trained_run, tmp_path):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    targets = blank_rows(corpus)["path"].tolist()[:3]
    (corpus / "clips" / targets[0]).write_bytes(b"")
    (corpus / "clips" / targets[1]).write_bytes(os.urandom(3000))
    (corpus / "clips" / targets[2]).unlink()
    infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    predicted = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").set_index("path")
    assert predicted.loc[targets, "error"].notna().all()
    assert "empty" in predicted.loc[targets[0], "error"] and "not found" in predicted.loc[targets[2], "error"]
    assert predicted.loc[targets, "clip_p_female"].isna().all()
    others = predicted.drop(index=targets)
    assert others["error"].isna().all() and others["clip_p_female"].notna().all()


def test_interrupted_run_resumes_and_writes_every_row_once(synthetic_corpus, trained_run, tmp_path, monkeypatch):
    out = tmp_path / "pred"
    options = InferOptions(jobs=1, shard_size=5)
    real_shard = cvlabel.inference.predict_shard
    calls = {"n": 0}

    def dies_after_two(*args, **kwargs):
        if calls["n"] == 2:
            (out / "part-99999.parquet.tmp-123").write_bytes(b"half a file")  # what a kill leaves behind
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_shard(*args, **kwargs)

    monkeypatch.setattr(cvlabel.inference, "predict_shard", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        infer(synthetic_corpus, trained_run, out, options)
    finished = {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert len(finished) == 2 and not (out / "predictions.parquet").exists()

    monkeypatch.setattr(cvlabel.inference, "predict_shard", real_shard)
    infer(synthetic_corpus, trained_run, out, options)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished shards were not redone
    assert not list(out.glob("*.tmp*"))
    predicted = pd.read_parquet(out / "predictions.parquet")
    expected = blank_rows(synthetic_corpus)
    assert predicted["path"].is_unique
    assert set(predicted["path"]) <= set(expected["path"])
    parts = pd.concat([pd.read_parquet(p) for p in out.glob("part-*.parquet")])
    assert sorted(parts["path"]) == sorted(predicted["path"])


def test_serial_and_parallel_give_the_same_rows(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "one", InferOptions(jobs=1, shard_size=6))
    infer(synthetic_corpus, trained_run, tmp_path / "two", InferOptions(jobs=2, shard_size=6))
    one = pd.read_parquet(tmp_path / "one" / "predictions.parquet").sort_values("path").reset_index(drop=True)
    two = pd.read_parquet(tmp_path / "two" / "predictions.parquet").sort_values("path").reset_index(drop=True)
    assert one["path"].tolist() == two["path"].tolist()
    np.testing.assert_allclose(one["clip_p_female"], two["clip_p_female"], atol=1e-5)


def test_a_speakers_first_clips_go_to_the_whole_committee_and_the_rest_in_turn():
    speakers = pd.Series(["a", "b", "a", "a", "b", "a", "a", "c"])
    assert scoring_turns(speakers, 2).tolist() == [-1, -1, -1, 0, -1, 1, 2, -1]
    assert scoring_turns(speakers, 0).tolist() == [0, 0, 1, 2, 1, 3, 4, 0]
    assert (scoring_turns(speakers, 100) == -1).all()


def test_later_clips_are_scored_by_one_member_with_the_committees_own_logits(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "all", InferOptions(jobs=1, committee_clips=1000))
    infer(synthetic_corpus, trained_run, tmp_path / "shared", InferOptions(jobs=1, committee_clips=1))
    full = pd.read_parquet(tmp_path / "all" / "predictions.parquet").set_index("path")
    shared = pd.read_parquet(tmp_path / "shared" / "predictions.parquet").set_index("path").loc[full.index]
    everyone = np.array(full["member_logits"].tolist())
    some = np.array(shared["member_logits"].tolist())
    members = everyone.shape[1]
    assert members > 1 and np.isfinite(everyone).all()
    first = ~shared.duplicated("client_id").to_numpy()  # rows are in the order infer selected them
    assert np.isfinite(some[first]).all()  # a speaker's first clip: every member
    later = some[~first]
    assert len(later) and (np.isfinite(later).sum(axis=1) == 1).all()  # later clips: one member each
    scorer = np.nanargmax(np.isfinite(later), axis=1)
    assert len(set(scorer)) == members  # in turn: every member takes its share
    # the same logits as the whole committee's, only fewer of them computed
    np.testing.assert_allclose(some[np.isfinite(some)], everyone[np.isfinite(some)], atol=1e-5)
    np.testing.assert_allclose(shared["logit"][~first], later[np.isfinite(later)], atol=1e-9)
    with pytest.raises(CvlabelError, match="another --committee-clips"):
        infer(synthetic_corpus, trained_run, tmp_path / "shared", InferOptions(jobs=1, committee_clips=2))


@pytest.mark.slow
def test_the_parent_of_parallel_inference_never_imports_torch(synthetic_corpus, trained_run, tmp_path):
    # the workers load the model; the parent only reads TSVs and pools, so it stays small
    script = (
        "import sys; from cvlabel.inference import infer; from cvlabel.config import InferOptions; "
        f"summary = infer({str(synthetic_corpus)!r}, {str(trained_run)!r}, {str(tmp_path / 'pred')!r}, "
        "InferOptions(jobs=2, shard_size=6)); print(summary['rows'], 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows, torch_imported = done.stdout.split()
    assert int(rows) == len(pd.read_parquet(tmp_path / "pred" / "predictions.parquet")) > 0
    assert torch_imported == "False"


WINDOW_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from cvlabel.runners import keep_freed_memory
    keep_freed_memory()
def window():  # ~50 MB of clip-sized arrays, allocated and freed, as a worker's window of clips
    arrays = [np.ones(50_000, dtype=np.float32) for _ in range(250)]
    del arrays
window()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    window()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_worker_keeps_freed_memory_instead_of_faulting_it_in_every_window():
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", WINDOW_PROBE, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("default", "keep")
    }
    assert faults["default"] > 1000  # each window's memory went back to the system and came back
    assert faults["keep"] < faults["default"] / 20


@pytest.mark.slow
def test_a_broken_model_stops_parallel_inference_cleanly_and_the_folder_stays_usable(
    synthetic_corpus, trained_run, tmp_path
):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "pred"
    with pytest.raises(CvlabelError, match=r"broken\.pt: (refused|not a readable)"):  # raised in a worker
        infer(synthetic_corpus, broken, out, InferOptions(jobs=2, shard_size=6))
    assert not list(out.glob("part-*"))
    infer(synthetic_corpus, trained_run, out, InferOptions(jobs=1, shard_size=6))  # same folder, good model
    assert (out / "predictions.parquet").is_file()


def test_a_folder_of_another_plan_is_refused(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    with pytest.raises(CvlabelError, match=r"holds predictions made with another selection \(--unlabeled or --split\)"):
        infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1, selection="test"))


def test_export_refuses_foreign_predictions_and_bad_thresholds(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    other = copy_corpus(synthetic_corpus, tmp_path / "other")
    with pytest.raises(CvlabelError, match="was made for the corpus"):
        export_parquet(other, tmp_path / "pred", tmp_path / "aug")
    for bad in (0.5, 1.2, 0.3):
        with pytest.raises(CvlabelError, match="min-confidence must be in"):
            export_parquet(
                synthetic_corpus,
                tmp_path / "pred",
                tmp_path / "aug",
                ExportOptions(allow_weak_model=True, min_confidence=bad),
            )
    with pytest.raises(CvlabelError, match="not a finished"):
        export_parquet(synthetic_corpus, tmp_path, tmp_path / "aug")


def test_reference_from_another_model_is_refused(synthetic_corpus, trained_run, tmp_path):
    import shutil

    from cvlabel.checkpoint import load_checkpoint, save_checkpoint

    other_run = tmp_path / "other-run"
    shutil.copytree(trained_run, other_run)
    checkpoint = load_checkpoint(other_run)  # another model file: another temperature
    save_checkpoint(checkpoint.model, checkpoint.config, checkpoint.temperature + 0.5, other_run / "model.safetensors")
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    infer(synthetic_corpus, other_run, tmp_path / "ref", InferOptions(jobs=1, selection="test"))
    with pytest.raises(CvlabelError, match="made by another model"):
        export_parquet(synthetic_corpus, tmp_path / "pred", tmp_path / "aug", WEAK_OK, reference=tmp_path / "ref")


def test_thresholds_from_an_infer_split_folder(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    infer(synthetic_corpus, trained_run, tmp_path / "ref", InferOptions(jobs=1, selection="test"))
    options = ExportOptions(allow_weak_model=True, target_precision=0.9)
    summary = export_parquet(synthetic_corpus, tmp_path / "pred", tmp_path / "aug", options, reference=tmp_path / "ref")
    test_speakers = pd.read_parquet(tmp_path / "ref" / "predictions.parquet")["client_id"].nunique()
    assert str(tmp_path / "ref") in summary["rule"]
    assert sum(claim["reference_speakers"] for claim in summary["claims"].values()) <= test_speakers
    default = export_parquet(
        synthetic_corpus,
        tmp_path / "pred",
        tmp_path / "aug2",
        ExportOptions(allow_weak_model=True, target_precision=0.9),
    )
    assert "reference_predictions.parquet" in default["rule"]
    # the run's reference holds every labelled speaker: out-of-fold train speakers, dev and test
    run_speakers = pd.read_parquet(trained_run / "reference_predictions.parquet")["client_id"].nunique()
    assert sum(claim["reference_speakers"] for claim in default["claims"].values()) <= run_speakers
    assert run_speakers > test_speakers


def test_exported_dev_and_test_are_exactly_the_runs_evaluation_rows(synthetic_corpus, trained_run, tmp_path):
    from cvlabel.checkpoint import run_config
    from cvlabel.splits import labelled_rows

    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    config = run_config(trained_run).splits
    test_rows = labelled_rows(corpus, config, "test")
    # a self-reported clip of a test speaker that sits in other.tsv: not an evaluation row
    validated, other = read_tsv(corpus / "validated.tsv"), read_tsv(corpus / "other.tsv")
    moved = validated[validated["path"] == test_rows["path"].iloc[0]]
    rewrite_tsv(corpus / "validated.tsv", validated.drop(moved.index))
    rewrite_tsv(corpus / "other.tsv", pd.concat([other, moved]))

    infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    export_parquet(
        corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True, min_confidence=0.6)
    )
    for split in ("dev", "test"):
        exported = set(pd.read_parquet(tmp_path / "aug" / f"{split}.parquet")["path"])
        assert exported == set(labelled_rows(corpus, config, split)["path"])
    unused = pd.read_parquet(tmp_path / "aug" / "unused.parquet").set_index("path")
    assert unused.loc[moved["path"].iloc[0], "unused_reason"] == "held-out speaker, not an evaluation row"


def test_a_release_without_blank_rows_gives_empty_outputs(synthetic_corpus, trained_run, tmp_path):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    for name in ("validated", "other", "invalidated"):
        table = read_tsv(corpus / f"{name}.tsv")
        rewrite_tsv(corpus / f"{name}.tsv", table[table["gender"] != ""])
    summary = infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    assert summary["rows"] == 0
    assert pq.read_schema(tmp_path / "pred" / "predictions.parquet").remove_metadata() == FINAL_SCHEMA
    exported = export_parquet(
        corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True, min_confidence=0.6)
    )
    assert exported["pseudo_labels"] == {"male": 0, "female": 0}
    assert exported["rows"]["train"] > 0


def test_how_many_processes():
    from cvlabel.runners import SERIAL_BELOW_ROWS, resolve_jobs

    assert resolve_jobs(0, rows=SERIAL_BELOW_ROWS - 1, tasks=10, cores=4) == 1  # small run: in-process
    assert resolve_jobs(0, rows=SERIAL_BELOW_ROWS, tasks=10, cores=4) == 4
    assert resolve_jobs(0, rows=10_000, tasks=3, cores=4) == 3  # never more workers than shards to do
    assert resolve_jobs(2, rows=10, tasks=5, cores=4) == 2  # an explicit --jobs is obeyed
    assert resolve_jobs(3, rows=0, tasks=0, cores=4) == 1
    assert resolve_jobs(0, cores=4) == 4  # no row count known: one per core
    with pytest.raises(CvlabelError, match="--jobs"):
        resolve_jobs(-1)


def test_a_disputed_speaker_is_not_labelled(synthetic_corpus, trained_run, tmp_path):
    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    path = tmp_path / "pred" / "predictions.parquet"
    predictions = pd.read_parquet(path)
    modelled = predictions.loc[predictions["label_source"] == "model", "client_id"]
    victim = modelled.iloc[0]
    predictions["speaker_disputed"] = predictions["client_id"].eq(victim)  # only this one is disputed
    predictions.to_parquet(path)
    export_parquet(
        synthetic_corpus,
        tmp_path / "pred",
        tmp_path / "aug",
        ExportOptions(allow_weak_model=True, min_confidence=0.5001),
    )
    rows = pd.concat([pd.read_parquet(tmp_path / "aug" / f"{s}.parquet") for s in ("train", "unused")])
    theirs = rows[(rows["client_id"] == victim) & (rows["gender_raw"] == "")]
    assert len(theirs) and theirs["gender"].isna().all()
    assert (theirs["unused_reason"] == "disputed speaker (committee members or clips disagree)").all()
    others = rows[rows["client_id"].isin(set(modelled) - {victim}) & (rows["gender_raw"] == "")]
    assert (others["gender_source"] == "pseudo").any()  # the rule, not the threshold, held the victim back


def test_a_confidently_wrong_reference_speaker_lowers_the_claim(synthetic_corpus, trained_run, tmp_path):
    import shutil

    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    reference = pd.read_parquet(trained_run / "reference_predictions.parquet")
    sure = np.where(reference["gender"] == "female", 8.0, -8.0)  # every reference speaker confidently right
    results = {}
    for planted in (False, True):
        run = tmp_path / f"run-{planted}"
        shutil.copytree(trained_run, run)
        logits = sure.copy()
        if planted:  # one speaker confidently wrong on every clip, as a high-voiced man can be
            logits[reference["client_id"] == reference["client_id"].iloc[0]] *= -1
        members = [[x] for x in logits]
        reference.assign(logit=logits, member_logits=members).to_parquet(run / "reference_predictions.parquet")
        plan = tmp_path / f"pred-{planted}"
        shutil.copytree(tmp_path / "pred", plan)
        (plan / "plan.json").write_text((plan / "plan.json").read_text().replace(str(trained_run), str(run)))
        summary = export_parquet(
            synthetic_corpus,
            plan,
            tmp_path / f"aug-{planted}",
            ExportOptions(allow_weak_model=True, target_precision=0.51),
        )
        results[planted] = summary["claims"]
        if not planted:  # what the guarantee covers, in one sentence, on the page and in the command's lines
            page = (tmp_path / f"aug-{planted}" / "report.html").read_text()
            assert "Guarantee: with 95% confidence" in page and "fixed-sequence testing" in page
            scored = summary["scored_as_blank"]
            assert f"{scored['reference_speakers']} self-reported reference speakers" in page
            per_speaker = scored["reference_clips_per_speaker"]
            assert scored["blank_speakers"] > 0 and per_speaker is not None and per_speaker <= 8
    wrong_as = "male" if reference["gender"].iloc[0] == "female" else "female"  # the pool the mistake lands in
    clean, with_mistake = results[False][wrong_as], results[True][wrong_as]
    assert clean["certified"] and clean["precision"] == 1.0
    worse, better = with_mistake["best_lower_bound"], clean["best_lower_bound"]
    assert worse is not None and better is not None and worse < better
    # the claim drops: no certified threshold, or one whose selection leaves the wrong speaker out
    assert with_mistake["threshold"] is None or with_mistake["precision"] == 1.0


def test_check_truth_says_when_nothing_matches(synthetic_corpus, trained_run, tmp_path):
    from cvlabel.report import check_truth
    from cvlabel.testing import write_tsv

    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    export_parquet(synthetic_corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True))
    foreign = write_tsv(tmp_path / "truth.tsv", ["path", "true_gender"], [{"path": "x.mp3", "true_gender": "male"}])
    with pytest.raises(CvlabelError, match="none of its paths is a row"):
        check_truth(tmp_path / "aug", foreign)
    text = check_truth(tmp_path / "aug", synthetic_corpus / "truth.tsv")
    assert "blank-gender rows exported" in text
    # why the rest stayed blank, by the export's own reasons (a weak model at 0.99 certifies nothing)
    rows = ExportFolder(tmp_path / "aug").read_rows()
    left = rows[(rows["gender_raw"].str.strip() == "") & rows["gender"].isna()]
    top = left["unused_reason"].value_counts()
    assert f"left blank: {len(left)} rows ({top.iloc[0]} {top.index[0]}" in text


def test_the_four_export_files_share_one_schema_with_nulls_and_counts(synthetic_corpus, trained_run, tmp_path):
    import duckdb

    infer(synthetic_corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    export_parquet(synthetic_corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True))
    schemas = {s: pq.read_schema(tmp_path / "aug" / f"{s}.parquet").remove_metadata() for s in
               ("train", "dev", "test", "unused")}  # fmt: skip
    assert len({str(schema) for schema in schemas.values()}) == 1
    schema = schemas["train"]
    assert schema.field("up_votes").type == pa.int64() and schema.field("down_votes").type == pa.int64()
    assert "unused_reason" in schema.names
    everything = duckdb.sql(f"select * from read_parquet('{tmp_path / 'aug'}/*.parquet')").df()
    assert len(everything) == sum(pq.read_metadata(tmp_path / "aug" / f"{s}.parquet").num_rows for s in schemas)
    assert not (everything["age"] == "").any() and everything["age"].isna().all()  # blank is null, not ""
    assert (everything["gender_raw"] == "").any()  # the TSV's own gender string stays verbatim


def test_infer_on_a_split_reports_the_models_labels_not_the_speakers_answers(synthetic_corpus, trained_run, tmp_path):
    summary = infer(synthetic_corpus, trained_run, tmp_path / "ref", InferOptions(jobs=1, selection="test"))
    predicted = pd.read_parquet(tmp_path / "ref" / "predictions.parquet")
    assert len(predicted) and (predicted["label_source"] == "model").all()
    assert summary["label_source"] == {"model": len(predicted)}


def test_clips_no_decimation_serves_are_counted_as_decoded_the_slow_way(synthetic_corpus, trained_run, tmp_path):
    """A clip that is no MP3 (a WAV under the .mp3 name, as a user's converted release may hold) is
    resampled by soundfile + soxr: predicted as any clip, and infer's summary says how many were decoded
    that way and at which rates. (Every MP3 rate, 8 kHz included, is at or above the decode floor.)"""
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    blank = blank_rows(corpus)["path"].tolist()
    wav = write_voice(tmp_path / "converted.wav", 120, seconds=1.5, sample_rate=8_000)
    wav.replace(corpus / "clips" / blank[0])
    result = runner.invoke(app, infer_command(corpus, trained_run, tmp_path / "pred", "--jobs", "1"))
    assert result.exit_code == 0, result.output
    assert "1 clips decoded the slow way" in result.output and "1 at 8000 Hz" in result.output
    predictions = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").set_index("path")
    assert predictions.loc[blank[0], ["decoder", "native_hz"]].tolist() == ["soundfile", 8000]
    others = predictions.loc[blank[1:]]
    assert set(others["native_hz"]) == {48_000} and others["label"].notna().all()
    assert set(others["decoder"]) == {audio.mp3_decoder()}  # the fastest decoder here, straight to 12 kHz
