"""libmpg123 through ctypes: MP3 decoded straight to the model's rate, mono, float32, gapless.

libmpg123 can synthesise only every 2nd or 4th sample of the polyphase filterbank
(MPG123_DOWN_SAMPLE), which is an exact, band-limited decimation: a 48 kHz clip is decoded
straight to 12 kHz for less than soundfile's full-rate decode alone, and no soxr pass follows.
Other ratios (44.1 kHz to 12 kHz) would need its N-to-M resampler, which measurably distorts the
top of the band (several dB near 4 kHz): those clips go to soundfile + soxr instead.
The library is Debian's `libmpg123-0` (LGPL, loaded at run time, not linked); when it is
missing, `available()` is False and audio.py falls back to soundfile + soxr.
One handle per thread is made once and reused for every clip.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from functools import cache
from pathlib import Path

import numpy as np

# Constants of mpg123.h (stable since libmpg123 1.0)
_FLAGS, _DOWN_SAMPLE = 1, 4  # enum mpg123_parms
_MONO_MIX, _QUIET, _GAPLESS, _FORCE_FLOAT, _SKIP_ID3V2 = 0x4, 0x20, 0x40, 0x400, 0x2000  # mpg123_param_flags
_MONO, _ENC_FLOAT_32 = 1, 0x200  # channel count and encoding of the output format
_OK, _DONE, _NEW_FORMAT = 0, -12, -11  # return codes


@cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("mpg123") or "libmpg123.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    handle, c_int, c_long, size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_size_t
    lib.mpg123_init.restype = c_int
    lib.mpg123_new.argtypes, lib.mpg123_new.restype = [ctypes.c_char_p, ctypes.POINTER(c_int)], handle
    lib.mpg123_param.argtypes, lib.mpg123_param.restype = [handle, c_int, c_long, ctypes.c_double], c_int
    lib.mpg123_format_none.argtypes, lib.mpg123_format_none.restype = [handle], c_int
    lib.mpg123_format.argtypes, lib.mpg123_format.restype = [handle, c_long, c_int, c_int], c_int
    lib.mpg123_open.argtypes, lib.mpg123_open.restype = [handle, ctypes.c_char_p], c_int
    lib.mpg123_length.argtypes, lib.mpg123_length.restype = [handle], c_long
    lib.mpg123_read.argtypes = [handle, ctypes.c_void_p, size_t, ctypes.POINTER(size_t)]
    lib.mpg123_read.restype = c_int
    lib.mpg123_close.argtypes, lib.mpg123_close.restype = [handle], c_int
    lib.mpg123_strerror.argtypes, lib.mpg123_strerror.restype = [handle], ctypes.c_char_p
    if lib.mpg123_init() != _OK:
        return None
    return lib


def available() -> bool:
    """True when libmpg123 can be loaded."""
    return _library() is not None


class Mpg123Error(Exception):
    """libmpg123 could not open or decode a file (the message is the library's reason)."""


DECIMATIONS = {1: 0, 2: 1, 4: 2}  # native rate / output rate -> MPG123_DOWN_SAMPLE's value
_handles = threading.local()


def _loaded() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise Mpg123Error("libmpg123 is not installed")
    return lib


def _handle(decimation: int) -> int:
    """This thread's decoder handle that keeps every `decimation`-th sample, mono float32."""
    lib = _loaded()
    cached = getattr(_handles, "by_decimation", None)
    if cached is None:
        cached = _handles.by_decimation = {}
    if decimation not in cached:
        error = ctypes.c_int()
        handle = lib.mpg123_new(None, ctypes.byref(error))
        if not handle:
            raise Mpg123Error(f"libmpg123 could not make a decoder (error {error.value})")
        lib.mpg123_param(handle, _FLAGS, _MONO_MIX | _QUIET | _GAPLESS | _FORCE_FLOAT | _SKIP_ID3V2, 0.0)
        lib.mpg123_param(handle, _DOWN_SAMPLE, DECIMATIONS[decimation], 0.0)
        cached[decimation] = handle
    return int(cached[decimation])


class Mpg123Reader:
    """An open MP3 of `native_rate` Hz, read incrementally at `rate` Hz (native_rate / rate must
    be a key of DECIMATIONS): `read(n)` gives up to n float32 samples (fewer only at the end).
    `expected` is the length the stream's headers announce (the LAME/Xing frame count, else an
    estimate from the file size), for truncation checks."""

    def __init__(self, path: str | Path, rate: int, native_rate: int):
        self._lib, self._handle = _loaded(), _handle(native_rate // rate)
        self._done = False
        if self._lib.mpg123_open(self._handle, os.fsencode(path)) != _OK:
            raise Mpg123Error(self._reason())
        self._open = True
        self._lib.mpg123_format_none(self._handle)
        self._lib.mpg123_format(self._handle, rate, _MONO, _ENC_FLOAT_32)
        length = self._lib.mpg123_length(self._handle)
        self.expected: int | None = int(length) if length > 0 else None

    def read(self, frames: int) -> np.ndarray:
        out = np.empty(max(0, frames), dtype=np.float32)
        filled, wanted = 0, out.nbytes
        got = ctypes.c_size_t()
        while filled < wanted and not self._done:
            pointer = out.ctypes.data + filled
            status = self._lib.mpg123_read(self._handle, pointer, wanted - filled, ctypes.byref(got))
            filled += got.value
            if status == _DONE:
                self._done = True
            elif status not in (_OK, _NEW_FORMAT):
                raise Mpg123Error(self._reason())
        return out[: filled // 4]

    def close(self) -> None:
        if self._open:
            self._lib.mpg123_close(self._handle)
            self._open = False

    def _reason(self) -> str:
        text = self._lib.mpg123_strerror(self._handle)
        return text.decode(errors="replace") if text else "libmpg123 error"

    def __enter__(self) -> Mpg123Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
