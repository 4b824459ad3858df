"""Formant-preserving pitch shift (augment.shift_pitch and helpers) on synthetic harmonic
signals whose pitch and resonance are known."""

import numpy as np
import pytest
import torch

from cvlabel.augment import (
    envelope_shift,
    random_crop,
    random_pitch_factors,
    shift_pitch,
    training_crops,
)
from cvlabel.config import AugmentConfig, FeatureConfig
from cvlabel.features import log_mel

RATE = 16_000
CONFIG = FeatureConfig(sample_rate=RATE, window_ms=32.0)  # the shift is rate-agnostic; 16 kHz keeps 7.5 kHz harmonics
N_FFT = CONFIG.n_fft
BIN_HZ = RATE / N_FFT  # 31.25 Hz per STFT bin


def voice(f0: float, formant: float = 1000.0, seconds: float = 1.0) -> np.ndarray:
    """Harmonics of f0 up to 7.5 kHz under one resonance at `formant` (-6 dB at +-100 Hz), and
    white noise 40 dB down (a recording's floor: no spectral valley is infinitely deep)."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    for k in range(1, int(7500 / f0) + 1):
        f = k * f0
        x += np.sin(2 * np.pi * f * t + 0.7 * k) / (1 + ((f - formant) / 100) ** 2)
    x = x / np.sqrt(np.mean(x**2)) + 0.01 * np.random.default_rng(0).standard_normal(t.shape[0])
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def log_power(samples: np.ndarray) -> torch.Tensor:
    """Time-averaged log power spectrum (n_fft // 2 + 1,) of the middle frames, with the features' STFT."""
    spectrum = torch.stft(
        torch.as_tensor(samples),
        N_FFT,
        CONFIG.hop_length,
        window=torch.hann_window(N_FFT),
        center=True,
        return_complex=True,
    )
    return torch.log(spectrum.abs().pow(2)[:, 5:-5].mean(dim=-1) + 1e-10)


def harmonic_bins(spectrum: torch.Tensor, f0: float, count: int = 6) -> list[int]:
    """Bin of the largest value within +-0.4 f0 of each of the first `count` harmonics."""
    out = []
    for k in range(1, count + 1):
        centre = k * f0 / BIN_HZ
        lo, hi = int(np.floor(centre - 0.4 * f0 / BIN_HZ)), int(np.ceil(centre + 0.4 * f0 / BIN_HZ))
        out.append(lo + int(spectrum[lo : hi + 1].argmax()))
    return out


def strongest_harmonic_hz(spectrum: torch.Tensor, f0: float) -> float:
    """Frequency of the loudest of the harmonics below 3 kHz: where the resonance is."""
    bins = harmonic_bins(spectrum, f0, count=int(3000 / f0))
    return bins[int(torch.stack([spectrum[b] for b in bins]).argmax())] * BIN_HZ


# pitches whose harmonics fall on STFT bins (125 Hz = 4 bins), up and down by 4 to 8 semitones
@pytest.mark.parametrize("f0, factor", [(125.0, 1.5), (125.0, 1.25), (250.0, 0.75), (200.0, 0.625)])
def test_harmonics_move_by_the_factor_and_the_resonance_stays(f0, factor):
    source = voice(f0, seconds=2.0)
    out = shift_pitch(source[None], torch.tensor([factor]), RATE, RATE, 2.5)
    assert out.shape == (1, RATE) and out.dtype == np.float32
    target = f0 * factor
    spectrum = log_power(out[0])
    assert harmonic_bins(spectrum, target) == [round(k * target / BIN_HZ) for k in range(1, 7)]
    # the same harmonics as a voice really spoken at the new pitch
    assert harmonic_bins(spectrum, target) == harmonic_bins(log_power(voice(target)), target)
    # the loudest harmonic is the one nearest the 1 kHz resonance, as in the source ...
    assert abs(strongest_harmonic_hz(spectrum, target) - 1000) <= target / 2 + BIN_HZ
    # ... where plain resampling (a zero lifter: no envelope correction) moves it with the pitch
    resampled = log_power(shift_pitch(source[None], torch.tensor([factor]), RATE, RATE, 0.0)[0])
    assert abs(strongest_harmonic_hz(resampled, target) - 1000 * factor) <= target / 2 + BIN_HZ


def test_factor_one_leaves_the_crop_and_its_log_mel_exactly():
    crops = np.stack([voice(125.0, seconds=1.5), voice(200.0, seconds=1.5)])
    out = shift_pitch(crops, torch.tensor([1.0, 1.5]), RATE, RATE, 2.5)
    np.testing.assert_array_equal(out[0], crops[0, :RATE])
    assert torch.equal(log_mel(out[:1]), log_mel(crops[:1, :RATE]))
    assert not np.allclose(out[1], crops[1, :RATE])


def test_loudness_is_kept():
    source = voice(125.0, seconds=2.0)
    out = shift_pitch(source[None], torch.tensor([2 ** (5 / 12)]), RATE, RATE, 2.5)[0]
    level_db = 10 * np.log10(np.mean(out**2) / np.mean(source[:RATE] ** 2))
    assert abs(level_db) < 3


def test_envelope_shift_is_zero_at_factor_one_and_moves_a_smooth_bump():
    bins = N_FFT // 2 + 1
    k = torch.arange(bins, dtype=torch.float32)
    bump = 3 * torch.exp(-(((k - 40) / 8) ** 2))  # a smooth envelope peak at bin 40
    log_power = bump[None, :, None].repeat(2, 1, 3)
    shift = envelope_shift(log_power, torch.tensor([1.0, 0.8]), 40)
    assert shift[0].abs().max() < 1e-4
    moved = log_power[1, :, 0] + shift[1, :, 0]  # env(k * 0.8): the peak goes to bin 50
    assert int(moved.argmax()) == 50


def test_pitch_prob_zero_gives_the_random_crops_of_before():
    clips = [voice(125.0 + 20 * i, seconds=1.0 + 0.1 * i) for i in range(4)]
    config = AugmentConfig(pitch_prob=0.0)
    generator = torch.Generator().manual_seed(0)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    got = list(training_crops(clips, 8000, config, RATE, rng_a, generator))
    before = [random_crop(c, 8000, rng_b) for c in clips]
    assert all(np.array_equal(a, b) for a, b in zip(got, before, strict=True))
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())  # nothing drawn


