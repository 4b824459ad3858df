"""The one audio loader: any clip to float32 mono at the model's rate, or an AudioError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from .config import SAMPLE_RATE
from .errors import AudioError

# libsndfile's frame count for an MP3 is an estimate; a decode this much shorter is truncated.
TRUNCATION_TOLERANCE_S = 0.1  # seconds


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Decode a clip to a float32 mono array of shape (samples,) at `sample_rate` Hz.

    Channels are averaged; other rates are resampled with soxr. At most the first `max_seconds`
    are decoded, so a 10-minute clip cannot blow up memory. Raises AudioError (with the path)
    for a missing, empty, undecodable or truncated file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with soundfile.SoundFile(path) as clip:
            native_rate, expected = clip.samplerate, clip.frames
            wanted = expected if max_seconds is None else min(expected, int(max_seconds * native_rate))
            samples = clip.read(frames=wanted, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        # libsndfile's own text is often misleading ("unknown format" for a truncated header)
        raise AudioError(path, f"cannot decode audio ({type(exc).__name__})") from None

    if samples.shape[0] == 0:
        raise AudioError(path, "no audio samples")
    if samples.shape[0] < wanted - TRUNCATION_TOLERANCE_S * native_rate:
        raise AudioError(path, f"truncated: decoded {samples.shape[0]} of {wanted} samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(path, "decoded samples are not finite")
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)
