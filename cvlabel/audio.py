"""The one audio loader: any clip to float32 mono at the model's rate, or an AudioError.

MP3 (Common Voice's format, told by its bytes, not its name) goes to the fastest decoder
available that decodes it exactly, straight to native rate / k for an integer k: with a
`min_rate`, the largest power of two k that keeps the rate at or above it (48 kHz -> 12 kHz, 44.1
-> 11.025, 32 -> 8), else exactly the wanted rate where k divides (older models, which heard one rate):
- `bandmp3`: cvlabel's own band-limited decoder (a C extension built at install when a compiler
  is there) that decodes only the subbands below the new Nyquist frequency and synthesises
  every k-th sample, for any k from 1 to 32;
- `mpg123`: libmpg123 through ctypes, keeping every 2nd or 4th sample of its synthesis (k = 1, 2, 4);
- `soundfile`: libsndfile at the clip's own rate, then soxr to `sample_rate`: every other format,
  rates no k serves (8 kHz), and the fallback when neither of the above is installed.
`features.decoder` names one to prefer; "auto" takes the fastest available. A reader's
`sample_rate` says the rate it decodes to (a float: a rate such as 44100 / 8 is no whole number of Hz).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile
import soxr

from . import bandmp3, mpg123
from .config import SAMPLE_RATE
from .errors import AudioError, ConfigError

log = logging.getLogger(__name__)

# A decode this much shorter than the length the file announces is truncated (libsndfile's and
# libmpg123's counts for an MP3 without a LAME/Xing header are estimates).
TRUNCATION_TOLERANCE_S = 0.1  # seconds
READ_BLOCK_S = 30  # seconds per read when a whole clip is wanted
_DECODE_ERRORS = (soundfile.LibsndfileError, mpg123.Mpg123Error, RuntimeError, OSError, ValueError)


class DecodeError(Exception):
    """A decoder's own reason for failing, clear enough to show the user (bandmp3's are)."""


class Backend(Protocol):
    expected: int | None  # samples the file announces at the output rate, if it does

    def read(self, frames: int) -> np.ndarray: ...

    def close(self) -> None: ...


class AudioReader:
    """An open clip, decoded incrementally at one rate: `read(n)` gives up to n float32 mono
    samples, fewer only at the end, where a stream shorter than announced raises AudioError."""

    def __init__(self, path: Path, backend: Backend, sample_rate: float, decoder: str, native_rate: int):
        self.path, self._backend, self.sample_rate, self.decoder = path, backend, sample_rate, decoder
        self.native_rate = native_rate  # the file's own rate (Hz)
        self.decoded = 0
        self.ended = False  # a read has reached the end of the clip

    def read(self, frames: int) -> np.ndarray:
        with _as_audio_error(self.path):
            chunk = self._backend.read(frames)
        self.decoded += chunk.shape[0]
        if chunk.shape[0] < frames:
            self.ended = True
            self._check_complete()
        return chunk

    def read_all(self) -> np.ndarray:
        """The rest of the clip."""
        block = int(READ_BLOCK_S * self.sample_rate)
        parts = [self.read(block)]
        while parts[-1].shape[0] == block:
            parts.append(self.read(block))
        return np.concatenate(parts)

    def _check_complete(self) -> None:
        if self.decoded == 0:
            raise AudioError(self.path, "no audio samples")
        expected = self._backend.expected
        if expected and self.decoded < expected - TRUNCATION_TOLERANCE_S * self.sample_rate:
            raise AudioError(self.path, f"truncated: decoded {self.decoded} of {expected} samples")

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._backend.close()


def open_audio(
    path: str | Path, sample_rate: float = SAMPLE_RATE, decoder: str = "auto", min_rate: float = 0
) -> AudioReader:
    """Open a clip for decoding with `decoder` (see the module's docstring): an MP3 at native rate / k
    (decoder_for's k; without a `min_rate`, `sample_rate` where k divides), anything else at
    `sample_rate` Hz; the reader's sample_rate says which. Raises AudioError (with the path) for a
    missing, empty or undecodable file."""
    path = Path(path)
    head, size = _clip_head(path)
    native_rate = _mp3_rate_of(head)
    chosen, step = decoder_for(path, decoder, sample_rate, native_rate, min_rate)
    with _as_audio_error(path):
        if chosen == "bandmp3":
            data = head if len(head) == size else _read_clip(path)[0]
            band = _BandBackend(data, step)
            backend: Backend = band
            if band.native_rate != native_rate:  # the frame header we read is not the one the decoder found
                chosen, backend = "soundfile", _SoundfileBackend(path, sample_rate)
        elif chosen == "mpg123":
            backend = mpg123.Mpg123Reader(path, (native_rate or 0) // step, native_rate or 0)
        else:
            backend = _SoundfileBackend(path, sample_rate)
    if isinstance(backend, _SoundfileBackend):
        return AudioReader(path, backend, sample_rate, "soundfile", backend.native_rate)
    return AudioReader(path, backend, (native_rate or 0) / step, chosen, native_rate or 0)


# The first bytes of a clip read to tell its format: all of a Common Voice clip (tens of kB), so
# bandmp3 decodes what was read; a larger file is read again whole only if bandmp3 decodes it.
HEAD_BYTES = 1 << 18
# a FIFO at a clip's path must not block the open (it is then refused as "not a file")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _clip_head(path: Path) -> tuple[bytes, int]:
    """The file's first bytes (at least to the first frame after an ID3v2 tag, if the file has
    one) and its size. AudioError as _read_clip."""
    head, size = _read_clip(path, HEAD_BYTES)
    if len(head) < size and _id3_length(head) + 4096 > len(head):  # a tag as large as the head (cover art)
        head, size = _read_clip(path)
    return head, size


MISSING_FILE = "file not found"  # the AudioError reason (and prediction `error`) of a clip not on disk


def _read_clip(path: Path, limit: int | None = None) -> tuple[bytes, int]:
    """The first `limit` bytes (all without one) of a regular, non-empty file, and its size; one
    open and one stat (every clip comes through here). AudioError for a missing, unreadable, empty
    or special file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise AudioError(path, MISSING_FILE) from None
    except IsADirectoryError:
        raise AudioError(path, "not a file") from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AudioError(path, "not a file")
        if info.st_size == 0:
            raise AudioError(path, "empty file (0 bytes)")
        wanted, parts = info.st_size if limit is None else min(limit, info.st_size), []
        while wanted > 0 and (part := os.read(fd, wanted)):  # a short read only at the end, but loop
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts), info.st_size  # one part: join returns it, no copy
    except OSError as exc:
        raise _unreadable(path, exc) from None
    finally:
        os.close(fd)


