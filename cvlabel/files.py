"""Writing artifacts so that a reader never sees half a file: temp name beside it, then rename."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CvlabelError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` to write to; renamed to `path` when the block succeeds, removed
    when it fails. The temp name holds the process id, so parallel writers never share one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def ordinary_permissions(path: str | Path) -> None:
    """Give a file the mode any other file here gets (0666 less the umask): some writers (safetensors)
    create theirs 0600, which a shared model folder or a packaged checkpoint must not be."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@contextmanager
def atomic_folder(folder: str | Path, command: str) -> Iterator[Path]:
    """A temp folder beside `folder` to write a whole output into; renamed to `folder` when the block
    succeeds and removed when it fails, so a reader (or a re-run) never meets half an output folder.

    `folder` must be new or empty: an output is never written over another. A kill -9 can leave the
    hidden temp folder (`.NAME.tmp-PID`) behind, never a half-written `folder`.
    """
    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()):
        shown = ", ".join(sorted(p.name for p in folder.iterdir())[:3])
        raise CvlabelError(
            f"{folder} is not empty ({shown} ...): {command} writes a new folder, never over another output; "
            "choose a new or empty --out folder"
        )
    if folder.exists() and not folder.is_dir():
        raise CvlabelError(f"{folder}: cannot write there (a file is in the way)")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        writable_folder(tmp)
        yield tmp
        try:
            if folder.is_dir():
                folder.rmdir()  # empty (checked above); rename needs the name free on every platform
            tmp.rename(folder)
        except OSError as exc:
            raise CvlabelError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)  # never follows a symlink inside (an export's clips link)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, value: Any) -> None:
    """Strict JSON (NaN, e.g. an AUC over one class, becomes null)."""

    def strict(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: strict(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [strict(v) for v in item]
        return None if isinstance(item, float) and math.isnan(item) else item

    write_text(path, json.dumps(strict(value), indent=1) + "\n")


def write_parquet(table: pa.Table, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def writable_folder(folder: str | Path, own: tuple[str, ...] | None = None, command: str = "") -> Path:
    """Create `folder` if needed and prove it writable now, before any long work starts.

    With `own` (glob patterns of the command's own files), an existing folder holding anything else
    is refused: a command never mixes its files into another command's folder or a user's folder.
    """
    folder = Path(folder)
    if own is not None and folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if not any(p.match(pattern) for pattern in (*own, "*.tmp-*")))
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise CvlabelError(
                f"{folder} holds files that are not {command or 'this command'}'s own ({shown}); "
                "choose a new or empty --out folder"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".cvlabel-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise CvlabelError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
    return folder


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold an exclusive lock on FOLDER/.lock while the block runs; a CvlabelError at once when another
    process holds it. The OS releases it when the process ends, however it ends, so a killed run never
    leaves a stale lock (POSIX flock; where there is none, Windows, the block runs unlocked)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(Path(folder) / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CvlabelError(
                f"{folder} is in use by another {command} right now; wait for it to finish, or choose another "
                "--out folder"
            ) from None
        yield


LOCK_FILE = ".lock"  # held by the process writing a folder (folder_lock)
