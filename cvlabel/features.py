"""Pure feature functions: the log-mel spectrogram the model reads (silence trimming is in speech.py).

Every function takes an array and returns an array; settings live in FeatureConfig, which
travels inside each checkpoint so that inference computes exactly the features training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torchaudio

from .config import FeatureConfig

LOG_FLOOR = 1e-10  # added to mel power before the log, so that digital silence stays finite
DYNAMIC_RANGE_DB = 80.0  # dB below each clip's loudest bin at which log-mel is clamped


def log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Log-mel spectrogram. (n,) -> (n_mels, frames); (batch, n) -> (batch, n_mels, frames).

    frames = frame_count(n): a frame every hop_ms from the first sample on, centred, reflect-padded,
    a Hann window of window_ms, the power spectrum at every 1000 / window_ms Hz (33.3 Hz at 30 ms),
    Slaney mels. At a rate where window and hop are whole numbers of samples (12 and 16 kHz) this is
    torchaudio's MelSpectrogram with power 2; at any other (11025 Hz) the same analysis in ms and Hz
    (_Analysis). Values are natural-log power, clamped at DYNAMIC_RANGE_DB below the clip's
    peak; with normalize_gain each clip's mean is subtracted, so a clip and the same clip 20 dB
    quieter give the same features.
    """
    analysis = _analysis(config)
    samples = np.asarray(samples, dtype=np.float32)
    padded = torch.from_numpy(_reflect_pad(samples, analysis.pad_left, analysis.pad_right))
    # torch.stft(center=False)'s frames and FFT, without its wrapper (~20 us a call), in the layout
    # the FFT writes: (..., frames, bins); bins above f_max carry no mel weight
    if analysis.hop is not None:
        frames = padded.unfold(-1, analysis.window.shape[0], analysis.hop) * analysis.window
    else:  # a hop of no whole number of samples (20 ms at 11025 Hz): each frame starts at the nearest
        indices = _frame_indices(config, frame_count(samples.shape[-1], config))
        frames = padded.index_select(-1, indices.reshape(-1)).unflatten(-1, indices.shape) * analysis.window
    spectrum = torch.fft.rfft(frames, n=analysis.fft_size, dim=-1)
    spectrum = spectrum[..., : analysis.filterbank.shape[0] * analysis.bin_stride : analysis.bin_stride]
    # |X|^2 as re^2 + im^2 (several times faster on a CPU than abs().pow(2)), squared in that layout:
    # the same values as squaring .real and .imag of stft's transposed output, in ~2/3 of the time
    squares = torch.view_as_real(spectrum).square()
    power = squares[..., 0] + squares[..., 1]
    mel = torch.matmul(power, analysis.filterbank).transpose(-1, -2)
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


def _frame_indices(config: FeatureConfig, frames: int) -> torch.Tensor:
    """(frames, win_length) sample indices of each frame of the padded signal, frame i from round(i * hop)."""
    return _all_frame_indices(config, max(frames, FRAME_INDICES))[:frames]


FRAME_INDICES = 512  # frames whose indices are built at once (10 s at the 20 ms hop), then sliced


@lru_cache(maxsize=8)
def _all_frame_indices(config: FeatureConfig, frames: int) -> torch.Tensor:
    starts = np.round(np.arange(frames) * config.hop_samples).astype(np.int64)
    return torch.from_numpy(starts[:, None] + np.arange(config.win_length)[None, :])


def _reflect_pad(samples: np.ndarray, left: int, right: int) -> np.ndarray:
    """The samples mirrored by `left` and `right` at the ends of the last axis (the edge sample not
    repeated), as torch.stft(center=True, pad_mode="reflect") pads them; by slicing, which took a
    quarter of the time of torch's pad (half of the STFT's time at 12 kHz) or numpy's."""
    length = samples.shape[-1]
    if length <= max(left, right):
        raise ValueError(f"reflect padding by {max(left, right)} needs more than that many samples, got {length}")
    padded = np.empty(samples.shape[:-1] + (length + left + right,), dtype=np.float32)
    padded[..., left : left + length] = samples
    padded[..., :left] = samples[..., left:0:-1]
    padded[..., left + length :] = samples[..., -2 : -right - 2 : -1]
    return padded


@dataclass(frozen=True)
class _Analysis:
    """How log_mel analyses samples at one rate: built once per config (rate included)."""

    window: torch.Tensor  # (win_length,) Hann
    hop: int | None  # samples between frames where that is whole, else None (frames start at round(i * hop))
    pad_left: int  # reflect padding that centres frame i on sample i * hop
    pad_right: int
    fft_size: int  # the FFT's length (the window zero-padded to it)
    bin_stride: int  # every bin_stride-th FFT bin lies on the 1000 / window_ms Hz grid
    filterbank: torch.Tensor  # (grid points up to f_max, n_mels)


@lru_cache(maxsize=8)
def _analysis(config: FeatureConfig) -> _Analysis:
    """The window, FFT and mel filterbank of `config` at its rate.

    The power spectrum is wanted at j * 1000 / window_ms Hz, the bins of a window of exactly
    window_ms. At 12 kHz a 30 ms window is 360 samples and its FFT gives them; at 11025 Hz it is
    330.75: the 331-sample window is zero-padded to an FFT of 1323 = 4 x 330.75, whose every 4th bin
    lies on the grid (a 32 ms window at 32000 / 3 Hz: 3 x 341.33 = 1024). The mel triangles are then
    the same numbers at every rate."""
    exact_window = config.sample_rate * config.window_ms / 1000  # samples, not always whole
    stride = next(
        (m for m in range(1, MAX_BIN_STRIDE + 1) if abs(m * exact_window - round(m * exact_window)) < 1e-6), 0
    )
    if not stride:
        raise ValueError(
            f"a {config.window_ms} ms window at {config.sample_rate:g} Hz is {exact_window:.4f} samples: no FFT of "
            f"up to {MAX_BIN_STRIDE} times it is a whole number of samples"
        )
    fft_size = round(stride * exact_window)
    grid_points = fft_size // (2 * stride) + 1  # 1000 / window_ms Hz apart, up to the Nyquist frequency
    filterbank = torchaudio.functional.melscale_fbanks(
        n_freqs=grid_points,
        f_min=config.f_min,
        f_max=config.f_max,
        n_mels=config.n_mels,
        sample_rate=round(2 * (grid_points - 1) * 1000 / config.window_ms),  # point j at j * 1000 / window_ms Hz
        norm="slaney",
        mel_scale="slaney",
    )
    used = int(torch.nonzero(filterbank.sum(dim=1)).max()) + 1  # grid points up to f_max
    win_length = config.win_length
    whole_hop = config.hop_length if config.hop_length == config.hop_samples else None
    # a frame of win_length samples from round(i * hop): its centre is i * hop + pad_left's offset
    return _Analysis(
        window=torch.hann_window(win_length),
        hop=whole_hop,
        pad_left=win_length // 2,
        pad_right=win_length - win_length // 2,
        fft_size=fft_size,
        bin_stride=stride,
        filterbank=filterbank[:used].contiguous(),
    )


MAX_BIN_STRIDE = 16  # the largest FFT, in windows, that log_mel takes to put bins on the grid
