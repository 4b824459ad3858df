"""Decoded speech on disk, so MP3s are decoded once per clip, not once per epoch or run.

An entry is the clip's silence-trimmed audio at its decoded rate as an int16 `.npy`, whose first
RATE_SLOTS values hold that rate as a float64 (not always a whole number of Hz). Entries are
keyed by the clip (absolute path, size, modification time: a replaced file is decoded again)
inside a folder keyed by the settings that shape the audio (rate, trimming, max_seconds, and the
MP3 decoder that "auto" resolves to on this machine). Log-mels are not
cached: they are cheap, and training augments the waveform before computing them.
A clip that cannot be decoded leaves a `.err` entry holding the reason, so it is not retried.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from stat import S_ISLNK

import numpy as np
from joblib import Parallel, delayed

from .audio import mp3_decoder, require_decoder
from .config import FeatureConfig
from .errors import AudioError, CvlabelError
from .files import atomic_path, writable_folder, write_text
from .progress import progress
from .speech import Speech, decode_speech

CACHE_VERSION = 3  # bump when the stored format or the decoding changes
INT16_SCALE = 32767.0
RATE_SLOTS = 4  # int16 values at an entry's start that hold its rate (one float64)
CLIPS_PER_TASK = 32  # clips a worker decodes per task: amortises the task overhead
# What decoding reads, so the cache key: a change of any gives other audio. decode_floor is derived from
# min_decode_rate and f_max (a wider band decodes some rates at a higher rate). tests/test_audio.py checks
# that every FeatureConfig field is here (or an input of decode_floor) or in FEATURE_ONLY_FIELDS.
AUDIO_FIELDS = (
    "sample_rate",
    "decode_floor",
    "trim_silence",
    "vad_frame_ms",
    "vad_threshold_db",
    "vad_floor_dbfs",
    "vad_pad_ms",
    "max_seconds",
    "decoder",
)
FEATURE_ONLY_FIELDS = ("window_ms", "hop_ms", "n_mels", "f_min", "normalize_gain")  # read after the cache only


def _canonical(value: object) -> object:
    """A setting as the cache key holds it: 12000 and 12000.0 (a config read back from a checkpoint) alike."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def cache_root(setting: str = "") -> Path:
    """The cache folder: train.cache_dir when set, else $XDG_CACHE_HOME/cvlabel or ~/.cache/cvlabel."""
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cvlabel"


@dataclass(frozen=True)
class AudioCache:
    root: Path
    config: FeatureConfig

    @cached_property  # hashed once, not for every clip of every batch
    def folder(self) -> Path:
        settings = {name: _canonical(getattr(self.config, name)) for name in AUDIO_FIELDS}
        if settings["decoder"] == "auto":
            settings["decoder"] = mp3_decoder()
        key = hashlib.sha1(json.dumps([CACHE_VERSION, settings], sort_keys=True).encode()).hexdigest()[:16]
        return Path(self.root) / f"audio-{key}"

    def entry(self, clip: str | Path) -> Path:
        """The cache file of one clip (without suffix)."""
        return self.entries([clip])[0]

    def entries(self, clips: Sequence[str | Path]) -> list[Path]:
        """The cache files of clips (without suffix), the one place that names them: a hash of the clip's
        resolved path, size and mtime (`_entry_names`)."""
        return [self.folder / name[:2] / name for name in _entry_names(clips)]

    def load(self, clip: str | Path) -> Speech:
        """The cached speech of a clip (float32 samples and their rate); AudioError if it failed to decode."""
        entry = self.entry(clip)
        error = entry.with_suffix(".err")
        if error.exists():
            raise AudioError(clip, error.read_text())
        return _read_entry(entry.with_suffix(".npy"))

    def loader(self, clips: Sequence[str | Path]) -> Callable[[int], Speech]:
        """`load(clips[i])` as a function of i, each entry named once up front: training reads every clip
        once an epoch, and naming an entry (a path resolved, a stat, a hash) cost as much as reading it.
        For clips that decoded (fill's errors left out): a failed one raises OSError."""
        entries = [entry.with_suffix(".npy") for entry in self.entries(clips)]
        return lambda index: _read_entry(entries[index])

    def fill(self, clips: Sequence[str | Path], jobs: int = 1) -> dict[str, str]:
        """Decode every clip not yet cached, in `jobs` processes. Returns {clip: error} of failures.
        A decoder this machine lacks is a ConfigError before any clip (audio.require_decoder)."""
        require_decoder(self.config.decoder)
        try:  # a cache folder that cannot be written is one line now, not a traceback from a worker
            writable_folder(self.folder)
        except CvlabelError as exc:
            raise CvlabelError(f"the decode cache (train.cache_dir): {exc}") from None
        named = self.entries(clips)
        missing = [str(c) for c, entry in zip(clips, named, strict=True) if not _cached(entry)]
        if missing:
            chunks = [missing[i : i + CLIPS_PER_TASK] for i in range(0, len(missing), CLIPS_PER_TASK)]
            done = Parallel(n_jobs=jobs, return_as="generator_unordered")(
                delayed(_decode_into_cache)(self, chunk) for chunk in chunks
            )
            with progress(total=len(missing), desc="decoding clips", unit="clip") as bar:
                for count in done:
                    bar.update(count)
        errors = {}
        for clip, entry in zip(clips, named, strict=True):
            error = entry.with_suffix(".err")
            if error.exists():
                errors[str(clip)] = error.read_text()
        return errors

    def failed_among(self, clips: Sequence[str | Path]) -> set[str]:
        """The clips (as given) whose decoding failed when they were cached. The cache's failures are listed
        once, and the clips named only if there is any: naming an entry (a path resolved, a stat, a hash)
        cost export 30 s of every 100,000 rows, in a cache that usually holds few failures or none)."""
        failures = {path.stem for path in self.folder.glob("*/*.err")}
        if not failures:
            return set()
        named = _entry_names(clips)  # names, not paths: a Path a clip held a 10^6-row export's peak memory
        return {str(clip) for clip, name in zip(clips, named, strict=True) if name in failures}


