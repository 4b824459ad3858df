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


def telephone(samples: np.ndarray, sample_rate: float) -> np.ndarray:
    """Band-limit (n,) samples to 300-3400 Hz and pass them through 8-bit mu-law, as on a narrowband phone call."""
    return telephone_batch(torch.from_numpy(np.asarray(samples, dtype=np.float32))[None], sample_rate)[0].numpy()


def telephone_batch(waves: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """telephone() on each row of (batch, n) float32 waves at once (one FFT of the batch)."""
    spectrum = torch.fft.rfft(waves, dim=-1)
    freqs = torch.fft.rfftfreq(waves.shape[-1], 1 / sample_rate)
    low, high = TELEPHONE_BAND_HZ
    spectrum[..., (freqs < low) | (freqs > high)] = 0
    band = torch.fft.irfft(spectrum, waves.shape[-1], dim=-1)
    peak = band.abs().amax(dim=-1, keepdim=True) + 1e-9
    unit = band / peak
    # mu-law: code (sign(u) log(1 + mu |u|) / log(1 + mu)), quantise to MU_LAW_LEVELS levels of [-1, 1],
    # decode; in place (no temporary per operation): a third of the time of the plain expression
    mu, log_levels = MU_LAW_LEVELS - 1, float(np.log(MU_LAW_LEVELS))
    level = unit.abs().mul_(mu).log1p_().mul_(mu / (2 * log_levels)).copysign_(unit).add_(mu / 2).round_()
    coded = level.mul_(2 / mu).sub_(1)
    return coded.abs().mul_(log_levels).expm1_().div_(mu).copysign_(coded).mul_(peak)


BROWN_NOISE_SHARE = 0.3  # of the noisy crops: brown noise (-6 dB/octave, like hum and rumble), the rest white


def augment_batch(
    waves: torch.Tensor, config: AugmentConfig, sample_rate: float, generator: torch.Generator
) -> torch.Tensor:
    """(batch, n) float32 crops, each augmented on its own draws: a random gain, then maybe noise at a
    random SNR (white, or brown: BROWN_NOISE_SHARE), then maybe a telephone channel (which also hears the
    noise); clipped to [-1, 1]. All draws come from `generator`; the whole batch is computed at once."""
    batch, length = waves.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator)

    out = waves * (10 ** (uniform(-config.gain_db, config.gain_db) / 20))[:, None]
    noisy = torch.rand(batch, generator=generator) < config.noise_prob
    snr_db = uniform(config.noise_snr_min_db, config.noise_snr_max_db)
    brown = torch.rand(batch, generator=generator) < BROWN_NOISE_SHARE
    phone = torch.rand(batch, generator=generator) < config.telephone_prob
    rows = torch.nonzero(noisy).flatten()
    if rows.numel():
        noise = torch.randn(rows.numel(), length, generator=generator)
        walks = brown[rows]
        if walks.any():  # a random walk, summed in float64 (float32 sums of 10^5 steps drift), its trend removed
            drift = noise[walks].double().cumsum(dim=-1)
            ends = torch.linspace(0, 1, length, dtype=torch.float64)[None, :]
            noise[walks] = (drift - (drift[:, :1] + (drift[:, -1:] - drift[:, :1]) * ends)).float()
        signal_power = out[rows].square().mean(dim=-1, keepdim=True) + 1e-12
        noise_power = noise.square().mean(dim=-1, keepdim=True) + 1e-12
        scale = torch.sqrt(signal_power / noise_power / 10 ** (snr_db[rows, None] / 10))
        out[rows] = out[rows] + noise * scale
    rows = torch.nonzero(phone).flatten()
    if rows.numel():
        out[rows] = telephone_batch(out[rows], sample_rate)
    return out.clamp(-1.0, 1.0)


def spec_augment(features: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment masks on (batch, n_mels, frames): masked cells get 0, each clip's mean log-mel.
    Each clip gets freq_masks bands of 0 to freq_mask_bands mels and time_masks spans of 0 to
    time_mask_frames frames, each at a uniform start (the whole batch's masks drawn at once)."""
    batch, bands, frames = features.shape

    def masked(count: int, widest: int, size: int) -> torch.Tensor:  # (batch, size): inside any of `count` masks
        width = torch.randint(0, widest + 1, (batch, count), generator=generator)
        start = (torch.rand(batch, count, generator=generator) * (size - width).clamp(min=1)).long()
        cells = torch.arange(size)[None, None, :]
        inside = (cells >= start[..., None]) & (cells < (start + width)[..., None])
        return inside.any(dim=1)

    keep = ~masked(config.freq_masks, config.freq_mask_bands, bands)[:, :, None]
    keep = keep & ~masked(config.time_masks, config.time_mask_frames, frames)[:, None, :]
    return features * keep


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
