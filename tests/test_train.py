import csv
import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import cvlabel.speech
from cvlabel.checkpoint import (
    heard_before,
    load_checkpoint,
    read_checkpoint_info,
    run_config,
    save_checkpoint,
    speaker_digest,
)
from cvlabel.cli import app
from cvlabel.config import Config, FeatureConfig, ModelConfig, load_config
from cvlabel.errors import CvlabelError
from cvlabel.metrics import MAX_TEMPERATURE
from cvlabel.model import Committee, GenderCNN, count_parameters
from cvlabel.scoring import batch_logits
from cvlabel.testing import as_set_options, tiny_train_config
from cvlabel.training import LOG_COLUMNS, train

runner = CliRunner()


def tiny_config(cache_dir, *extra):
    return load_config(None, tiny_train_config(cache_dir, *extra))


@pytest.mark.slow
def test_train_cli_writes_every_artifact(synthetic_corpus, tmp_path):
    run = tmp_path / "run"
    sets = as_set_options(tiny_train_config(tmp_path / "cache"))
    result = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(run), *sets])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    # every summary line the command prints has a value (each member's best epoch, not None)
    assert "best_epochs" in result.output
    seen = metrics["clips_seen"]
    assert f"each epoch drew {seen['epoch_clips']:,} of a member's {seen['member_train_clips']:,} train clips" in (
        result.output
    )
    assert not [line for line in result.output.splitlines() if line.rstrip().endswith(" None")]
    for key in (
        "accuracy",
        "balanced_accuracy",
        "roc_auc",
        "precision_male",
        "precision_female",
        "recall_male",
        "recall_female",
        "ece",
        "ece_before_calibration",
        "speaker_accuracy",
        "temperature",
        "parameters",
    ):
        assert key in metrics, key
    assert 0 <= metrics["balanced_accuracy"] <= 1 and 1 <= metrics["temperature"] <= MAX_TEMPERATURE
    # the temperature is fitted on the out-of-fold speakers and kept only if the dev speakers' ECE falls
    calibration = metrics["calibration"]
    assert calibration["kept"] == (calibration["dev_ece_after"] <= calibration["dev_ece_before"])
    assert metrics["temperature"] == (calibration["fitted_temperature"] if calibration["kept"] else 1.0)
    for split in ("train", "dev", "test"):
        assert metrics["splits"][split]["clips"] > 0 and metrics["splits"][split]["speakers"] > 0
    with open(run / "train_log.csv") as handle:
        log_rows = list(csv.DictReader(handle))
    assert list(log_rows[0].keys()) == LOG_COLUMNS and {row["member"] for row in log_rows} == {"0", "1"}
    assert len(log_rows) <= 2 * 2  # two members, at most two epochs each
    assert metrics["members"] == 2 and len(metrics["best_epochs"]) == 2
    assert load_config(run / "config.yaml") == tiny_config(tmp_path / "cache")
    for image in ("confusion.png", "reliability.png"):
        assert (run / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = load_checkpoint(run)
    assert checkpoint.temperature == pytest.approx(metrics["temperature"])
    assert checkpoint.config == tiny_config(tmp_path / "cache")  # the whole resolved config travels inside
    assert not list(run.glob("*.tmp*"))

    evaluated = runner.invoke(app, ["evaluate", str(run), str(synthetic_corpus), "--json", "--jobs", "1"])
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads(evaluated.output)
    assert again["clips"] == metrics["clips"]
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])

    # a finished run is never overwritten
    rerun = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(run), *sets])
    assert rerun.exit_code == 1 and "already holds a trained model" in rerun.output


@pytest.mark.slow
def test_second_run_decodes_nothing(synthetic_corpus, tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "cache", "train.epochs=1")
    train(synthetic_corpus, tmp_path / "first", config)
    entries = sorted((tmp_path / "cache").rglob("*.npy"))
    assert entries

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached clip was decoded again")

    monkeypatch.setattr(cvlabel.speech, "open_audio", no_decoding)
    train(synthetic_corpus, tmp_path / "second", config)
    assert sorted((tmp_path / "cache").rglob("*.npy")) == entries


