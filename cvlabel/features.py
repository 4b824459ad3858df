"""Pure feature functions: the log-mel spectrogram the model reads (silence trimming is in speech.py).

Every function takes an array and returns an array; settings live in FeatureConfig, which
travels inside each checkpoint so that inference computes exactly the features training did.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torchaudio

from .config import FeatureConfig

LOG_FLOOR = 1e-10  # added to mel power before the log, so that digital silence stays finite
DYNAMIC_RANGE_DB = 80.0  # dB below each clip's loudest bin at which log-mel is clamped


def log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Log-mel spectrogram. (n,) -> (n_mels, frames); (batch, n) -> (batch, n_mels, frames).

    frames = frame_count(n) (centred frames, reflect-padded, Hann window; where the hop is a whole
    number of samples, the same as torchaudio's MelSpectrogram with power 2 and Slaney mels). Values
    are natural-log power, clamped at DYNAMIC_RANGE_DB below the clip's peak; with normalize_gain
    each clip's mean is subtracted, so a clip and the same clip 20 dB quieter give the same
    features.
    """
    window, filterbank = _mel_basis(config)
    samples = np.asarray(samples, dtype=np.float32)
    padded = torch.from_numpy(_reflect_pad(samples, config.n_fft // 2))
    # torch.stft(center=False)'s frames and FFT, without its wrapper (~20 us a call), in the layout
    # the FFT writes: (..., frames, bins); bins above f_max carry no mel weight
    if config.hop_length == config.hop_samples:
        frames = padded.unfold(-1, config.n_fft, config.hop_length) * window
    else:  # a hop of no whole number of samples (20 ms at 32000 / 3 Hz): each frame starts at the nearest
        frames = padded[..., _frame_indices(config, frame_count(samples.shape[-1], config))] * window
    spectrum = torch.fft.rfft(frames, dim=-1)[..., : filterbank.shape[0]]
    # |X|^2 as re^2 + im^2 (several times faster on a CPU than abs().pow(2)), squared in that layout:
    # the same values as squaring .real and .imag of stft's transposed output, in ~2/3 of the time
    squares = torch.view_as_real(spectrum).square()
    power = squares[..., 0] + squares[..., 1]
    mel = torch.matmul(power, filterbank).transpose(-1, -2)
    features = torch.log(mel + LOG_FLOOR)
    # a floor relative to the clip's own peak, not an absolute one, keeps the features of a clip
    # and of the same clip 20 dB quieter identical (an absolute floor would cut them differently)
    peak = features.amax(dim=(-2, -1), keepdim=True)
    features = torch.maximum(features, peak - DYNAMIC_RANGE_DB * _NATS_PER_DB)
    if config.normalize_gain:
        features = features - features.mean(dim=(-2, -1), keepdim=True)
    return features


_NATS_PER_DB = float(np.log(10.0) / 10.0)  # natural-log units of power per decibel


def frame_count(samples: int, config: FeatureConfig) -> int:
    """Frames log_mel gives for `samples` samples: one every hop_ms from the first sample on."""
    return int(samples / config.hop_samples) + 1


@lru_cache(maxsize=64)
def _frame_indices(config: FeatureConfig, frames: int) -> torch.Tensor:
    """(frames, n_fft) sample indices of each frame of the padded signal, frame i from round(i * hop)."""
    starts = np.round(np.arange(frames) * config.hop_samples).astype(np.int64)
    return torch.from_numpy(starts[:, None] + np.arange(config.n_fft)[None, :])


def _reflect_pad(samples: np.ndarray, half: int) -> np.ndarray:
    """The samples mirrored by `half` at both ends of the last axis (the edge sample not repeated),
    as torch.stft(center=True, pad_mode="reflect") pads them; by slicing, which took a quarter of
    the time of torch's pad (half of the STFT's time at 12 kHz) or numpy's."""
    length = samples.shape[-1]
    if length <= half:
        raise ValueError(f"reflect padding by {half} needs more than {half} samples, got {length}")
    padded = np.empty(samples.shape[:-1] + (length + 2 * half,), dtype=np.float32)
    padded[..., half : half + length] = samples
    padded[..., :half] = samples[..., half:0:-1]
    padded[..., half + length :] = samples[..., -2 : -half - 2 : -1]
    return padded


@lru_cache(maxsize=8)
def _mel_basis(config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The analysis window and the mel filterbank (frequency bins up to f_max, n_mels), built once per config.

    The mel triangles are Slaney's, evaluated on the grid of 1000 / window_ms Hz (31.25 Hz) that a
    window of exactly window_ms has; at a rate where the window is not a whole number of samples
    (341 at 32000 / 3 Hz: bins 31.28 Hz apart), each bin's power is spread over that grid by linear
    interpolation first, so the features hear the same bands at every rate (at 12 kHz the grid is
    the bins': the filterbank of torchaudio's MelSpectrogram)."""
    n_freqs = config.n_fft // 2 + 1
    spacing = 1000.0 / config.window_ms  # Hz between the grid's points
    filterbank = torchaudio.functional.melscale_fbanks(
        n_freqs=n_freqs,
        f_min=config.f_min,
        f_max=config.f_max,
        n_mels=config.n_mels,
        sample_rate=round(2 * (n_freqs - 1) * spacing),  # grid point j at j * spacing Hz
        norm="slaney",
        mel_scale="slaney",
    )
    bin_hz = config.sample_rate / config.n_fft
    if abs(bin_hz - spacing) > 1e-9 * spacing:
        # grid point j lies between bins floor(x) and floor(x) + 1, x = j * spacing / bin_hz: its power
        # is theirs interpolated, so bin k feeds the filters through the grid points near it
        position = torch.arange(n_freqs, dtype=torch.float64) * spacing / bin_hz
        low = position.floor().long().clamp(max=n_freqs - 2)
        high_weight = (position - low).clamp(0.0, 1.0)
        to_grid = torch.zeros(n_freqs, n_freqs, dtype=torch.float64)  # (bins, grid points)
        grid = torch.arange(n_freqs)
        to_grid[low, grid] += 1 - high_weight
        to_grid[low + 1, grid] += high_weight
        filterbank = (to_grid @ filterbank.double()).float()
    used = int(torch.nonzero(filterbank.sum(dim=1)).max()) + 1  # frequency bins up to f_max
    return torch.hann_window(config.n_fft), filterbank[:used].contiguous()
