"""Training-time augmentation: pure functions of an array and a random generator.

Waveform changes (crop, formant-preserving pitch shift, gain, noise, telephone band) come
before the log-mel; SpecAugment masks after it. The pitch shift moves F0 and keeps the formants
(the vocal tract), so that pitch alone stops predicting gender on the shifted crops and the model
must also hear the vocal tract. Nothing moves formants.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .config import AugmentConfig
from .features import DYNAMIC_RANGE_DB, LOG_FLOOR

DYNAMIC_RANGE_NATS = DYNAMIC_RANGE_DB * float(np.log(10.0) / 10.0)  # log_mel's floor below the peak, in nats
SHIFT_N_FFT = 512  # analysis of the pitch shifter (resynthesised, so independent of the features' STFT)
SHIFT_HOP = 256  # half the window: overlap-added periodic Hann windows sum to a constant
SHIFT_MAX_GAIN_DB = 40.0  # bound on the envelope correction where the resampled spectrum is nearly empty

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


def telephone(samples: np.ndarray, sample_rate: float) -> np.ndarray:
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
    samples: np.ndarray, config: AugmentConfig, sample_rate: float, rng: np.random.Generator
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


def random_pitch_factors(batch: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Pitch factors (batch,): 2 ** (s / 12) with s ~ Uniform(-pitch_semitones, +pitch_semitones)
    for a share pitch_prob of the crops, exactly 1 for the rest."""
    semitones = (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * config.pitch_semitones
    shifted = torch.rand(batch, generator=generator) < config.pitch_prob
    return torch.where(shifted, 2.0 ** (semitones / 12), torch.ones(batch, dtype=torch.float64)).float()


def training_crops(
    clips: list[np.ndarray],
    length: int,
    config: AugmentConfig,
    sample_rate: float,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> Iterator[np.ndarray]:
    """Random (length,) crops of `clips` (each (n,) samples; short ones repeat), a share
    pitch_prob of them pitch-shifted by shift_pitch. Crop positions come from `rng`, pitch
    factors from `generator`. Without pitch shifts the crops are drawn lazily, one per step of
    the iteration, so a loop that draws from `rng` between them sees the same random stream as
    random_crop called in that loop (and nothing is drawn from `generator`)."""
    if config.pitch_prob <= 0:
        yield from (random_crop(clip, length, rng) for clip in clips)
        return
    factors = random_pitch_factors(len(clips), config, generator)
    needs = [length if f == 1 else int(np.ceil((length - 1) * float(f))) + 2 for f in factors]
    crops = np.zeros((len(clips), max(length, *needs)), dtype=np.float32)  # slowed-down rows need fewer
    for row, (clip, need) in enumerate(zip(clips, needs, strict=True)):
        crops[row, :need] = random_crop(clip, need, rng)
    yield from shift_pitch(crops, factors, length, sample_rate, config.lifter_ms)


def shift_pitch(
    crops: np.ndarray, factors: torch.Tensor, length: int, sample_rate: float, lifter_ms: float
) -> np.ndarray:
    """Formant-preserving pitch shift of waveforms: resample, then put the spectral envelope back.

    crops: (batch, m) float samples, m >= length and m >= (length - 1) * max(factors) + 2 (a row
    with a smaller factor uses only its first samples); factors: (batch,) pitch ratios. Returns (batch, length)
    float32. Row b is crops[b] read at a rate factors[b] (linear interpolation): F0 and every
    formant move by the factor and speech runs factor times faster. Its STFT magnitude is then
    multiplied by the ratio of the original spectral envelope (the resampled one, read at
    frequency * factor) to the resampled one, phases kept, and resynthesised: the harmonics stay
    where resampling put them, with the window resolution of the new pitch, and the formants go
    back where they were. Rows with factor 1 are crops[b, :length] unchanged.

    Limits: the speaking rate changes with the pitch (by the factor); the envelope is a cepstral
    one (lifter_ms, at most the shortest period), so a formant narrower than the harmonic spacing
    of a high voice comes back only partly.
    """
    waves = torch.as_tensor(crops, dtype=torch.float32)
    changed = torch.nonzero(factors != 1).flatten()
    fastest = float(factors[changed].max()) if changed.numel() else 1.0
    if waves.shape[1] < max(length, int(np.floor((length - 1) * fastest)) + 2 if changed.numel() else length):
        raise ValueError(f"shift_pitch: waves of {waves.shape[1]} samples are too short for {length} at {fastest:.3f}")
    out = waves[:, :length].clone()
    if changed.numel() == 0:
        return out.numpy()
    rows, ratio = waves[changed], factors[changed].double()
    position = torch.arange(length, dtype=torch.float64)[None, :] * ratio[:, None]  # (rows, length)
    below = position.floor().long().clamp(max=waves.shape[1] - 2)
    weight = (position - below).float()
    resampled = torch.gather(rows, 1, below) * (1 - weight) + torch.gather(rows, 1, below + 1) * weight

    window = torch.hann_window(SHIFT_N_FFT)
    spectrum = torch.stft(
        resampled, SHIFT_N_FFT, SHIFT_HOP, window=window, center=True, pad_mode="reflect", return_complex=True
    )  # (rows, bins, frames)
    log_power = torch.log(spectrum.real**2 + spectrum.imag**2 + LOG_FLOOR)
    log_power = torch.maximum(log_power, log_power.amax(dim=(-2, -1), keepdim=True) - DYNAMIC_RANGE_NATS)
    # a slowed-down crop's shortest period is 1 / (F0max * factor): the lifter may grow by 1 / factor
    # and resolve the envelope better (it stays at lifter_ms for a sped-up crop: F0 is rarely above
    # 400 Hz even then, and a shorter lifter blurred the formants back, measured on long-term spectra)
    lifters = (lifter_ms * sample_rate / 1000 / ratio.clamp(max=1.0)).round().long().clamp(min=1)
    limit = SHIFT_MAX_GAIN_DB * float(np.log(10.0) / 10.0)
    gain = envelope_shift(log_power, ratio.float(), lifters).clamp(-limit, limit)
    out[changed] = torch.istft(
        spectrum * torch.exp(gain / 2), SHIFT_N_FFT, SHIFT_HOP, window=window, center=True, length=length
    )  # power ratio -> magnitude: half the log
    return out.numpy()


def envelope_shift(log_power: torch.Tensor, factors: torch.Tensor, lifter_bins: torch.Tensor | int) -> torch.Tensor:
    """env(k * factor) - env(k) for each bin k of (batch, bins, frames) log power, where env is
    its cepstral envelope keeping quefrencies below lifter_bins (an int, or (batch,) per row);
    factors (batch,). Same shape as log_power.

    The envelope is a cosine series of the low quefrencies, so it is evaluated exactly at k * factor
    (no interpolation): env(k) = c0 + 2 sum_{0 < q < lifter} c_q cos(2 pi q k / n_fft).
    """
    bins = log_power.shape[-2]
    n_fft = 2 * (bins - 1)
    lifters = torch.as_tensor(lifter_bins).expand(log_power.shape[0])
    longest = int(lifters.max())
    cepstrum = torch.fft.irfft(log_power.transpose(-1, -2), n=n_fft)[..., 1:longest]  # (batch, frames, q)
    q = torch.arange(1, longest, dtype=torch.float64)[None, :, None]
    k = torch.arange(bins, dtype=torch.float64)[None, None, :]
    phase = 2 * np.pi * q * k / n_fft
    basis = 2 * (torch.cos(phase * factors.double()[:, None, None]) - torch.cos(phase))  # (batch, q, bins)
    basis = basis * (q < lifters[:, None, None])
    return torch.bmm(cepstrum, basis.float()).transpose(-1, -2)
