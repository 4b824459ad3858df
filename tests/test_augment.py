"""The batched waveform augmentation and SpecAugment (augment.py) on signals whose content is known."""

import numpy as np
import pytest
import torch

from cvlabel.augment import MU_LAW_LEVELS, augment_batch, spec_augment, telephone, telephone_batch
from cvlabel.config import AugmentConfig

RATE = 12_000.0
QUIET = AugmentConfig(gain_db=0.0, noise_prob=0.0, telephone_prob=0.0)  # every change off


def sine(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def power(x: np.ndarray | torch.Tensor) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def reference_mu_law(unit: np.ndarray) -> np.ndarray:
    """G.711 mu-law coding, 8-bit quantisation and decoding of values in [-1, 1], in float64 as written."""
    mu = MU_LAW_LEVELS - 1
    coded = np.sign(unit) * np.log1p(mu * np.abs(unit)) / np.log1p(mu)
    quantised = np.round((coded + 1) / 2 * mu) / mu * 2 - 1
    return np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu


def test_telephone_keeps_the_band_and_removes_what_is_outside():
    for hz, kept in [(100.0, False), (1000.0, True), (3000.0, True), (4500.0, False)]:
        out = telephone(sine(hz), RATE)
        share = power(out) / power(sine(hz))
        assert (share > 0.9) if kept else (share < 0.01), (hz, share)


def test_telephone_is_mu_law_coded_and_each_row_on_its_own():
    rng = np.random.default_rng(0)
    waves = np.stack([sine(1000.0) + 0.05 * rng.standard_normal(int(RATE)).astype(np.float32) for _ in range(3)])
    waves[1] *= 0.01  # a quiet row: mu-law is relative to each row's peak
    out = telephone_batch(torch.from_numpy(waves), RATE).numpy()
    for row in range(3):
        assert np.allclose(out[row], telephone(waves[row], RATE), atol=1e-6)  # as if alone in the batch
        band = np.fft.irfft(
            np.where((np.abs(np.fft.rfftfreq(waves.shape[1], 1 / RATE) - 1850) <= 1550), np.fft.rfft(waves[row]), 0),
            waves.shape[1],
        )
        peak = np.abs(band).max()
        expected = reference_mu_law(band / peak) * peak
        step = 2 * peak / (MU_LAW_LEVELS - 1)  # the widest level step, near the peak
        assert np.abs(out[row] - expected).max() <= step  # a value at a rounding tie may take the next level
        assert np.mean(np.abs(out[row] - expected) < 1e-4 * peak) > 0.99
        assert len(np.unique(np.round(out[row] / peak, 5))) <= MU_LAW_LEVELS


def test_no_augmentation_leaves_the_crops():
    waves = torch.from_numpy(np.stack([sine(200.0), sine(300.0)]))
    assert torch.equal(augment_batch(waves, QUIET, RATE, torch.Generator().manual_seed(0)), waves)


def test_gain_stays_within_its_range_and_each_crop_gets_its_own():
    waves = torch.from_numpy(np.stack([sine(200.0, amplitude=0.01)] * 200))
    out = augment_batch(waves, AugmentConfig(gain_db=6.0, noise_prob=0.0, telephone_prob=0.0), RATE,
                        torch.Generator().manual_seed(0))  # fmt: skip
    gains_db = 20 * np.log10(out.abs().amax(dim=1).numpy() / 0.01)
    assert gains_db.min() >= -6.0 - 1e-3 and gains_db.max() <= 6.0 + 1e-3
    assert gains_db.std() > 2.0  # spread over the range (uniform: 3.5 dB), not one gain for the batch


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_is_added_at_the_drawn_snr_to_the_drawn_share(snr_db):
    waves = torch.from_numpy(np.stack([sine(200.0)] * 400))
    config = AugmentConfig(gain_db=0.0, noise_prob=0.5, noise_snr_min_db=snr_db, noise_snr_max_db=snr_db,
                           telephone_prob=0.0)  # fmt: skip
    out = augment_batch(waves, config, RATE, torch.Generator().manual_seed(1))
    noise = (out - waves).numpy().astype(np.float64)
    noisy = np.abs(noise).max(axis=1) > 0
    assert 0.4 < noisy.mean() < 0.6
    measured = 10 * np.log10(power(waves[0]) / np.mean(noise[noisy] ** 2, axis=1))
    assert np.allclose(measured, snr_db, atol=0.25)  # clipping at +-1 may shave a little at 5 dB


def test_brown_noise_is_mostly_low_and_white_noise_flat():
    silent = torch.zeros(300, int(RATE)) + torch.from_numpy(sine(1000.0, amplitude=1e-3))
    config = AugmentConfig(gain_db=0.0, noise_prob=1.0, noise_snr_min_db=-30, noise_snr_max_db=-30, telephone_prob=0.0)
    noise = augment_batch(silent, config, RATE, torch.Generator().manual_seed(2)).numpy()
    spectra = np.abs(np.fft.rfft(noise, axis=1)) ** 2
    freqs = np.fft.rfftfreq(noise.shape[1], 1 / RATE)
    low_share = spectra[:, freqs < 500].sum(axis=1) / spectra.sum(axis=1)
    white = low_share < 0.2  # white: 500 / 6000 of the power below 500 Hz
    assert 0.2 < (~white).mean() < 0.4  # brown: BROWN_NOISE_SHARE of the noisy crops
    assert np.median(low_share[~white]) > 0.9 and np.median(low_share[white]) == pytest.approx(1 / 12, abs=0.02)


def test_the_same_generator_state_gives_the_same_batch():
    waves = torch.from_numpy(np.stack([sine(200.0)] * 8))
    first = augment_batch(waves, AugmentConfig(), RATE, torch.Generator().manual_seed(3))
    again = augment_batch(waves, AugmentConfig(), RATE, torch.Generator().manual_seed(3))
    other = augment_batch(waves, AugmentConfig(), RATE, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.abs().max() <= 1.0


def test_spec_augment_masks_whole_bands_and_frames_within_their_widths():
    features = torch.randn(64, 40, 100) + 5  # no cell is 0 before masking
    config = AugmentConfig(freq_masks=2, freq_mask_bands=6, time_masks=1, time_mask_frames=10)
    out = spec_augment(features, config, torch.Generator().manual_seed(0))
    zero = out == 0
    bands, frames = zero.all(dim=2), zero.all(dim=1)  # (batch, bands), (batch, frames) wholly masked
    assert torch.equal(zero, bands[:, :, None] | frames[:, None, :])  # nothing masked but whole bands and frames
    assert torch.equal(out[~zero], features[~zero])
    assert int(bands.sum(dim=1).max()) <= 12 and int(frames.sum(dim=1).max()) <= 10
    assert float(bands.float().mean()) > 0 and float(frames.float().mean()) > 0
    assert not torch.equal(bands[0], bands[1]) or not torch.equal(frames[0], frames[1])  # masks drawn per clip
    none = AugmentConfig(freq_masks=0, time_masks=0)
    assert torch.equal(spec_augment(features, none, torch.Generator().manual_seed(0)), features)
