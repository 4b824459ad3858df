import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import soxr

from cvlabel import audio, bandmp3, mpg123
from cvlabel.audio import SAMPLE_RATE, decoder_for, finite, load_audio, mp3_rate
from cvlabel.cache import AudioCache
from cvlabel.config import FeatureConfig
from cvlabel.errors import AudioError, ConfigError
from cvlabel.features import frame_count, log_mel
from cvlabel.speech import decode_clip, decode_speech
from cvlabel.testing import write_voice


@pytest.mark.parametrize("rate", [48_000, 44_100, 32_000, 8_000])
def test_mp3_decodes_to_the_model_rate_float32_mono(tmp_path, rate):
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
    assert load_audio(path).shape[0] == SAMPLE_RATE // 10


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
        (lambda p: os.mkfifo(p), "not a file"),  # opened without blocking, then refused
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


needs_mpg123 = pytest.mark.skipif(not mpg123.available(), reason="libmpg123 is not installed")


needs_bandmp3 = pytest.mark.skipif(not bandmp3.available(), reason="cvlabel._bandmp3 is not built")
EXACT_DECODERS = [pytest.param("mpg123", marks=needs_mpg123), pytest.param("bandmp3", marks=needs_bandmp3)]


@pytest.mark.parametrize("decoder", EXACT_DECODERS)
@pytest.mark.parametrize("rate", [48_000, 24_000, 12_000])
def test_fast_decoders_give_what_soundfile_and_soxr_give(tmp_path, rate, decoder):
    """libmpg123 and bandmp3 keep every k-th sample of their synthesis filterbank; soundfile decodes
    at the clip's rate, then soxr resamples. All are gapless and band-limited: the same features."""
    path = write_voice(tmp_path / f"v{rate}.mp3", 180, seconds=1.5, sample_rate=rate, silence_s=0.2)
    assert decoder_for(path, decoder, SAMPLE_RATE, mp3_rate(path))[0] == decoder
    fast, reference = load_audio(path, decoder=decoder), load_audio(path, decoder="soundfile")
    assert fast.shape[0] == reference.shape[0]
    config = FeatureConfig()
    difference = (log_mel(fast, config) - log_mel(reference, config))[:, 2:-2]
    assert float(difference.abs().mean()) < 0.01  # natural-log units (0.04 dB); measured <= 0.005


@pytest.mark.parametrize(
    "rate,decoders",
    [(48_000, ("bandmp3", "mpg123")), (36_000, ("bandmp3",)), (44_100, ()), (8_000, ())],
)
def test_each_mp3_goes_to_the_fastest_decoder_that_decodes_it_exactly(tmp_path, rate, decoders):
    """bandmp3 decimates by any integer, libmpg123 by 1, 2 or 4 (its N-to-M resampler distorts the
    top of the band by several dB: not used); soundfile + soxr take the rest."""
    installed = {"bandmp3": bandmp3.available(), "mpg123": mpg123.available()}
    wanted = next((d for d in decoders if installed[d]), "soundfile")
    assert decoder_for(Path("clip.mp3"), "auto", SAMPLE_RATE, rate)[0] == wanted
    if installed["mpg123"]:
        mpg123_wanted = "mpg123" if "mpg123" in decoders else "soundfile"
        assert decoder_for(Path("clip.mp3"), "mpg123", SAMPLE_RATE, rate)[0] == mpg123_wanted
    assert decoder_for(Path("clip.mp3"), "soundfile", SAMPLE_RATE, rate) == ("soundfile", 0)
    assert decoder_for(Path("clip.wav"), "auto", SAMPLE_RATE, None) == ("soundfile", 0)


# Every rate an MP3 can have, and the decimation each fast decoder takes at the default floor
# (8 kHz, twice f_max): the largest power of two that keeps the floor (bandmp3 up to 16, libmpg123
# up to 4); 8 kHz itself is decoded whole.
NATIVE_STEPS = {
    48_000: (4, 4),
    44_100: (4, 4),
    32_000: (4, 4),
    24_000: (2, 2),
    22_050: (2, 2),
    16_000: (2, 2),
    12_000: (1, 1),
    11_025: (1, 1),
    8_000: (1, 1),
}


