"""Tiny synthetic data for tests and benchmarks: voiced clips, Common Voice TSVs, a tiny config.

Everything is made on the spot in a folder the caller gives: no download, no audio in the repo.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile

from .corpus import TSV_HEADER_V16, TSV_HEADER_V17
from .synthesis import synthesize_formant_voice

OLD_COLUMNS, NEW_COLUMNS = TSV_HEADER_V16, TSV_HEADER_V17  # releases up to v16, and from v17

# A model small and short enough to train in seconds (for tests of the pipeline, not of accuracy).
TINY_TRAIN = [
    "model.channels=[8, 16, 16, 16]",
    "model.extra_convs=0",
    "model.hidden=16",
    "train.epochs=2",
    "train.batch_size=8",
    "train.crop_seconds=1.0",
    "train.jobs=1",
    "train.threads=1",
    "train.folds=2",  # a committee of two: the smallest that cross-fits
]


def write_voice(
    path: Path,
    pitch_hz: float,
    seconds: float = 1.0,
    sample_rate: int = 48_000,
    formant_scale: float | None = None,
    seed: int = 0,
    silence_s: float = 0.3,
) -> Path:
    """Write a voiced synthetic clip (MP3 unless the suffix says otherwise) with silence around it."""
    rng = np.random.default_rng(seed)
    scale = formant_scale if formant_scale is not None else (1.0 if pitch_hz < 160 else 1.17)
    text = "a e i o u " * max(1, int(seconds * 3))
    voiced = synthesize_formant_voice(text, pitch_hz, scale, rng, sample_rate=sample_rate)[: int(seconds * sample_rate)]
    pad = np.zeros(int(silence_s * sample_rate), dtype=np.float32)
    soundfile.write(
        path, np.concatenate([pad, voiced, pad]), sample_rate, format="MP3" if path.suffix == ".mp3" else None
    )
    return path


def write_tsv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    """A Common Voice TSV: tab-joined, no quoting, missing fields blank."""
    lines = ["\t".join(columns)] + ["\t".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rewrite_tsv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a TSV read with corpus.read_tsv back as Common Voice writes it (no quoting)."""
    frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return path


def copy_corpus(source: Path, target: Path) -> Path:
    """A writable copy of a corpus (clips copied, so tests may break some)."""
    shutil.copytree(source, target)
    return target


def tiny_train_config(cache_dir: Path, *extra: str) -> list[str]:
    """TINY_TRAIN plus a cache folder and any other `section.key=value` overrides."""
    return [*TINY_TRAIN, f"train.cache_dir={cache_dir}", *extra]


def as_set_options(overrides: list[str]) -> list[str]:
    """`--set a.b=v` pairs for the CLI."""
    return [arg for item in overrides for arg in ("--set", item)]


def infer_command(corpus: Path, model: Path, out: Path, *extra: str) -> list[str]:
    """The arguments of `cvlabel infer CORPUS --unlabeled --model MODEL --out OUT EXTRA...`."""
    return ["infer", str(corpus), "--unlabeled", "--model", str(model), "--out", str(out), *extra]