def test_training_crops_shift_a_share_of_the_crops():
    clips = [voice(125.0, seconds=1.0) for _ in range(16)]
    config = AugmentConfig(pitch_prob=0.5, pitch_semitones=7.0)
    crops = list(training_crops(clips, 8000, config, RATE, np.random.default_rng(0), torch.Generator().manual_seed(0)))
    assert len(crops) == 16 and all(c.shape == (8000,) and c.dtype == np.float32 for c in crops)
    unmoved = harmonic_bins(log_power(clips[0]), 125.0)
    moved = sum(harmonic_bins(log_power(c), 125.0) != unmoved for c in crops)
    assert 3 <= moved <= 13  # about half of 16


def test_a_batch_of_slowed_down_crops_only_still_gives_full_crops():
    # regression: every factor < 1 once made the crops buffer shorter than the crop length
    clips = [voice(125.0, seconds=1.0) for _ in range(2)]
    config = AugmentConfig(pitch_prob=1.0, pitch_semitones=7.0)
    for seed in range(20):  # some draw both factors below 1
        crops = list(
            training_crops(clips, 8000, config, RATE, np.random.default_rng(seed), torch.Generator().manual_seed(seed))
        )
        assert all(c.shape == (8000,) for c in crops)
    with pytest.raises(ValueError):
        shift_pitch(np.zeros((1, 7000), dtype=np.float32), torch.tensor([0.8]), 8000, RATE, 2.5)
    with pytest.raises(ValueError):
        shift_pitch(np.zeros((2, 8000), dtype=np.float32), torch.tensor([1.0, 1.2]), 8000, RATE, 2.5)
    # unshifted rows need only `length` samples, slowed-down ones fewer
    shift_pitch(np.zeros((2, 8000), dtype=np.float32), torch.tensor([1.0, 0.8]), 8000, RATE, 2.5)


def test_random_factors_follow_the_config():
    generator = torch.Generator().manual_seed(0)
    factors = random_pitch_factors(10_000, AugmentConfig(pitch_prob=0.5, pitch_semitones=7.0), generator)
    semitones = 12 * torch.log2(factors)
    assert 0.47 < float((factors != 1).float().mean()) < 0.53
    assert float(semitones.abs().max()) <= 7.0 + 1e-4 and float(semitones.min()) < -6.5
    assert torch.equal(random_pitch_factors(5, AugmentConfig(pitch_prob=0.0), generator), torch.ones(5))