@pytest.mark.parametrize("rate", NATIVE_STEPS)
def test_with_a_floor_every_mp3_rate_is_decimated_by_a_fast_decoder(rate):
    floor = FeatureConfig().decode_floor
    band_step, mpg123_step = NATIVE_STEPS[rate]
    if bandmp3.available():
        assert decoder_for(Path("c.mp3"), "auto", SAMPLE_RATE, rate, floor) == (
            ("bandmp3", band_step) if band_step else ("soundfile", 0)
        )
    if mpg123.available():
        assert decoder_for(Path("c.mp3"), "mpg123", SAMPLE_RATE, rate, floor) == (
            ("mpg123", mpg123_step) if mpg123_step else ("soundfile", 0)
        )
    if band_step:
        assert rate / band_step >= 8_000 and rate / band_step / 2 >= FeatureConfig().f_max


# The MPEG-1 and MPEG-2 rates LAME encodes (MPEG-2.5's 8-12 kHz are below or at the floor)
@pytest.mark.parametrize("rate", [48_000, 44_100, 32_000, 24_000, 22_050, 16_000])
@pytest.mark.parametrize("decoder", EXACT_DECODERS)
def test_each_rate_decodes_at_native_over_k_as_soundfile_does(tmp_path, rate, decoder):
    """At native / k the fast decoders give libsndfile's samples resampled to that rate (below
    ~4.5 kHz, where the band-limited decode is exact), and the features equal those of a 12 kHz
    decode: the analysis is in ms and Hz (features.py)."""
    path = write_voice(tmp_path / f"v{rate}.mp3", 180, seconds=1.5, sample_rate=rate, silence_s=0.2)
    config = FeatureConfig(decoder=decoder)
    with audio.open_audio(path, SAMPLE_RATE, decoder, config.decode_floor) as reader:
        assert reader.decoder == decoder
        fast_rate, fast = reader.sample_rate, reader.read_all()
    step = NATIVE_STEPS[rate][0 if decoder == "bandmp3" else 1]
    assert fast_rate == rate / step
    native, _ = soundfile.read(path, dtype="float32")
    reference = soxr.resample(native, rate, fast_rate).astype(np.float32)
    assert abs(fast.shape[0] - reference.shape[0]) <= 1
    length = min(fast.shape[0], reference.shape[0])
    at_rate = config.at_rate(fast_rate)
    # soxr's anti-alias filter rolls off over the last ~9% below the new Nyquist frequency; where that is
    # f_max (32 and 16 kHz to 8 kHz) the band decode keeps the top mel band whole, so it is not compared
    # (+0.018 nats there against a 12 kHz decode on real 32 kHz clips, the other bands within 0.001)
    bands = slice(None, -1) if fast_rate / 2 <= config.f_max else slice(None)
    gain_free = replace(config, normalize_gain=False).at_rate(fast_rate)
    difference = (log_mel(fast[:length], gain_free) - log_mel(reference[:length], gain_free))[bands, 2:-2]
    assert float(difference.abs().mean()) < 0.01  # natural-log units, the same decode; measured <= 0.0065
    at_12k = log_mel(load_audio(path, decoder="soundfile"), config)
    frames = min(at_12k.shape[1], log_mel(fast, at_rate).shape[1])
    across = (log_mel(fast, at_rate)[:, 2 : frames - 2] - at_12k[:, 2 : frames - 2]).abs().mean()
    # another rate, the same bands: measured 0.04-0.06 on real clips, 0.12 on this steady synthetic
    # voice at 11.025 kHz (its sharp harmonics fall between bins 31.19 Hz apart, interpolated to 31.25)
    assert float(across) < 0.15


def test_a_32k_clip_is_decoded_at_a_quarter_of_its_rate_and_its_features_follow(tmp_path):
    path = write_voice(tmp_path / "v.mp3", 150, seconds=1.0, sample_rate=32_000, silence_s=0.2)
    speech = decode_speech(path, FeatureConfig())
    assert speech.rate == (8_000 if audio.mp3_decoder() != "soundfile" else SAMPLE_RATE)
    at_rate = FeatureConfig().at_rate(speech.rate)
    assert log_mel(speech.samples, at_rate).shape == (64, frame_count(speech.samples.shape[0], at_rate))
    assert abs(frame_count(speech.samples.shape[0], at_rate) - speech.samples.shape[0] / speech.rate * 50) <= 1


