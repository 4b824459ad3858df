"""Band-limited MP3 decoding: MP3 bytes to float32 mono at a rate native_rate / k, decoding only
what lies below the new Nyquist frequency (issue 13).

The compiled part (`cvlabel._bandmp3`, a modified minimp3) Huffman-decodes, antialiases and
transforms only the subbands below rate / 2 and synthesises only every k-th sample: 48 kHz Common
Voice clips decode to 12 kHz in ~0.4x the time of libsndfile's full decode
(benchmarks/mp3_decoders.py). Encoder delay and padding (Xing/Info/LAME tag) are removed as
libmpg123 does in gapless mode, so below ~4.5 kHz the output equals libmpg123's to float precision
(tests/test_mp3.py); above that, up to rate / 2, it keeps the subband filter bank's aliasing.
Output sample n is input sample k*n - (encoder delay + 529) % k, as in libmpg123's 2:1 and 4:1
modes: a timing offset below k samples of the native rate.

Rates: native = k * rate for an integer k from 1 to 32 (STEPS; `Reader(data, step=k)` names k).
A k dividing 32 keeps 32/k subbands (48 -> 12 kHz: 8, every 4th sample); another k keeps the
floor(32/k) subbands wholly below rate / 2 (48 -> 16 kHz: 10, up to 7.5 kHz; 32 -> 10.667 kHz:
10, up to 5 kHz). MPEG-1, 2 and 2.5 layer III, mono and (joint) stereo, averaged to mono; layers
I and II decode through the same synthesis but are not tested.

The extension is optional (built by setup.py when a C compiler is there): callers check
`available()` and otherwise decode with libsndfile/libmpg123. Errors: `UnsupportedRate` when no
integer decimation reaches the rate (the caller falls back), ValueError with a short reason for
broken, truncated or non-MP3 data (the caller turns it into an AudioError with the path).
"""

from __future__ import annotations

import numpy as np

try:
    from . import _bandmp3
except ImportError:  # built without a C compiler: the loader falls back to libsndfile
    _bandmp3 = None  # type: ignore[assignment]
if not hasattr(_bandmp3, "Reader"):  # not built: the import found the C sources' folder (a namespace package)
    _bandmp3 = None  # type: ignore[assignment]

# a stream's end is reached by reading this much at a time; bounded so max_samples=None cannot
# ask the extension for an absurd allocation up front
_CHUNK_SAMPLES = 1 << 20
STEPS = range(1, 33)  # every decimation: one subband of 32 kept at the most
# The steps whose kept samples sit at the same places of every 64-sample synthesis block (k dividing
# 16: the packed synthesis, only the windowing steps those samples need). Another k moves its samples
# from block to block and computes nearly every step: on real 32 kHz clips k = 3 (10 subbands) took
# 2.20 ms a clip, k = 2 (16 subbands) 1.64 and k = 4 1.00 (whole clips, one thread).
FAST_STEPS = (1, 2, 4, 8, 16)


class UnsupportedRate(Exception):
    """The clip's native rate is not an integer multiple of the wanted rate (e.g. 44.1 kHz -> 12 kHz)."""


if _bandmp3 is not None:
    _bandmp3.set_unsupported_rate(UnsupportedRate)


def available() -> bool:
    """Whether the compiled decoder was built and imported."""
    return _bandmp3 is not None


class Reader:
    """Incremental decoder: `Reader(data, rate).read(n)` returns the next (at most n) samples as
    float32 mono at `rate` Hz, an empty array at the end, so a caller can stop early (after the
    speech onset plus N seconds) and skip decoding the rest.

    Raises UnsupportedRate (at construction) or ValueError (at construction or any read: no MP3
    frame, truncated data). A truncation is only seen by the read that reaches the end.
    """

    def __init__(self, data: bytes | bytearray | memoryview, rate: int | None = None, *, step: int | None = None):
        if _bandmp3 is None:
            raise RuntimeError("cvlabel._bandmp3 is not built (no C compiler at install time)")
        if (rate is None) == (step is None):
            raise ValueError("give a rate or a step, not both")
        self._reader = _bandmp3.Reader(data, step=step) if step is not None else _bandmp3.Reader(data, rate or 0)

    @property
    def rate(self) -> float:
        """Output sample rate (Hz): native_rate / step, not always a whole number (32000 / 3)."""
        return self.native_rate / self.step

    @property
    def step(self) -> int:
        """The decimation k: every k-th sample of the native rate is kept."""
        return int(self._reader.step)

    @property
    def native_rate(self) -> int:
        """The stream's own sample rate (Hz)."""
        return int(self._reader.native_rate)

    @property
    def channels(self) -> int:
        """Channels of the stream (1 or 2); the output is always their average."""
        return int(self._reader.channels)

    @property
    def expected_samples(self) -> int | None:
        """Output samples the stream's Xing/Info tag announces (gapless), or None without a tag."""
        expected = self._reader.expected_samples
        return None if expected is None else int(expected)

    def read(self, n: int) -> np.ndarray:
        """The next at most n samples, shape (m,) float32 with m <= n; m == 0 only at the end."""
        return np.frombuffer(self._reader.read(n), dtype=np.float32)


def decode(data: bytes | bytearray | memoryview, rate: int, max_samples: int | None = None) -> np.ndarray:
    """Decode MP3 bytes to float32 mono of shape (samples,) at exactly `rate` Hz, at most
    `max_samples` samples (the clip's start). Raises UnsupportedRate or ValueError (see Reader)."""
    reader = Reader(data, rate)
    if max_samples is not None:
        return reader.read(max(0, max_samples))
    chunks = []
    while len(chunk := reader.read(_CHUNK_SAMPLES)):
        chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