def _entry_names(clips: Iterable[str | Path]) -> Iterator[str]:
    """Each clip's cache entry name: the hash of its resolved path, size and mtime. A folder is resolved once
    and each clip in it then costs one lstat (resolving every clip's path took ~8 system calls and most of a
    10^6-row export's time); a clip that is a symlink, or is not there, is resolved on its own."""
    folders: dict[Path, Path] = {}
    for clip in map(Path, clips):
        if clip.parent not in folders:
            folders[clip.parent] = clip.parent.resolve()
        resolved = folders[clip.parent] / clip.name
        stat = _stat(resolved, os.lstat)
        if clip.name in ("", ".", "..") or stat is None or S_ISLNK(stat.st_mode):
            resolved = clip.resolve()  # followed to the end; a missing clip named as resolve names it
            stat = _stat(resolved, os.stat)
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "missing"
        yield hashlib.sha1(f"{resolved}:{stamp}".encode()).hexdigest()


def _stat(path: Path, how: Callable[[Path], os.stat_result]) -> os.stat_result | None:
    try:
        return how(path)
    except OSError:
        return None


def _cached(entry: Path) -> bool:
    return entry.with_suffix(".npy").exists() or entry.with_suffix(".err").exists()


NPY_INT16_HEADER = b"{'descr': '<i2', 'fortran_order': False, 'shape': ("  # how np.save begins an entry's header


def _read_entry(path: Path) -> Speech:
    """An entry as np.save wrote it (format 1.0: magic, version, a 2-byte header length, the header), read
    without np.load, whose parsing of the header took three times as long as reading a clip's samples."""
    data = path.read_bytes()
    start = 10 + int.from_bytes(data[8:10], "little")
    if data[:8] != b"\x93NUMPY\x01\x00" or not data[10:start].startswith(NPY_INT16_HEADER):
        stored = np.load(path)  # another layout (an entry np.save wrote otherwise): numpy reads it
    else:
        stored = np.frombuffer(data, dtype="<i2", offset=start)
    rate = float(stored[:RATE_SLOTS].view(np.float64)[0])
    return Speech(stored[RATE_SLOTS:].astype(np.float32) / INT16_SCALE, rate)


def _decode_into_cache(cache: AudioCache, clips: list[str]) -> int:
    for clip in clips:
        entry = cache.entry(clip)
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            speech = decode_speech(clip, cache.config)
        except AudioError as exc:
            write_text(entry.with_suffix(".err"), exc.reason)
            continue
        quantised = np.clip(np.round(speech.samples * INT16_SCALE), -32768, 32767).astype(np.int16)
        rate = np.array([speech.rate], dtype=np.float64).view(np.int16)
        with atomic_path(entry.with_suffix(".npy")) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.concatenate([rate, quantised]))
    return len(clips)


@dataclass(frozen=True)
class CacheContents:
    path: Path
    settings_folders: int  # one per combination of the settings that shape the audio
    clips: int  # decoded clips
    failed_clips: int  # clips recorded as undecodable
    bytes: int


def describe_cache(root: Path) -> CacheContents:
    """What the decode cache under `root` holds."""
    folders = sorted(root.glob("audio-*")) if root.is_dir() else []
    entries = failures = size = 0
    for folder in folders:
        for file in folder.rglob("*"):
            if file.is_file():
                entries += file.suffix == ".npy"
                failures += file.suffix == ".err"
                size += file.stat().st_size
    return CacheContents(root, len(folders), entries, failures, size)


def clear_cache(root: Path) -> int:
    """Delete the decode cache's settings folders under `root` (nothing else there); returns bytes freed."""
    import shutil

    freed = describe_cache(root).bytes
    for folder in root.glob("audio-*") if root.is_dir() else []:
        shutil.rmtree(folder)
    return freed