def test_without_the_fast_decoders_mp3_falls_back_to_soundfile_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(mpg123, "_library", lambda: None)
    monkeypatch.setattr(bandmp3, "_bandmp3", None)
    monkeypatch.setattr(audio, "mp3_decoder", audio.mp3_decoder.__wrapped__)
    path = write_voice(tmp_path / "v.mp3", 150, seconds=1.0)
    with caplog.at_level(logging.INFO, logger="cvlabel.audio"):
        assert decoder_for(path, "auto", SAMPLE_RATE, 48_000, 10_000) == ("soundfile", 0)
    assert "soundfile + soxr" in caplog.text and "libmpg123" in caplog.text
    assert abs(load_audio(path).shape[0] / SAMPLE_RATE - 1.6) < 0.06
    with pytest.raises(ConfigError, match="libmpg123 is not installed"):
        load_audio(path, decoder="mpg123")
    with pytest.raises(ConfigError, match="_bandmp3 was not built"):
        load_audio(path, decoder="bandmp3")


def test_a_decoder_named_but_not_installed_is_one_error_before_any_clip_and_never_cached(tmp_path, monkeypatch):
    """features.decoder=bandmp3 on a machine without the extension: the cache refuses before decoding
    (no .err entries that would outlive installing it), and works once the decoder is there."""
    clips = [write_voice(tmp_path / f"v{i}.mp3", 150 + 20 * i, seconds=0.6) for i in range(3)]
    cache = AudioCache(tmp_path / "cache", FeatureConfig(decoder="bandmp3"))
    real = bandmp3._bandmp3
    monkeypatch.setattr(bandmp3, "_bandmp3", None)
    with pytest.raises(ConfigError, match="features.decoder' is bandmp3 but cvlabel._bandmp3 was not built"):
        cache.fill(clips)
    assert not list((tmp_path / "cache").rglob("*.err"))
    if real is not None:  # "installed": the same cache decodes every clip
        monkeypatch.setattr(bandmp3, "_bandmp3", real)
        assert cache.fill(clips) == {}
        assert all(cache.load(c).rate == 12_000 for c in clips)


@pytest.mark.parametrize("decoder", ["soundfile", *EXACT_DECODERS])
def test_truncated_and_broken_mp3_are_the_same_errors_with_every_decoder(tmp_path, decoder):
    whole = write_voice(tmp_path / "whole.mp3", 150, seconds=3.0)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut, decoder=decoder)
    assert load_audio(cut, max_seconds=0.5, decoder=decoder).shape[0] == SAMPLE_RATE // 2
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\xff\xfb\x90\x00" + np.random.default_rng(0).bytes(3000))  # a frame header, then noise
    with pytest.raises(AudioError):
        load_audio(garbage, decoder=decoder)


def test_the_format_is_told_by_the_bytes(tmp_path):
    wav = tmp_path / "v.mp3"
    soundfile.write(wav, np.zeros(800, dtype=np.float32), 8000, format="WAV")
    assert mp3_rate(wav) is None
    tagged = write_voice(tmp_path / "tagged.mp3", 150, seconds=0.5)
    tagged.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x14" + bytes(20) + tagged.read_bytes())  # a 20-byte tag
    assert mp3_rate(tagged) == 48_000
    assert abs(load_audio(tagged).shape[0] / SAMPLE_RATE - 1.1) < 0.06


@pytest.mark.parametrize("decoder", EXACT_DECODERS)
def test_a_clip_longer_than_the_head_read_decodes_the_same(tmp_path, monkeypatch, decoder):
    # open_audio reads HEAD_BYTES to tell the format and decodes them when that is the whole clip;
    # a longer clip (or one whose ID3 tag fills the head) is read again whole
    clip = write_voice(tmp_path / "v.mp3", 150, seconds=1.0)
    tagged = tmp_path / "tagged.mp3"
    tagged.write_bytes(b"ID3\x04\x00\x00\x00\x00\x0f\x68" + bytes(2024) + clip.read_bytes())  # a 2,024-byte tag
    whole = load_audio(clip, decoder=decoder)
    monkeypatch.setattr(audio, "HEAD_BYTES", 1000)
    assert mp3_rate(clip) == mp3_rate(tagged) == 48_000
    np.testing.assert_array_equal(load_audio(clip, decoder=decoder), whole)
    np.testing.assert_array_equal(load_audio(tagged, decoder=decoder), whole)


@pytest.mark.parametrize("decoder", ["soundfile", *EXACT_DECODERS])
def test_leading_silence_does_not_eat_the_seconds_budget(tmp_path, decoder):
    """max_seconds counts from the first sound: 3 s of silence, then 2 s of voice, with a 1 s
    budget give 1 s of voice (plus the trimmer's pad), not nothing."""
    path = write_voice(tmp_path / "late.mp3", 150, seconds=2.0, silence_s=3.0)
    config = FeatureConfig(max_seconds=1.0, decoder=decoder)
    decoded = decode_clip(path, config)
    assert 3.9 < decoded.samples.shape[0] / decoded.rate < 4.1  # the silence, then the budget
    speech = decode_speech(path, config)
    pad = config.vad_pad_ms / 1000
    assert 1.0 - 0.05 < speech.samples.shape[0] / speech.rate < 1.0 + pad + 0.05


