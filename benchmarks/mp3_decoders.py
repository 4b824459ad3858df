"""MP3 decoders for the model's 12 kHz band, one thread: ms per clip (issue 13).

    OMP_NUM_THREADS=1 python benchmarks/mp3_decoders.py [--clips DIR] [--limit 300] [--clips-made 100]

Candidates, each over the same clip files (each decoder reads the file itself, from the page
cache after the warm-up pass), interleaved (one candidate's pass
over all clips, then the next's), each pass repeated --repeats times; the table shows the median
pass per clip and its ratio to the floor:

- soundfile: libsndfile full decode at the native rate, nothing else (the floor the issue measured)
- soundfile+soxr: that, averaged to mono and resampled to 12 kHz with soxr (cvlabel.audio today)
- libmpg123 4:1: libmpg123 through ctypes with MPG123_FORCE_RATE=12000, mono mix, float, gapless
- bandmp3: cvlabel.bandmp3.decode(data, 12000) (the band-limited minimp3)

Without --clips it writes --clips-made synthetic 4 s voices (48 kHz mono MP3 via soundfile/LAME)
to a temp folder. `Mpg123` below is also the tests' reference decoder (tests/test_mp3.py).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

LIBMPG123 = "libmpg123.so.0"  # Debian's libmpg123-0 (libsndfile decodes MP3 with it too)
RATE = 12_000  # Hz: the model's rate
FLOOR = "soundfile (full decode, floor)"

# mpg123.h (API version 46+): parameters, flags, encodings, return codes
MPG123_FLAGS = 1
MPG123_FORCE_RATE = 3
MPG123_MONO_MIX = 0x4
MPG123_QUIET = 0x20
MPG123_GAPLESS = 0x40
MPG123_FORCE_FLOAT = 0x400
MPG123_ENC_FLOAT_32 = 0x200
MPG123_OK = 0
MPG123_DONE = -12
MPG123_NEW_FORMAT = -11
MPG123_NEED_MORE = -10


class Mpg123:
    """libmpg123 through ctypes: MP3 bytes -> float32 mono (channels averaged), gapless, at the
    native rate or a forced one (native/2 and native/4 use its 2:1 and 4:1 synthesis)."""

    def __init__(self, path: str = LIBMPG123):
        lib = ctypes.CDLL(path)
        lib.mpg123_new.restype = ctypes.c_void_p
        lib.mpg123_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        lib.mpg123_delete.argtypes = [ctypes.c_void_p]
        lib.mpg123_param.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_double]
        lib.mpg123_open_feed.argtypes = [ctypes.c_void_p]
        lib.mpg123_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.mpg123_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
        lib.mpg123_getformat.argtypes = (
            [ctypes.c_void_p] + [ctypes.POINTER(ctypes.c_long)] + [ctypes.POINTER(ctypes.c_int)] * 2
        )
        lib.mpg123_init()
        self.lib = lib

    def decode(self, data: bytes, rate: int = 0) -> tuple[np.ndarray, int]:
        """(samples, rate): rate 0 keeps the native rate."""
        lib = self.lib
        error = ctypes.c_int(0)
        handle = lib.mpg123_new(None, ctypes.byref(error))
        if not handle:
            raise RuntimeError(f"mpg123_new failed ({error.value})")
        try:
            flags = MPG123_GAPLESS | MPG123_MONO_MIX | MPG123_FORCE_FLOAT | MPG123_QUIET
            lib.mpg123_param(handle, MPG123_FLAGS, flags, 0.0)
            if rate:
                lib.mpg123_param(handle, MPG123_FORCE_RATE, rate, 0.0)
            lib.mpg123_open_feed(handle)
            lib.mpg123_feed(handle, data, len(data))
            chunks, buffer, done = [], ctypes.create_string_buffer(1 << 16), ctypes.c_size_t(0)
            while True:
                status = lib.mpg123_read(handle, buffer, len(buffer), ctypes.byref(done))
                chunks.append(buffer.raw[: done.value])
                if status in (MPG123_NEED_MORE, MPG123_DONE):
                    break
                if status not in (MPG123_OK, MPG123_NEW_FORMAT):
                    raise RuntimeError(f"mpg123_read failed ({status})")
            out_rate, channels, encoding = ctypes.c_long(0), ctypes.c_int(0), ctypes.c_int(0)
            lib.mpg123_getformat(handle, ctypes.byref(out_rate), ctypes.byref(channels), ctypes.byref(encoding))
            if channels.value != 1 or encoding.value != MPG123_ENC_FLOAT_32:
                raise RuntimeError(f"unexpected output format: {channels.value} channels, encoding {encoding.value}")
        finally:
            lib.mpg123_delete(handle)
        return np.frombuffer(b"".join(chunks), dtype=np.float32).copy(), int(out_rate.value)


def make_clips(folder: Path, count: int, seconds: float = 4.0) -> list[Path]:
    """Synthetic 48 kHz mono MP3 voices (low and high pitches) of about `seconds` each."""
    from cvlabel.testing import write_voice

    return [
        write_voice(folder / f"voice_{k:04d}.mp3", 90.0 + 15.0 * (k % 16), seconds=seconds - 0.6, seed=k)
        for k in range(count)
    ]


def candidates() -> dict[str, Callable[[Path], np.ndarray]]:
    import soxr

    from cvlabel import bandmp3

    mpg123 = Mpg123()

    def soundfile_full(path: Path) -> np.ndarray:
        samples, _ = soundfile.read(path, dtype="float32", always_2d=True)
        return samples

    def soundfile_soxr(path: Path) -> np.ndarray:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return soxr.resample(samples.mean(axis=1), rate, RATE)

    found: dict[str, Callable[[Path], np.ndarray]] = {
        FLOOR: soundfile_full,
        "soundfile + soxr -> 12 kHz": soundfile_soxr,
        "libmpg123 FORCE_RATE=12000": lambda path: mpg123.decode(path.read_bytes(), RATE)[0],
    }
    if bandmp3.available():
        found["bandmp3 (band-limited minimp3)"] = lambda path: bandmp3.decode(path.read_bytes(), RATE)
    else:
        print("cvlabel._bandmp3 is not built: python setup.py build_ext --inplace", file=sys.stderr)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, help="a folder of .mp3 clips (default: synthetic voices)")
    parser.add_argument("--limit", type=int, default=300, help="at most this many clips of --clips (sorted by name)")
    parser.add_argument("--clips-made", type=int, default=100, help="synthetic clips without --clips")
    parser.add_argument("--repeats", type=int, default=3, help="passes per candidate; the median is shown")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for single-thread numbers", file=sys.stderr)

    with tempfile.TemporaryDirectory() as scratch:
        if args.clips:
            paths = sorted(args.clips.glob("*.mp3"))[: args.limit]
        else:
            paths = make_clips(Path(scratch), args.clips_made)
        if not paths:
            raise SystemExit("no .mp3 clips")
        run(paths, args.repeats)


def run(clips: list[Path], repeats: int) -> None:
    decoders = candidates()
    # warm-up pass (libraries loaded, caches filled): the clips a decoder fails on are counted,
    # and every decoder is then timed on the clips all of them decode
    failures = dict.fromkeys(decoders, 0)
    usable = []
    audio_s = 0.0
    for path in clips:
        ok = True
        for name, decode in decoders.items():
            try:
                decode(path)
            except Exception:
                failures[name] += 1
                ok = False
        if ok:
            usable.append(path)
            audio_s += soundfile.info(path).duration
    if not usable:
        raise SystemExit("no clip decodes with every decoder")
    seconds: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(repeats):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for path in usable:
                decode(path)
            seconds[name].append(time.perf_counter() - start)

    floor = statistics.median(seconds[FLOOR])
    print(
        f"{len(usable)} of {len(clips)} clips timed, {audio_s / len(usable):.2f} s of audio per clip, "
        f"median of {repeats} passes, one thread (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"{'decoder':34s} {'ms/clip':>8s} {'vs floor':>9s} {'failed':>7s}")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"{name:34s} {1000 * median / len(usable):8.3f} {median / floor:8.2f}x {failures[name]:7d}")


if __name__ == "__main__":
    main()