def _unreadable(path: Path, exc: OSError) -> AudioError:
    return AudioError(path, f"cannot read the file ({exc.strerror or type(exc).__name__})")


@contextmanager
def _as_audio_error(path: Path) -> Iterator[None]:
    """A decoder's failure as an AudioError naming the clip, with a reason worth reading."""
    try:
        yield
    except DecodeError as exc:
        raise AudioError(path, str(exc)) from None
    except _DECODE_ERRORS as exc:
        # libraries' own texts are often misleading ("unknown format" for a truncated header)
        raise AudioError(path, f"cannot decode audio ({type(exc).__name__})") from None


def load_audio(
    path: str | Path, sample_rate: float = SAMPLE_RATE, max_seconds: float | None = None, decoder: str = "auto"
) -> np.ndarray:
    """Decode a clip to a float32 mono array of shape (samples,) at exactly `sample_rate` Hz.

    Channels are averaged. At most the first `max_seconds` are decoded, so a 10-minute clip
    cannot blow up memory. Raises AudioError (with the path) for a missing, empty,
    undecodable or truncated file.
    """
    with open_audio(path, sample_rate, decoder) as reader:
        samples = reader.read_all() if max_seconds is None else reader.read(int(max_seconds * sample_rate))
    return finite(samples, path)