@pytest.mark.parametrize("decoder", ["soundfile", *EXACT_DECODERS])
def test_stereo_mp3_is_mixed_to_mono(tmp_path, decoder):
    t = np.arange(48_000) / 48_000
    left = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    path = tmp_path / "stereo.mp3"
    soundfile.write(path, np.stack([left, -left], axis=1), 48_000, format="MP3")
    cancelled = load_audio(path, decoder=decoder)
    soundfile.write(path, np.stack([left, np.zeros_like(left)], axis=1), 48_000, format="MP3")
    half = load_audio(path, decoder=decoder)
    assert np.sqrt(np.mean(cancelled**2)) < 0.01  # opposite channels cancel: they were averaged
    assert abs(np.sqrt(np.mean(half[2000:-2000] ** 2)) - 0.15 / np.sqrt(2)) < 0.01  # one silent channel halves it


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [-np.inf], [np.inf, -np.inf]])
def test_non_finite_samples_are_an_audio_error(bad):
    samples = np.zeros(1000, dtype=np.float32)
    samples[10 : 10 + len(bad)] = bad
    with pytest.raises(AudioError, match="not finite"):
        finite(samples, "clip.mp3")


def test_huge_finite_samples_pass_although_their_sum_overflows():
    samples = np.full(1000, 3e38, dtype=np.float32)
    np.testing.assert_array_equal(finite(samples, "clip.mp3"), samples)


def test_every_feature_setting_is_in_the_cache_key_or_read_only_after_the_cache(tmp_path):
    """A new audio setting left out of the key would silently reuse stale decoded clips."""
    import dataclasses

    from cvlabel.cache import AUDIO_FIELDS, FEATURE_ONLY_FIELDS

    decode_floor_inputs = {"min_decode_rate", "f_max"}
    base = FeatureConfig()
    folder = AudioCache(tmp_path, base).folder
    for field in dataclasses.fields(FeatureConfig):
        name, value = field.name, getattr(base, field.name)
        assert name in AUDIO_FIELDS or name in FEATURE_ONLY_FIELDS or name in decode_floor_inputs, name
        changed: Any  # a value of the field's own type
        if isinstance(value, bool):
            changed = not value
        elif isinstance(value, (int, float)):
            changed = value * 1.5 + 1
        else:
            changed = "soundfile" if audio.mp3_decoder() != "soundfile" else "mpg123"  # not what auto resolves to
        moved = AudioCache(tmp_path, dataclasses.replace(base, **{name: changed})).folder != folder
        assert moved == (name not in FEATURE_ONLY_FIELDS), name


def test_cache_entries_are_named_by_the_clips_resolved_path_size_and_mtime(tmp_path, monkeypatch):
    """entries() resolves a folder once and lstats each clip: it must name what resolving each clip names."""
    import hashlib

    def by_definition(cache: AudioCache, clip: Path) -> Path:
        resolved = clip.resolve()
        stamp = f"{resolved.stat().st_size}:{resolved.stat().st_mtime_ns}" if resolved.exists() else "missing"
        digest = hashlib.sha1(f"{resolved}:{stamp}".encode()).hexdigest()
        return cache.folder / digest[:2] / digest

    real = tmp_path / "real"
    real.mkdir()
    (real / "a.mp3").write_bytes(b"a" * 10)
    (real / "b.mp3").write_bytes(b"b" * 20)
    (tmp_path / "linked").symlink_to(real)  # a clips folder that is a symlink
    (real / "c.mp3").symlink_to(real / "b.mp3")  # a clip that is one
    monkeypatch.chdir(tmp_path)
    clips = [real / "a.mp3", tmp_path / "linked" / "a.mp3", real / "c.mp3", real / "gone.mp3",
             Path("real/b.mp3"), real / "sub" / ".." / "b.mp3", Path("linked/c.mp3")]  # fmt: skip
    cache = AudioCache(tmp_path / "cache", FeatureConfig())
    named = cache.entries(clips)
    assert named == [by_definition(cache, clip) for clip in clips]
    assert named[0] == named[1] and named[2] == named[4] == named[5] == named[6] != named[0]
    assert named[3] != named[0] and cache.entry(clips[3]) == named[3]
