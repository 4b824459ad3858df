"""Training-time augmentation: pure functions of an array and a random generator.

Waveform changes (crop, gain, noise, telephone band) come before the log-mel; SpecAugment
masks after it. Nothing here shifts pitch or formants: those are the cues of voice gender.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import AugmentConfig

TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the passband of a narrowband (8 kHz) phone line
MU_LAW_LEVELS = 256  # G.711 mu-law: 8 bits per sample


def random_crop(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of `length` samples; a shorter clip is repeated to fill it."""
    if samples.shape[0] < length:
        samples = np.tile(samples, -(-length // max(1, samples.shape[0])))
    start = int(rng.integers(0, samples.shape[0] - length + 1))
    return samples[start : start + length]


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator, brown: bool = False) -> np.ndarray:
    """Add white (or brown: -6 dB/octave, like hum and rumble) noise at `snr_db` below the signal."""
    noise = np.asarray(rng.standard_normal(int(samples.shape[0])), dtype=np.float64)
    if brown:
        noise = np.cumsum(noise)
        noise -= np.linspace(noise[0], noise[-1], noise.shape[0])  # no drift
    signal_power = float(np.mean(samples.astype(np.float64) ** 2)) + 1e-12
    noise *= np.sqrt(signal_power / (np.mean(noise**2) + 1e-12) / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)


def telephone(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Band-limit to 300-3400 Hz and pass through 8-bit mu-law, as on a narrowband phone call."""
    spectrum = np.fft.rfft(samples)
    freqs = np.fft.rfftfreq(samples.shape[0], 1 / sample_rate)
    low, high = TELEPHONE_BAND_HZ
    spectrum[(freqs < low) | (freqs > high)] = 0
    band = np.fft.irfft(spectrum, samples.shape[0])
    peak = np.abs(band).max() + 1e-9
    mu = MU_LAW_LEVELS - 1
    coded = np.sign(band / peak) * np.log1p(mu * np.abs(band / peak)) / np.log1p(mu)
    quantised = np.round((coded + 1) / 2 * mu) / mu * 2 - 1
    decoded = np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu
    return (decoded * peak).astype(np.float32)


def augment_waveform(
    samples: np.ndarray, config: AugmentConfig, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Random gain, then maybe noise, then maybe a telephone channel (which also sees the noise)."""
    out = samples * np.float32(10 ** (float(rng.uniform(-config.gain_db, config.gain_db)) / 20))
    if rng.random() < config.noise_prob:
        snr = float(rng.uniform(config.noise_snr_min_db, config.noise_snr_max_db))
        out = add_noise(out, snr, rng, brown=bool(rng.random() < 0.3))
    if rng.random() < config.telephone_prob:
        out = telephone(out, sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def spec_augment(features: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment masks on (batch, n_mels, frames): masked cells get 0, each clip's mean log-mel."""
    out = features.clone()
    batch, bands, frames = out.shape
    for index in range(batch):
        for _ in range(config.freq_masks):
            width = int(torch.randint(0, config.freq_mask_bands + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, bands - width), (1,), generator=generator))
            out[index, start : start + width, :] = 0
        for _ in range(config.time_masks):
            width = int(torch.randint(0, config.time_mask_frames + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, frames - width), (1,), generator=generator))
            out[index, :, start : start + width] = 0
    return out
