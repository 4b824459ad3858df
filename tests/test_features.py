import dataclasses

import numpy as np
import pytest
import torch

from cvlabel.config import FeatureConfig
from cvlabel.errors import AudioError
from cvlabel.features import _reflect_pad, log_mel
from cvlabel.speech import speech_bounds, speech_only, speech_onset, trim_silence

RATE = int(FeatureConfig().sample_rate)  # samples a second (a whole number at the default rate)


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_log_mel_shapes_and_frame_count():
    config = FeatureConfig()
    single = log_mel(tone(200, 1.0), config)
    assert single.shape == (config.n_mels, RATE // config.hop_length + 1)
    batch = log_mel(np.stack([tone(200, 1.0), tone(300, 1.0)]), config)
    assert batch.shape == (2, config.n_mels, RATE // config.hop_length + 1)
    assert single.dtype == torch.float32 and torch.isfinite(batch).all()


def test_energy_lands_in_the_band_of_the_tone():
    config = FeatureConfig(normalize_gain=False)
    low, high = log_mel(tone(150, 0.5), config), log_mel(tone(2000, 0.5), config)
    assert int(low.mean(dim=1).argmax()) < int(high.mean(dim=1).argmax())
    # a tone above f_max leaves no energy in any band
    above = log_mel(tone(5000, 0.5), config)
    assert above.max() < low.max() - 8  # natural-log units: 35 dB


def test_gain_normalisation_removes_loudness_only():
    config = FeatureConfig()
    loud, quiet = log_mel(tone(220, 0.5, 0.5), config), log_mel(tone(220, 0.5, 0.05), config)
    # float32 rounding; cells near the 80 dB floor (a pure tone's far sidelobes) differ by up to 0.02
    heard = loud > loud.max() - 60 * np.log(10) / 10
    torch.testing.assert_close(loud[heard], quiet[heard], atol=1e-2, rtol=0)
    assert float((loud - quiet).abs().max()) < 0.05
    assert not torch.allclose(loud, log_mel(tone(440, 0.5, 0.5), config), atol=1e-1)


def test_trim_silence_keeps_the_voiced_part():
    config = FeatureConfig()
    clip = np.concatenate([np.zeros(RATE), tone(200, 0.5), np.zeros(RATE)]).astype(np.float32)
    start, end = speech_bounds(clip, config)
    pad = int(config.vad_pad_ms / 1000 * RATE)
    assert abs(start - (RATE - pad)) <= 320 and abs(end - (RATE + RATE // 2 + pad)) <= 320
    assert trim_silence(clip, config).shape[0] == end - start


def test_silence_and_noise_floor_give_no_speech():
    config = FeatureConfig()
    assert trim_silence(np.zeros(RATE, dtype=np.float32), config).shape == (0,)
    hiss = (1e-4 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)  # -80 dBFS
    assert trim_silence(hiss, config).shape == (0,)
    with pytest.raises(AudioError, match="no speech"):
        speech_only(hiss, config, "hiss.wav")


def test_trimming_is_switchable_and_pure():
    clip = np.concatenate([np.zeros(RATE), tone(200, 0.5)]).astype(np.float32)
    before = clip.copy()
    trimmed = speech_only(clip, FeatureConfig(), "clip")
    untrimmed = speech_only(clip, FeatureConfig(trim_silence=False), "clip")
    assert untrimmed.shape[0] == clip.shape[0] > trimmed.shape[0] >= 0.5 * RATE
    np.testing.assert_array_equal(clip, before)


@pytest.mark.parametrize("silence_s", [0.0, 0.5, 1.0, 2.37])
def test_speech_onset_is_the_first_loud_frame_wherever_it_falls(silence_s):
    """speech_onset looks a second at a time: a sound in a later second, or right at a second's
    first frame, is found at the same sample as a scan of every frame finds it."""
    config = FeatureConfig()
    frame = int(RATE * config.vad_frame_ms / 1000)
    clip = np.concatenate([np.zeros(int(silence_s * RATE)), tone(200, 0.5)]).astype(np.float32)
    energy_db = 10 * np.log10(np.mean(clip[: len(clip) // frame * frame].reshape(-1, frame) ** 2, axis=1) + 1e-12)
    first_loud = int(np.flatnonzero(energy_db >= config.vad_floor_dbfs)[0]) * frame
    assert speech_onset(clip, config) == first_loud
    assert abs(first_loud - silence_s * RATE) <= frame
    assert speech_onset(np.zeros(3 * RATE, dtype=np.float32), config) is None


@pytest.mark.parametrize("shape", [(193,), (194,), (1000,), (3, 500)])
def test_reflect_padding_is_torchs(shape):
    """log_mel pads by slicing; the frames are those of torch.stft(center=True, pad_mode="reflect")."""
    samples = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    flat = torch.from_numpy(samples).reshape(-1, 1, shape[-1])
    expected = torch.nn.functional.pad(flat, (192, 192), mode="reflect").reshape(shape[:-1] + (shape[-1] + 384,))
    np.testing.assert_array_equal(_reflect_pad(samples, 192, 192), expected.numpy())
    with pytest.raises(ValueError, match="reflect padding by 192 needs more than"):
        _reflect_pad(samples[..., :192], 192, 192)


def test_config_is_hashable_and_frozen():
    config = FeatureConfig()
    assert hash(config) == hash(FeatureConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_mels = 80  # type: ignore[misc]


def test_log_mel_matches_torchaudio_melspectrogram():
    import torchaudio

    config = FeatureConfig(normalize_gain=False)
    samples = np.random.default_rng(0).standard_normal((2, RATE)).astype(np.float32) * 0.1
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=RATE,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        f_min=config.f_min,
        f_max=config.f_max,
        power=2.0,
        norm="slaney",
        mel_scale="slaney",
    )(torch.from_numpy(samples))
    ours = log_mel(samples, config)
    expected = torch.log(reference + 1e-10)
    expected = torch.maximum(expected, expected.amax(dim=(-2, -1), keepdim=True) - 80 * np.log(10) / 10)
    torch.testing.assert_close(ours, expected, atol=1e-3, rtol=1e-4)


def test_the_same_sound_gives_the_same_features_at_any_rate():
    """The STFT is set in ms and the bands in Hz, so a model hears a clip decoded at 12 kHz as it
    heard it at 16 kHz (checkpoints made at 16 kHz keep their labels)."""
    import soxr

    rng = np.random.default_rng(1)
    t = np.arange(16_000) / 16_000
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 25)) * (1 + 0.1 * rng.standard_normal(t.size))
    at16 = (0.1 * voice).astype(np.float32)
    at12 = soxr.resample(at16, 16_000, 12_000)
    features16 = log_mel(at16, FeatureConfig(sample_rate=16_000))
    features12 = log_mel(at12, FeatureConfig(sample_rate=12_000))
    assert FeatureConfig(sample_rate=16_000).n_fft == 480 and FeatureConfig(sample_rate=12_000).n_fft == 360
    assert features16.shape == features12.shape
    inner = (slice(None), slice(2, -2))  # the edge frames see different reflect padding
    assert (
        float((features16[inner] - features12[inner]).abs().mean()) < 0.01
    )  # natural-log units (0.04 dB); a wrong rate gives ~1
