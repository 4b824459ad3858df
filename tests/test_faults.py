"""The fault matrix (docs/reliability.md): bad clips, odd TSVs, killed runs, hostile checkpoints.

Each case asserts the documented behaviour: a one-line error, or an error row while the batch
goes on, and never a lost or doubled row.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from typer.testing import CliRunner

from cvlabel import audio
from cvlabel.artifacts import ExportFolder
from cvlabel.audio import SAMPLE_RATE, load_audio
from cvlabel.cache import AudioCache, cache_root
from cvlabel.checkpoint import run_config
from cvlabel.cli import app
from cvlabel.config import ExportOptions, FeatureConfig, InferOptions, load_config
from cvlabel.corpus import read_release, read_tsv
from cvlabel.errors import AudioError, CorpusError
from cvlabel.export import export_parquet
from cvlabel.inference import infer
from cvlabel.speech import decode_speech
from cvlabel.splits import speaker_genders
from cvlabel.testing import NEW_COLUMNS, copy_corpus, infer_command, rewrite_tsv, write_tsv, write_voice

runner = CliRunner()


def blank_paths(corpus):
    manifest = read_release(corpus)
    return manifest.loc[manifest["gender"].isna() & manifest["source_tsv"].isin(["validated", "other"]), "path"]


# ---------------------------------------------------------------- clips


def test_pure_silence_and_a_tenth_of_a_second(tmp_path):
    silent = tmp_path / "silent.mp3"
    soundfile.write(silent, np.zeros(48_000, dtype=np.float32), 48_000, format="MP3")
    with pytest.raises(AudioError, match="no speech"):
        decode_speech(silent, FeatureConfig())
    short = write_voice(tmp_path / "short.mp3", 200, seconds=0.1, silence_s=0.0)
    assert decode_speech(short, FeatureConfig()).samples.shape[0] > 0  # short but voiced: still predicted


@pytest.mark.slow
def test_ten_minute_clip_is_capped(tmp_path):
    rate = 8_000
    t = np.arange(600 * rate) / rate
    long = tmp_path / "long.mp3"
    soundfile.write(long, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), rate, format="MP3")
    speech = decode_speech(long, FeatureConfig())
    assert speech.rate == (rate if audio.mp3_decoder() != "soundfile" else SAMPLE_RATE)  # at the floor: whole
    assert speech.samples.shape[0] <= FeatureConfig().max_seconds * speech.rate


def test_wav_named_mp3_and_odd_rates(tmp_path):
    for rate in (8_000, 44_100):
        path = write_voice(tmp_path / f"v{rate}.wav", 120, seconds=0.5, sample_rate=rate)
        disguised = path.rename(tmp_path / f"v{rate}.mp3")
        assert abs(load_audio(disguised).shape[0] - 1.1 * SAMPLE_RATE) < 0.01 * SAMPLE_RATE


def test_every_kind_of_bad_clip_is_an_error_row_and_the_batch_goes_on(synthetic_corpus, trained_run, tmp_path):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    paths = blank_paths(corpus).tolist()
    clips = corpus / "clips"
    breakers = {
        "empty file": lambda p: p.write_bytes(b""),
        "cannot decode": lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000)),
        "file not found": lambda p: p.unlink(),
        "not a file": lambda p: (p.unlink(), p.mkdir()),
        "no speech": lambda p: soundfile.write(p, np.zeros(24_000, dtype=np.float32), 48_000, format="MP3"),
        "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
    }
    broken = dict(zip(paths, breakers, strict=False))
    for path, kind in broken.items():
        breakers[kind](clips / path)
    infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=2, shard_size=4))
    predicted = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").set_index("path")
    assert sorted(predicted.index) == sorted(paths)  # every row once, broken or not
    for path, kind in broken.items():
        assert kind in predicted.loc[path, "error"], (kind, predicted.loc[path, "error"])
        assert predicted.loc[path, "clip_p_female"] != predicted.loc[path, "clip_p_female"]  # NaN
    healthy = predicted.drop(index=list(broken))
    assert healthy["error"].isna().all()


# ---------------------------------------------------------------- TSVs


def test_tsv_faults_are_one_line_errors(tmp_path):
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    cases = {
        "missing column 'client_id'": (["path", "gender"], [{"path": "a.mp3", "gender": "male"}]),
        "unknown gender value 'robot'": (NEW_COLUMNS, [{"client_id": "a", "path": "a.mp3", "gender": "robot"}]),
        "line 2: path '../../etc/passwd'": (NEW_COLUMNS, [{"client_id": "a", "path": "../../etc/passwd"}]),
        "line 2: path '/etc/passwd'": (NEW_COLUMNS, [{"client_id": "a", "path": "/etc/passwd"}]),
    }
    for message, (columns, rows) in cases.items():
        write_tsv(corpus / "validated.tsv", columns, rows)
        result = runner.invoke(app, ["inspect", str(corpus)])
        assert result.exit_code == 1, message
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
        assert "Traceback" not in result.output


def test_tsv_oddities_that_are_read(tmp_path):
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    columns = NEW_COLUMNS + ["brand_new_column"]
    rows = [
        {"client_id": "a", "path": "a.mp3", "gender": "male", "brand_new_column": "x"},
        {"client_id": "a", "path": "a.mp3", "gender": "male"},
    ]  # a duplicate path
    write_tsv(corpus / "validated.tsv", columns, rows)
    (corpus / "other.tsv").write_bytes(b"")  # an empty TSV
    manifest = read_release(corpus)
    assert len(manifest) == 1 and manifest["brand_new_column"].iloc[0] == "x"
    (corpus / "clips").rmdir()
    with pytest.raises(CorpusError, match="no clips/ folder"):  # train and infer need the clips
        read_release(corpus)
    result = runner.invoke(app, ["inspect", str(corpus)])  # inspect reads the TSVs alone, and says so
    assert result.exit_code == 0 and "1 clips, 1 speakers (no clips/ folder: TSVs only" in result.output


def test_a_broken_row_is_a_one_line_error_naming_the_line(tmp_path):
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    write_tsv(
        corpus / "validated.tsv", NEW_COLUMNS, [{"client_id": c, "path": f"{c}.mp3", "gender": "male"} for c in "abc"]
    )
    lines = (corpus / "validated.tsv").read_bytes().split(b"\n")
    lines[2] = b"\t".join(lines[2].split(b"\t")[:11])  # cut off after `accents`
    (corpus / "validated.tsv").write_bytes(b"\n".join(lines))
    result = runner.invoke(app, ["inspect", str(corpus)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"cvlabel: error: {corpus / 'validated.tsv'}, line 3: 11 fields, the header has 13 (a truncated or broken row)"
    ]


# ---------------------------------------------------------------- runs


def with_many_blank_rows(source, target, copies: int):
    """A corpus copy whose blank rows are repeated `copies` times (hard-linked clips): a run long
    enough to be killed in the middle."""
    corpus = copy_corpus(source, target)
    validated = read_tsv(corpus / "validated.tsv")
    blank = validated[validated["gender"] == ""]
    extra = []
    for copy in range(copies):
        for _, row in blank.iterrows():
            name = f"copy{copy}_{row['path']}"
            os.link(corpus / "clips" / row["path"], corpus / "clips" / name)
            extra.append({**row.to_dict(), "path": name})
    rewrite_tsv(corpus / "validated.tsv", pd.concat([validated, pd.DataFrame(extra)]))
    return corpus


@pytest.mark.slow
def test_sigkill_during_infer_then_the_same_command(synthetic_corpus, trained_run, tmp_path):
    corpus = with_many_blank_rows(synthetic_corpus, tmp_path / "corpus", copies=10)
    out = tmp_path / "pred"
    command = [
        sys.executable,
        "-m",
        "cvlabel",
        "infer",
        str(corpus),
        "--unlabeled",
        "--model",
        str(trained_run),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--shard-size",
        "4",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("part-*.parquet")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "predictions.parquet").exists(), "the run finished before it could be killed"
    survivors = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert survivors

    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    predicted = pd.read_parquet(out / "predictions.parquet")
    assert sorted(predicted["path"]) == sorted(blank_paths(corpus))
    parts = pd.concat([pd.read_parquet(p) for p in out.glob("part-*.parquet")])
    assert parts["path"].is_unique and len(parts) == len(predicted)
    assert {name: (out / name).stat().st_mtime_ns for name in survivors} == survivors
    assert not list(out.glob("*.tmp*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_is_refused_before_any_work(synthetic_corpus, trained_run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = runner.invoke(
        app, ["infer", str(synthetic_corpus), "--unlabeled", "--model", str(trained_run), "--out", str(locked / "pred")]
    )
    assert result.exit_code == 1 and "cannot write there" in result.output


def test_output_that_is_a_file_is_refused(synthetic_corpus, trained_run, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    for command in (
        ["infer", str(synthetic_corpus), "--unlabeled", "--model", str(trained_run), "--out", str(blocker)],
        ["train", str(synthetic_corpus), "--out", str(blocker / "run"), "--set", "train.folds=2"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1 and "cannot write there" in result.output, result.output
        assert "Traceback" not in result.output


def test_unreadable_self_reported_clips_never_land_in_a_training_split(synthetic_corpus, trained_run, tmp_path):
    from cvlabel.config import ExportOptions
    from cvlabel.export import export_parquet

    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    manifest = read_release(corpus)
    stated = manifest[manifest["gender"].isin(["male", "female"]) & (manifest["source_tsv"] == "validated")]
    emptied, removed, broken = stated["path"].iloc[0], stated["path"].iloc[1], stated["path"].iloc[2]
    (corpus / "clips" / emptied).write_bytes(b"")
    (corpus / "clips" / removed).unlink()
    (corpus / "clips" / broken).write_bytes(b"not an mp3 " * 100)
    config = run_config(trained_run)  # training records a clip it could not decode in its cache: so does this
    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    assert set(cache.fill([corpus / "clips" / broken])) == {str(corpus / "clips" / broken)}
    infer(corpus, trained_run, tmp_path / "pred", InferOptions(jobs=1))
    export_parquet(corpus, tmp_path / "pred", tmp_path / "aug", ExportOptions(allow_weak_model=True))
    used = pd.concat([pd.read_parquet(tmp_path / "aug" / f"{s}.parquet") for s in ("train", "dev", "test")])
    assert not {emptied, removed, broken} & set(used["path"])
    unused = pd.read_parquet(tmp_path / "aug" / "unused.parquet").set_index("path")
    assert unused.loc[emptied, "unused_reason"] == "clip is empty (0 bytes)"
    assert unused.loc[removed, "unused_reason"] == "clip missing"
    assert unused.loc[broken, "unused_reason"] == "clip could not be decoded"


def test_commands_never_write_into_another_commands_folder(synthetic_corpus, trained_run, tmp_path):
    from cvlabel.config import ExportOptions
    from cvlabel.errors import CvlabelError
    from cvlabel.export import export_parquet
    from cvlabel.training import train

    pred, aug = tmp_path / "pred", tmp_path / "aug"
    infer(synthetic_corpus, trained_run, pred, InferOptions(jobs=1))
    export_parquet(synthetic_corpus, pred, aug, ExportOptions(allow_weak_model=True))
    listing = {p.name: p.stat().st_mtime_ns for p in aug.iterdir()}
    with pytest.raises(CvlabelError, match="is not empty .*never over another output"):  # never overwritten
        export_parquet(synthetic_corpus, pred, aug, ExportOptions(allow_weak_model=True))
    assert {p.name: p.stat().st_mtime_ns for p in aug.iterdir()} == listing
    result = runner.invoke(app, ["infer", str(synthetic_corpus), "--unlabeled", "--model", str(trained_run),
                                 "--out", str(trained_run)])  # fmt: skip
    assert result.exit_code == 1 and "not cvlabel infer's own" in result.output
    with pytest.raises(CvlabelError, match="not cvlabel train's own"):
        train(synthetic_corpus, pred, load_config(None, ["train.folds=2"]))
    assert not (trained_run / "plan.json").exists() and not (pred / "config.yaml").exists()


def _children(pid: int) -> dict[int, str]:
    """Live child processes of `pid`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_workers_exit_when_infer_is_killed(synthetic_corpus, trained_run, tmp_path):
    corpus = with_many_blank_rows(synthetic_corpus, tmp_path / "corpus", copies=10)
    out = tmp_path / "pred"
    command = [sys.executable, "-m", "cvlabel", "infer", str(corpus), "--unlabeled", "--model", str(trained_run),
               "--out", str(out), "--jobs", "2", "--shard-size", "4"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("part-*.parquet")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    workers = {pid for pid, cmdline in _children(process.pid).items() if "resource_tracker" not in cmdline}
    assert workers, "no worker processes to watch"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 20
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed parent"


@pytest.mark.parametrize("quiet", [True, False])
def test_the_command_line_hides_loky_resource_trackers_leak_warning(quiet):
    """The tracker is a process of its own, launched with the parent's -W options (as loky launches it:
    multiprocessing.util._args_from_interpreter_flags); after an interrupt it could print its "leaked
    semlock" warning after cvlabel's last line (1 of 6 full test runs, in the SIGTERM test below)."""
    tracker = "joblib.externals.loky.backend.resource_tracker"
    warn = "warnings.warn(\\'leaked semlock objects\\')"  # issued from the tracker's module, as it does
    child = f"import warnings; exec('{warn}', {{'__name__': '{tracker}', 'warnings': warnings}})"
    parent = (
        "import subprocess, sys\n"
        "from multiprocessing import util\n"
        "from cvlabel.cli_options import quiet_resource_tracker\n"
        f"{'quiet_resource_tracker()' if quiet else 'pass'}\n"
        f"subprocess.run([sys.executable, *util._args_from_interpreter_flags(), '-c', {child!r}], check=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True)
    assert ("leaked semlock objects" in result.stderr) is not quiet, result.stderr


@pytest.mark.slow
def test_sigterm_during_a_parallel_infer_is_ctrl_c_one_line_workers_stopped_and_resumable(
    synthetic_corpus, trained_run, tmp_path
):
    """What a scheduler or `timeout` sends: one line, exit 143, no worker writing after the exit, and
    the same command finishes the work."""
    corpus = with_many_blank_rows(synthetic_corpus, tmp_path / "corpus", copies=10)
    out = tmp_path / "pred"
    command = [sys.executable, "-m", "cvlabel", "infer", str(corpus), "--unlabeled", "--model", str(trained_run),
               "--out", str(out), "--jobs", "2", "--shard-size", "4"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("part-*.parquet")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert not (out / "predictions.parquet").exists(), "the run finished before it could be stopped"
    assert process.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "it/s" not in line and "%|" not in line]
    assert lines[-1].startswith("cvlabel: terminated (SIGTERM)"), stderr[-2000:]
    assert "Traceback" not in stderr
    shards = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    time.sleep(2.0)  # a worker left running would still be writing shards now
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")} == shards

    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert sorted(pd.read_parquet(out / "predictions.parquet")["path"]) == sorted(blank_paths(corpus))


def test_a_release_with_most_clips_missing_stops_in_one_line_and_a_few_missing_stay_unlabelled(
    synthetic_corpus, trained_run, tmp_path
):
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus")
    for clip in (corpus / "clips").iterdir():
        clip.unlink()  # an empty clips/ folder: an unpacking that failed
    inspected = runner.invoke(app, ["inspect", str(corpus)])  # inspect looks at clips/ too
    listed = len(read_release(corpus))
    assert inspected.exit_code == 0 and f"{listed} clips" in inspected.output
    assert "(0 of the listed clips are in clips/)" in inspected.output
    result = runner.invoke(app, infer_command(corpus, trained_run, tmp_path / "pred"))
    assert result.exit_code == 1 and "clips to predict are not in" in result.output, result.output
    assert "--max-missing-share" in result.output and not (tmp_path / "pred").exists()

    # a few missing: predicted as error rows, and export labels none of them, not even from the
    # speaker's own answer on other rows (a row without audio is no training example)
    corpus = copy_corpus(synthetic_corpus, tmp_path / "corpus2")
    manifest = read_release(corpus)
    genders, _ = speaker_genders(manifest)
    blank = manifest[manifest["gender"].isna()]
    inheriting = blank[blank["client_id"].isin(genders.index)]["path"].iloc[:1].tolist()
    gone = [*inheriting, *blank[~blank["client_id"].isin(genders.index)]["path"].iloc[:2]]
    for path in gone:
        (corpus / "clips" / path).unlink()
    summary = infer(corpus, trained_run, tmp_path / "pred2", InferOptions(jobs=1))
    assert summary["missing_clips"] == len(gone) == 3
    options = ExportOptions(allow_weak_model=True, min_confidence=0.5001, layout="release")
    export_parquet(corpus, tmp_path / "pred2", tmp_path / "aug", options)
    rows = ExportFolder(tmp_path / "aug").read_rows().set_index("path")
    assert rows.loc[gone, "gender"].isna().all()
    assert (rows.loc[gone, "blank_reason"] == "clip not on disk").all()
    assert inheriting  # the corpus has a blank row of a speaker who answered elsewhere


def test_a_second_infer_into_a_folder_in_use_is_refused_in_one_line(synthetic_corpus, trained_run, tmp_path):
    from cvlabel.files import folder_lock

    out = tmp_path / "pred"
    out.mkdir()
    with folder_lock(out, "cvlabel infer"):  # another infer writing there right now
        result = runner.invoke(app, infer_command(synthetic_corpus, trained_run, out, "--jobs", "1"))
        assert result.exit_code == 1 and "is in use by another cvlabel infer right now" in result.output
        assert not list(out.glob("part-*.parquet"))  # it did none of the work
    result = runner.invoke(app, infer_command(synthetic_corpus, trained_run, out, "--jobs", "1"))
    assert result.exit_code == 0, result.output  # free again: the lock went with its holder


def test_a_decode_cache_that_cannot_be_written_is_one_line(synthetic_corpus, tmp_path):
    from cvlabel.testing import as_set_options, tiny_train_config

    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")  # unwritable even as root
    result = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(tmp_path / "run"),
                                 *as_set_options(tiny_train_config(blocker))])  # fmt: skip
    assert result.exit_code == 1 and "the decode cache (train.cache_dir)" in result.output, result.output
    assert "Traceback" not in result.output