def finite(samples: np.ndarray, path: str | Path) -> np.ndarray:
    """The samples as contiguous float32, or AudioError when any is NaN or infinite."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    # a NaN or an infinity makes the sum of squares NaN or infinite (a BLAS dot: 8 us for 4 s at
    # 12 kHz, np.sum 23); only then is every sample looked at (huge samples' squares overflow too)
    with np.errstate(over="ignore", invalid="ignore"):
        energy = np.dot(samples, samples)
    if not np.isfinite(energy) and not np.isfinite(samples).all():
        raise AudioError(path, "decoded samples are not finite")
    return samples


def require_decoder(decoder: str) -> None:
    """A ConfigError when features.decoder names a decoder this machine does not have: a setting to
    fix once, before any clip is decoded (never a per-clip error, which the cache would keep)."""
    if decoder == "mpg123" and not mpg123.available():
        raise ConfigError(
            "config key 'features.decoder' is mpg123 but libmpg123 is not installed "
            "(apt install libmpg123-0; 'auto' takes the fastest decoder installed)"
        )
    if decoder == "bandmp3" and not bandmp3.available():
        raise ConfigError(
            "config key 'features.decoder' is bandmp3 but cvlabel._bandmp3 was not built (no C compiler at "
            "install: apt install gcc python3-dev, then reinstall; 'auto' takes the fastest decoder installed)"
        )


def decoder_for(
    path: Path, decoder: str, sample_rate: float, native_rate: int | None, min_rate: float = 0
) -> tuple[str, int]:
    """The decoder that reads `path` (an MP3 of `native_rate` Hz, None for any other format) and the
    decimation k it decodes at (native_rate / k Hz; 0 for soundfile, which gives `sample_rate`).
    k is the largest power of two the decoder offers that keeps native_rate / k >= `min_rate` (bandmp3's
    other k cost more than the next power of two, see bandmp3.FAST_STEPS); without a min_rate,
    native_rate / sample_rate where that is whole. By preference bandmp3 (k up to 32), libmpg123 (k
    of 1, 2 or 4), else soundfile + soxr. `decoder` names one to use where it can decode
    the clip exactly ("auto": the first of those available)."""
    require_decoder(decoder)
    if not native_rate:
        return "soundfile", 0
    if decoder in ("auto", "bandmp3") and mp3_decoder() == "bandmp3":
        step = _decimation(native_rate, sample_rate, min_rate, bandmp3.FAST_STEPS if min_rate else bandmp3.STEPS)
        if step:
            return "bandmp3", step
    if decoder in ("auto", "mpg123") and mpg123.available():
        step = _decimation(native_rate, sample_rate, min_rate, mpg123.DECIMATIONS)
        if step:
            return "mpg123", step
    return "soundfile", 0


def _decimation(native_rate: int, sample_rate: float, min_rate: float, offered: Iterable[int]) -> int:
    """The largest offered k with native_rate / k >= min_rate (with min_rate 0: native_rate / k ==
    sample_rate); 0 when none is."""
    if min_rate:
        return max((k for k in offered if native_rate / k >= min_rate), default=0)
    return max((k for k in offered if native_rate == k * sample_rate), default=0)


@cache
def mp3_decoder() -> str:
    """The fastest MP3 decoder installed (logged once per process)."""
    if bandmp3.available():
        log.debug("MP3 decoder: cvlabel._bandmp3")
        return "bandmp3"
    if mpg123.available():
        log.info("MP3 decoder: libmpg123 (cvlabel._bandmp3 was not built: no C compiler at install)")
        return "mpg123"
    log.info("MP3 decoder: soundfile + soxr (install libmpg123-0 or a C compiler for a decode 2-4x faster)")
    return "soundfile"


_MPEG_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}  # by version


def mp3_rate(path: Path) -> int | None:
    """The sample rate of an MP3's first frame; None when the file does not start like an MP3
    (an ID3v2 tag or an MPEG layer III frame header), 0 when it does but no frame is found."""
    return _mp3_rate_of(_clip_head(Path(path))[0])


def _mp3_rate_of(head: bytes) -> int | None:
    """mp3_rate of a file's first bytes (its ID3v2 tag, if any, and what follows)."""
    tag = _id3_length(head)
    if tag:
        head = head[tag : tag + 4096]
    elif not _frame_rate(head[:4]):
        return None
    for offset in range(max(0, len(head) - 3)):
        rate = _frame_rate(head[offset : offset + 4])
        if rate:
            return rate
    return 0


def _id3_length(head: bytes) -> int:
    """Bytes of the ID3v2 tag at the start of a file (header and footer included), 0 without one."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = 0
    for byte in head[6:10]:  # a syncsafe integer: 7 bits a byte
        size = size << 7 | byte & 0x7F
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _frame_rate(header: bytes) -> int | None:
    """The rate of an MPEG audio layer III frame header, or None if `header` is not one."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0 or (header[1] >> 1) & 3 != 1:
        return None
    version, index = (header[1] >> 3) & 3, (header[2] >> 2) & 3
    return _MPEG_RATES[version][index] if version in _MPEG_RATES and index < 3 else None


class _SoundfileBackend:
    """libsndfile at the file's own rate, resampled with a streaming soxr to the output rate."""

    def __init__(self, path: Path, sample_rate: float):
        self._file = soundfile.SoundFile(path)
        native = self.native_rate = self._file.samplerate
        self._ratio = sample_rate / native
        self.expected: int | None = int(self._file.frames * self._ratio) if self._file.frames > 0 else None
        self._stream = None if native == sample_rate else soxr.ResampleStream(native, sample_rate, 1, dtype="float32")
        self._pending = np.zeros(0, np.float32)
        self._ended = False

    def read(self, frames: int) -> np.ndarray:
        while self._pending.shape[0] < frames and not self._ended:
            wanted = max(1024, int((frames - self._pending.shape[0]) / self._ratio) + 64)
            block = self._file.read(frames=wanted, dtype="float32", always_2d=True)
            self._ended = block.shape[0] < wanted
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            if self._stream is not None:
                mono = self._stream.resample_chunk(np.ascontiguousarray(mono), last=self._ended)
            self._pending = np.concatenate([self._pending, mono.astype(np.float32, copy=False)])
        out, self._pending = self._pending[:frames], self._pending[frames:]
        return out

    def close(self) -> None:
        self._file.close()


class _BandBackend:
    """cvlabel's band-limited decoder over the clip's bytes (read whole: a clip is tens of kB)."""

    def __init__(self, data: bytes, step: int):
        try:
            self._reader = bandmp3.Reader(data, step=step)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
        self.expected = self._reader.expected_samples
        self.native_rate = self._reader.native_rate

    def read(self, frames: int) -> np.ndarray:
        parts, got = [], 0
        try:
            while got < frames:
                part = self._reader.read(frames - got)
                if part.shape[0] == 0:
                    break
                parts.append(part)
                got += part.shape[0]
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def close(self) -> None:
        pass
