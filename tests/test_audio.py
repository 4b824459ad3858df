import numpy as np
import pytest
import soundfile

from cvlabel.audio import SAMPLE_RATE, load_audio
from cvlabel.errors import AudioError
from cvlabel.testing import write_voice


@pytest.mark.parametrize("rate", [48_000, 44_100, 32_000, 8_000])
def test_mp3_decodes_to_16k_float32_mono(tmp_path, rate):
    path = write_voice(tmp_path / f"v{rate}.mp3", 120, seconds=1.0, sample_rate=rate, silence_s=0.25)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # 1.5 s of audio; MP3 encoder delay and padding add a few ms at most
    assert abs(samples.shape[0] / SAMPLE_RATE - 1.5) < 0.06
    assert 0.05 < np.abs(samples).max() <= 1.0


def test_stereo_is_mixed_to_mono(tmp_path):
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    left = 0.5 * np.sin(2 * np.pi * 200 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, -left], axis=1), SAMPLE_RATE)
    assert np.abs(load_audio(path)).max() < 1e-4  # opposite channels cancel: they were averaged
    soundfile.write(path, np.stack([left, left], axis=1), SAMPLE_RATE)
    np.testing.assert_allclose(load_audio(path), left, atol=1e-4)


def test_wav_named_mp3_is_decoded_by_content(tmp_path):
    path = tmp_path / "really_a_wav.mp3"
    soundfile.write(path, np.zeros(800, dtype=np.float32) + 0.1, 8000, format="WAV")
    assert load_audio(path).shape[0] == 1600


def test_max_seconds_bounds_decoding(tmp_path):
    path = write_voice(tmp_path / "long.mp3", 200, seconds=3.0, silence_s=0.0)
    assert load_audio(path, max_seconds=1.0).shape[0] == SAMPLE_RATE


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), "cannot decode"),
        (lambda p: None, "file not found"),
        (lambda p: p.mkdir(), "not a file"),
    ],
)
def test_bad_files_raise_audio_error_with_path(tmp_path, make, reason):
    path = tmp_path / "bad.mp3"
    make(path)
    with pytest.raises(AudioError, match=reason) as info:
        load_audio(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_truncated_mp3_is_detected(tmp_path):
    whole = write_voice(tmp_path / "whole.mp3", 150, seconds=3.0)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut)
    # reading only the intact first part of a truncated file is fine
    assert load_audio(cut, max_seconds=0.5).shape[0] == SAMPLE_RATE // 2
