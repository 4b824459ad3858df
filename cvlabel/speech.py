"""Audio as the model hears it: decoded, then cut to the speech (numpy only, no torch).

The silence trimmer is a pure function of samples; `decode_speech` is what training's cache,
inference and `cvlabel predict` all feed the features with, so they cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .audio import finite, open_audio
from .config import FeatureConfig
from .errors import AudioError

MAX_LEADING_SILENCE_S = 10.0  # seconds of silence before the first sound skipped beyond max_seconds
ONSET_BLOCK_FRAMES = 50  # energy frames speech_onset looks at at a time (1 s at 20 ms)


class Speech(NamedTuple):
    """A decoded clip: float32 mono samples (n,) and the rate they are at, in Hz (the clip's own:
    an MP3 is decoded to native rate / k, so 16000 for a 32 kHz clip; see audio.py), and how:
    the decoder and the file's native rate (where known; the cache keeps neither)."""

    samples: np.ndarray
    rate: float
    decoder: str = ""  # bandmp3 | mpg123 | soundfile (which resamples to the rate)
    native_rate: int = 0  # Hz


def speech_bounds(samples: np.ndarray, config: FeatureConfig = FeatureConfig()) -> tuple[int, int]:
    """Sample indices [start, end) from the first to the last frame with speech energy.

    samples: (n,) float mono at config.sample_rate. Returns (0, 0) when no frame has speech.
    """
    frame, energy_db = _frame_energy_db(samples, config)
    if energy_db.size == 0:
        return (0, 0) if not _loud_enough(samples, config.vad_floor_dbfs) else (0, samples.shape[0])
    threshold = max(energy_db.max() - config.vad_threshold_db, config.vad_floor_dbfs)
    speech = np.flatnonzero(energy_db >= threshold)
    if speech.size == 0:
        return (0, 0)
    pad = int(config.sample_rate * config.vad_pad_ms / 1000)
    start = max(0, speech[0] * frame - pad)
    end = min(samples.shape[0], (speech[-1] + 1) * frame + pad)
    return int(start), int(end)


def trim_silence(samples: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """The clip without its leading and trailing silence; (0,) when it is all silence."""
    start, end = speech_bounds(samples, config)
    return samples[start:end]


def speech_only(samples: np.ndarray, config: FeatureConfig, source: str | Path) -> np.ndarray:
    """Decoded samples cut to their speech (when config.trim_silence); AudioError naming `source`
    when less than one analysis window of speech is left."""
    if config.trim_silence:
        samples = trim_silence(samples, config)
    if samples.shape[0] <= config.win_length:
        raise AudioError(source, "no speech found (silent or too short)")
    return samples


def decode_speech(path: str | Path, config: FeatureConfig) -> Speech:
    """A clip as the model hears it: decode_clip, cut to the speech. Raises AudioError when the
    clip cannot be decoded or holds no speech."""
    clip = decode_clip(path, config)
    return clip._replace(samples=speech_only(clip.samples, config.at_rate(clip.rate), path))


def decode_clip(path: str | Path, config: FeatureConfig) -> Speech:
    """A clip decoded at its decoded rate (config.min_decode_rate; see audio.open_audio) up to
    max_seconds past its first sound (speech_onset), so leading silence does not eat the budget
    (up to MAX_LEADING_SILENCE_S of it). Raises AudioError when it cannot be decoded."""
    with open_audio(path, config.sample_rate, config.decoder, config.decode_floor) as reader:
        at_rate = config.at_rate(reader.sample_rate)
        budget = int(config.max_seconds * reader.sample_rate)
        silence_limit = int(MAX_LEADING_SILENCE_S * reader.sample_rate)
        samples = reader.read(budget)
        onset = speech_onset(samples, at_rate)
        while onset is None and not reader.ended and samples.shape[0] < silence_limit:
            samples = np.concatenate([samples, reader.read(budget)])
            onset = speech_onset(samples, at_rate)
        if onset is not None and not reader.ended and onset + budget > samples.shape[0]:
            samples = np.concatenate([samples, reader.read(onset + budget - samples.shape[0])])
    return Speech(finite(samples, path), reader.sample_rate, reader.decoder, reader.native_rate)


def speech_onset(samples: np.ndarray, config: FeatureConfig = FeatureConfig()) -> int | None:
    """The first sample of the first energy frame louder than config.vad_floor_dbfs, or None.

    Unlike speech_bounds it needs no look at the rest of the clip, so a decoder can stop reading
    at a budget counted from here."""
    frame = _frame_length(config)
    block = ONSET_BLOCK_FRAMES * frame  # most clips sound within their first second: look there first
    for start in range(0, samples.shape[0], block):
        _, energy_db = _frame_energy_db(samples[start : start + block], config)
        loud = np.flatnonzero(energy_db >= config.vad_floor_dbfs)
        if loud.size:
            return start + int(loud[0]) * frame
    return None


def _frame_length(config: FeatureConfig) -> int:
    return max(1, int(config.sample_rate * config.vad_frame_ms / 1000))


def _frame_energy_db(samples: np.ndarray, config: FeatureConfig) -> tuple[int, np.ndarray]:
    """The energy frame's length in samples, and each whole frame's mean power in dBFS.

    Summed in the samples' own precision (float32 for decoded clips: within 1e-5 dB of float64,
    at a third of the time)."""
    frame = _frame_length(config)
    n_frames = samples.shape[0] // frame
    framed = samples[: n_frames * frame].reshape(n_frames, frame)
    return frame, 10 * np.log10(np.einsum("ij,ij->i", framed, framed) / frame + 1e-12)


def _loud_enough(samples: np.ndarray, floor_dbfs: float) -> bool:
    return samples.size > 0 and 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-12) >= floor_dbfs