def test_too_few_speakers_is_a_clear_error(tiny_release, tmp_path):
    with pytest.raises(CvlabelError, match="needs self-reported clips of both genders"):
        train(tiny_release, tmp_path / "run", tiny_config(tmp_path / "cache"))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Committee.empty(ModelConfig(), 40, 3).eval()
    config = load_config(None, ["features.n_mels=40", "features.f_max=5000", "splits.seed=7"])
    save_checkpoint(model, config, 1.7, tmp_path / "model.safetensors", info={"corpus": "x"})
    loaded = load_checkpoint(tmp_path)
    assert loaded.config == config and loaded.temperature == 1.7 and loaded.info == {"corpus": "x", "members": 3}
    x = torch.randn(2, 40, 150)
    torch.testing.assert_close(loaded.model(x), model(x))
    assert loaded.model(x).shape == (2, 3)
    assert read_checkpoint_info(tmp_path).config.splits.seed == 7  # readable without loading the weights


def test_a_checkpoint_of_cvlabel_0_2_reads_its_stft_in_samples_as_milliseconds(tmp_path):
    """cvlabel <= 0.2 wrote features.n_fft / hop_length (512 / 320 at 16 kHz); the same analysis
    is 32 ms / 20 ms, which today's config holds, so old models keep hearing what they learnt on."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    save_checkpoint(Committee.empty(ModelConfig(), 64, 2), Config(), 1.0, tmp_path / "model.safetensors")
    with safe_open(str(tmp_path / "model.safetensors"), framework="numpy") as handle:
        header = handle.metadata()
    old = json.loads(header["config"])
    for key in ("window_ms", "hop_ms", "decoder"):
        del old["features"][key]
    old["features"].update(sample_rate=16_000, n_fft=512, hop_length=320)
    weights = load_file(str(tmp_path / "model.safetensors"))
    save_file(weights, str(tmp_path / "model.safetensors"), metadata={**header, "config": json.dumps(old)})
    features = read_checkpoint_info(tmp_path).config.features
    assert (features.sample_rate, features.window_ms, features.hop_ms) == (16_000, 32.0, 20.0)
    assert (features.n_fft, features.hop_length, features.decoder) == (512, 320, "auto")


def test_default_model_size():
    assert count_parameters(GenderCNN(ModelConfig(), FeatureConfig().n_mels)) == 94_393  # as the README says


def test_a_copied_checkpoint_keeps_its_split_settings(trained_run, tmp_path):
    """A checkpoint moved away from its config.yaml still selects the same dev/test rows."""
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    shutil.copy(trained_run / "model.safetensors", copy / "model.safetensors")
    assert not (copy / "config.yaml").exists()
    assert run_config(copy) == load_config(trained_run / "config.yaml") != Config()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # runs at unpickling time


def test_checkpoint_carrying_code_is_refused_and_never_runs(tmp_path):
    marker = str(tmp_path / "code-ran")
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as handle:
        pickle.dump({"format": "cvlabel-checkpoint", "evil": _Payload(marker)}, handle)
    with pytest.raises(CvlabelError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "code-ran").exists()
    torch.save({"format": "cvlabel-checkpoint", "evil": _Payload(marker)}, path)
    with pytest.raises(CvlabelError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "code-ran").exists()


def test_corrupt_foreign_and_old_checkpoints(tmp_path):
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CvlabelError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "garbage.safetensors")
    save_file({"weights": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CvlabelError, match="not a cvlabel checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(CvlabelError, match="missing: no such run folder or model file"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(CvlabelError, match=r"unfinished: no model.safetensors in this folder \(not a finished"):
        load_checkpoint(tmp_path / "unfinished")
    old_run = tmp_path / "old-run"
    old_run.mkdir()
    torch.save({"format": "cvlabel-checkpoint", "version": 1}, old_run / "model.pt")
    with pytest.raises(CvlabelError, match="a checkpoint of cvlabel 0.1"):
        load_checkpoint(old_run)


def test_model_takes_any_length_and_masks_padding():
    torch.manual_seed(0)
    model = GenderCNN(ModelConfig(), 64).eval()
    short, long = torch.randn(1, 64, 90), torch.randn(1, 64, 400)
    padded = torch.zeros(2, 64, 400)
    padded[0, :, :90], padded[1] = short[0], long[0]
    with torch.no_grad():
        alone = model(short)
        batched = model(padded, torch.tensor([90, 400]))
        unmasked = model(padded)
    assert batched.shape == (2,)
    torch.testing.assert_close(batched[1:], model(long))
    # every stage's padded tail is zeroed, so the short clip gets its own logit, which plain padding does not
    torch.testing.assert_close(batched[:1], alone, atol=1e-6, rtol=1e-6)
    assert abs(float(unmasked[0] - alone[0])) > 10 * abs(float(batched[0] - alone[0]))


def test_fusing_for_inference_keeps_the_outputs():
    torch.manual_seed(0)
    model = GenderCNN(ModelConfig(), 64)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics to fold
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    model.eval()
    x, frames = torch.randn(3, 64, 300), torch.tensor([300, 200, 90])
    with torch.no_grad():
        before = model(x, frames)
        after = model.fuse_for_inference()(x, frames)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_a_clips_logit_does_not_depend_on_its_batch():
    """Batches are padded to a few shapes (so oneDNN reuses its convolutions) and sorted by length:
    whatever a clip is batched with and however far it is padded, the fused committee gives it the
    logit it gets alone."""
    torch.manual_seed(0)
    committee = Committee.empty(ModelConfig(), 64, 2).eval().fuse_for_inference()
    features = FeatureConfig()
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) for n in (2_000, 7_777, 12_345, 48_000, 3_001)]
    alone = np.concatenate([batch_logits(committee, [clip], features, 1) for clip in clips])
    for batch_size in (2, 3, 32):
        together = batch_logits(committee, clips, features, batch_size)
        np.testing.assert_allclose(together, alone, atol=1e-6, rtol=1e-6)


def test_cross_fitting_never_predicts_a_speaker_with_a_member_that_heard_them(synthetic_corpus, tmp_path, monkeypatch):
    import cvlabel.training as training

    heard, predicted = {}, []
    real_fit, real_logits = training._MemberTrainer.fit, training._logits

    def spy_fit(self, *args, **kwargs):
        model = real_fit(self, *args, **kwargs)
        heard[id(model)] = set(self.train_rows["client_id"])
        return model

    def spy_logits(model, part, *args, **kwargs):
        predicted.append((id(model), set(part["client_id"])))
        return real_logits(model, part, *args, **kwargs)

    monkeypatch.setattr(training._MemberTrainer, "fit", spy_fit)
    monkeypatch.setattr(training, "_logits", spy_logits)
    train(synthetic_corpus, tmp_path / "run", tiny_config(tmp_path / "cache", "train.epochs=1", "train.folds=3"))
    member_predictions = [(model, speakers) for model, speakers in predicted if model in heard]
    assert len(heard) == 3 and member_predictions
    for model, speakers in member_predictions:
        assert not speakers & heard[model], "a member predicted a speaker it was trained on"
    reference = pd.read_parquet(tmp_path / "run" / "reference_predictions.parquet")
    out_of_fold = reference[reference["split"] == "train"]
    assert set(out_of_fold["member"]) == {0, 1, 2} and out_of_fold["logit"].notna().all()
    # each train speaker is predicted by exactly one member, the one whose fold held it out
    assert (out_of_fold.groupby("client_id")["member"].nunique() == 1).all()
    assert (reference.loc[reference["split"] != "train", "member"] == -1).all()


def test_too_few_speakers_for_the_folds_is_one_line_before_any_work(synthetic_corpus, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(out),
                                 *as_set_options(tiny_train_config(tmp_path / "cache", "train.folds=9"))])  # fmt: skip
    assert result.exit_code == 1 and "train.folds=9 needs at least 9" in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing decoded, no folder left behind
    result = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(out), "--set", "train.folds=1"])
    assert result.exit_code == 1 and "'train.folds' must be at least 2" in result.output


def test_train_jobs_flag_sets_train_jobs_and_wins_over_config_and_set(synthetic_corpus, tmp_path, monkeypatch):
    import cvlabel.training

    seen = {}

    def capture(corpus_dir, out, config, augmented=None):
        seen["jobs"] = config.train.jobs
        raise CvlabelError("stopped before training")

    monkeypatch.setattr(cvlabel.training, "train", capture)
    yaml_file = tmp_path / "jobs.yaml"
    yaml_file.write_text("train:\n  jobs: 3\n")
    base = ["train", str(synthetic_corpus), "--out", str(tmp_path / "run")]
    cases = [([], 0), (["--config", str(yaml_file)], 3), (["--config", str(yaml_file), "--jobs", "1"], 1),
             (["--set", "train.jobs=2"], 2), (["--set", "train.jobs=2", "--jobs", "1"], 1)]  # fmt: skip
    for extra, expected in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 1 and "stopped before training" in result.output
        assert seen.pop("jobs") == expected, extra
    bad = runner.invoke(app, [*base, "--jobs", "-1"])
    assert bad.exit_code == 1 and "'train.jobs' must be at least 0" in bad.output and not seen
    assert "train.jobs" in runner.invoke(app, ["train", "--help"]).output


def test_fine_tuning_starts_every_member_from_the_init_models_weights(synthetic_corpus, trained_run, tmp_path):
    start = load_checkpoint(trained_run).model
    # a learning rate so small that no step moves a weight visibly: the run must end where it started
    run = tmp_path / "run"
    train(
        synthetic_corpus, run, tiny_config(tmp_path / "cache", f"train.init={trained_run}", "train.learning_rate=1e-12")
    )
    tuned = load_checkpoint(run)
    assert tuned.config.train.init == str(trained_run)
    # it inherits who the starting weights heard: the init run's train and dev speakers (export leaves them out)
    init_reference = pd.read_parquet(trained_run / "reference_predictions.parquet")
    heard = init_reference.loc[init_reference["split"] != "test", "client_id"].unique()
    assert heard_before(tuned.info) == {speaker_digest(c) for c in heard} and len(heard) >= 4
    for mine, theirs in zip(tuned.model.members, start.members, strict=True):
        # the weights (not BatchNorm's running statistics, which a training step moves at any learning rate)
        for (name, a), b in zip(mine.named_parameters(), theirs.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6), name
    with open(run / "train_log.csv") as handle:
        epochs = [(int(r["member"]), int(r["epoch"])) for r in csv.DictReader(handle)]
    # the starting weights are measured on dev as epoch 0 and compete with every epoch after
    assert [(m, 0) for m in range(len(start.members))] == [e for e in epochs if e[1] == 0]
    # and the check above can fail: a member of random weights is not the init model's
    torch.manual_seed(0)
    random_start = GenderCNN(tuned.config.model, tuned.config.features.n_mels)
    assert not all(
        torch.allclose(a, b, atol=1e-6)
        for a, b in zip(random_start.parameters(), start.members[0].parameters(), strict=True)
    )


def test_fine_tuning_from_a_model_of_other_settings_is_one_line_before_any_work(
    trained_run, synthetic_corpus, tmp_path
):
    out, cache = tmp_path / "run", tmp_path / "cache"
    sets = as_set_options(tiny_train_config(cache, "model.hidden=24"))
    result = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(out), "--init", str(trained_run), *sets])
    assert result.exit_code == 1 and "model.hidden: 16 there, 24 here" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists() and not cache.exists()
    missing = runner.invoke(app, ["train", str(synthetic_corpus), "--out", str(out), "--init", str(tmp_path / "nope"),
                                  *as_set_options(tiny_train_config(cache))])  # fmt: skip
    assert missing.exit_code == 1 and "no such run folder or model file" in missing.output and not out.exists()
    assert "--init" in runner.invoke(app, ["train", "--help"]).output


def test_a_killed_training_resumes_after_its_last_finished_member(synthetic_corpus, tmp_path, monkeypatch, caplog):
    import cvlabel.training as training

    run, config = tmp_path / "run", tiny_config(tmp_path / "cache", "train.epochs=1", "train.folds=3")
    real_fit, fitted = training._MemberTrainer.fit, []

    def killed_in_member_1(self, *args, **kwargs):
        if self.member == 1:
            raise KeyboardInterrupt  # Ctrl-C, or the power going, while member 1 trains
        fitted.append(self.member)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(training._MemberTrainer, "fit", killed_in_member_1)
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_corpus, run, config)
    assert fitted == [0] and (run / "member-0.safetensors").is_file() and not (run / "model.safetensors").exists()
    from safetensors.torch import load_file

    saved = load_file(run / "member-0.safetensors")

    # another config is refused, not mixed in
    with pytest.raises(CvlabelError, match="unfinished training with other settings"):
        train(synthetic_corpus, run, tiny_config(tmp_path / "cache", "train.epochs=2", "train.folds=3"))

    def counting(self, *args, **kwargs):
        fitted.append(self.member)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(training._MemberTrainer, "fit", counting)
    fitted.clear()
    train(synthetic_corpus, run, config)  # the same command again
    assert fitted == [1, 2]  # member 0 was not trained again
    assert "member 1 of 3 was trained before" in caplog.text
    assert not list(run.glob("member-*.safetensors")) and (run / "model.safetensors").is_file()
    # the committee's member 0 is the one the killed run finished, weight for weight
    for name, tensor in load_checkpoint(run).model.members[0].state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    with open(run / "train_log.csv") as handle:
        assert {int(r["member"]) for r in csv.DictReader(handle)} == {0, 1, 2}  # its log rows kept too


def test_a_training_killed_inside_a_member_resumes_after_its_last_epoch_and_ends_as_if_never_killed(
    synthetic_corpus, tmp_path, monkeypatch, caplog
):
    """SIGKILL (or Ctrl-C) during member 2's second epoch: the same command trains member 2's epochs 2
    and 3 only (epoch 1 was saved), and the committee equals that of a run never killed, weight for weight."""
    import cvlabel.training as training

    sets = ("train.epochs=3", "train.folds=2", "train.patience=5")
    config = tiny_config(tmp_path / "cache", *sets)
    train(synthetic_corpus, tmp_path / "whole", config)

    real_save, epochs_run = training._save_progress, []

    def killed_after_member_2_epoch_1(path, key, epoch, *args, **kwargs):
        real_save(path, key, epoch, *args, **kwargs)
        epochs_run.append((path.name, epoch))
        if path.name == "member-1.epoch.safetensors" and epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_save_progress", killed_after_member_2_epoch_1)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_corpus, run, config)
    assert (run / "member-0.safetensors").is_file() and (run / "member-1.epoch.safetensors").is_file()
    with pytest.raises(CvlabelError, match="unfinished training with other settings"):
        train(synthetic_corpus, run, tiny_config(tmp_path / "cache", *sets, "train.learning_rate=0.01"))

    epochs_run.clear()
    train(synthetic_corpus, run, config)  # the same command again
    assert epochs_run == [("member-1.epoch.safetensors", 2), ("member-1.epoch.safetensors", 3)]
    assert "member 2: 1 epochs were trained before" in caplog.text
    assert not list(run.glob("member-*")) and (run / "model.safetensors").is_file()
    whole, resumed = load_checkpoint(tmp_path / "whole").model, load_checkpoint(run).model
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    logs = [pd.read_csv(folder / "train_log.csv").drop(columns="seconds") for folder in (tmp_path / "whole", run)]
    pd.testing.assert_frame_equal(*logs)


def test_an_epoch_draws_at_most_train_epoch_clips(synthetic_corpus, tmp_path, monkeypatch):
    """A release's size does not set the training's cost: an epoch is at most train.epoch_clips clips."""
    import cvlabel.training as training

    batches: list[int] = []
    real = training.training_features

    def counting(speech, *args):
        batches.append(len(speech))
        return real(speech, *args)

    monkeypatch.setattr(training, "training_features", counting)
    sets = ("train.epochs=2", "train.batch_size=4", "train.folds=2", "train.patience=5")
    train(synthetic_corpus, tmp_path / "run", tiny_config(tmp_path / "cache", *sets, "train.epoch_clips=8"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    per_member = metrics["splits"]["train"]["clips"] / 2
    assert per_member > 8  # each member has more train clips than an epoch may draw...
    assert batches == [4, 4] * 4  # ...and draws 8 an epoch: 2 members x 2 epochs x 2 batches of 4
    seen = metrics["clips_seen"]  # what train says it saw: 2 members x 2 epochs x 8
    assert (seen["crops"], seen["epoch_clips"]) == (32, 8) and seen["member_train_clips"] >= per_member
    batches.clear()
    train(synthetic_corpus, tmp_path / "all", tiny_config(tmp_path / "cache", *sets, "train.epoch_clips=0"))
    assert sum(batches) > 4 * 8  # 0: every train clip, every epoch


def test_the_early_stopping_check_scores_at_most_train_dev_clips_and_the_metrics_every_dev_clip(
    synthetic_corpus, tmp_path, monkeypatch
):
    import cvlabel.training as training

    checked: list[int] = []
    real = training._MemberTrainer._dev_row

    def counting(self, *args):
        checked.append(len(self.dev_rows))
        return real(self, *args)

    monkeypatch.setattr(training._MemberTrainer, "_dev_row", counting)
    sets = ("train.epochs=2", "train.folds=2", "train.dev_clips=3")
    metrics = train(synthetic_corpus, tmp_path / "run", tiny_config(tmp_path / "cache", *sets))
    assert checked == [3] * 4  # 2 members x 2 epochs, 3 dev clips each
    assert metrics["dev"]["clips"] == metrics["splits"]["dev"]["clips"] > 3


def test_a_checkpoint_gets_the_files_ordinary_mode(tmp_path):
    import os
    import stat

    model = Committee([GenderCNN(ModelConfig(), 64)])
    save_checkpoint(model, Config(), 1.0, tmp_path / "model.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o666 & ~mask  # not safetensors' 0600
