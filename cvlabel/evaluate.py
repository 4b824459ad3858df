"""Batched clip logits, and `cvlabel evaluate`: a trained run's metrics on any corpus and split."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .cache import AudioCache, cache_root
from .checkpoint import load_checkpoint, run_config
from .config import Config, FeatureConfig
from .corpus import LABELS, clips_dir, read_release
from .errors import CvlabelError
from .features import log_mel
from .metrics import classification_metrics
from .model import GenderCNN
from .splits import SPLITS, assign_splits

EVAL_SPLITS = SPLITS + ("all",)


SORT_WINDOW = 256  # clips whose audio is held at once and batched by length: memory stays bounded


def clip_logits(model: GenderCNN, config: FeatureConfig, load: Callable[[int], np.ndarray], count: int,
                batch_size: int = 32) -> np.ndarray:
    """Logits of `count` clips, where load(i) gives clip i's speech samples.

    Within windows of SORT_WINDOW clips, clips are batched in order of length so padding stays
    small; padded frames are masked out of the model's pooling.
    """
    model.eval()
    logits = np.empty(count, dtype=np.float64)
    for first in range(0, count, SORT_WINDOW):
        indices = list(range(first, min(count, first + SORT_WINDOW)))
        logits[indices] = batch_logits(model, [load(index) for index in indices], config, batch_size)
    return logits


@torch.inference_mode()
def batch_logits(model: GenderCNN, clips: Sequence[np.ndarray], config: FeatureConfig, batch_size: int) -> np.ndarray:
    """Logits of speech clips (samples at config.sample_rate) of any lengths, batched shortest
    first; log-mels are computed one batch at a time, so only a batch's features are held."""
    frames = np.array([clip.shape[0] // config.hop_length + 1 for clip in clips], dtype=np.int64)
    logits = np.empty(len(clips), dtype=np.float64)
    order = np.argsort(frames, kind="stable")
    for start in range(0, len(clips), batch_size):
        chosen = order[start : start + batch_size]
        batch = torch.zeros(len(chosen), config.n_mels, int(frames[chosen].max()))
        for row, index in enumerate(chosen):
            batch[row, :, : frames[index]] = log_mel(clips[index], config)
        logits[chosen] = model(batch, torch.as_tensor(frames[chosen])).double().numpy()
    return logits


def labelled_rows(corpus_dir: str | Path, config: Config, split: str) -> pd.DataFrame:
    """Self-reported male/female rows of one split (or of all splits) with `clip` and `label`."""
    if split not in EVAL_SPLITS:
        raise CvlabelError(f"unknown split {split!r}; choose from {', '.join(EVAL_SPLITS)}")
    manifest, _ = assign_splits(read_release(corpus_dir), config.splits)
    rows = manifest[manifest["split"] != ""] if split == "all" else manifest[manifest["split"] == split]
    rows = rows.copy()
    folder = clips_dir(corpus_dir)
    rows["clip"] = [str(folder / p) for p in rows["path"]]
    rows["label"] = rows["gender"].map({g: i for i, g in enumerate(LABELS)}).astype(int)
    return rows.reset_index(drop=True)


def evaluate_run(run_dir: str | Path, corpus_dir: str | Path, split: str = "test", jobs: int = 0) -> dict:
    """Metrics of a trained run on the self-reported rows of `split` of any corpus.

    The run's own config (its split settings and seed) decides the splits, so evaluating on the
    corpus it was trained on gives its held-out test speakers; `all` uses every labelled row.
    """
    checkpoint = load_checkpoint(run_dir)
    config = run_config(run_dir)
    rows = labelled_rows(corpus_dir, config, split)
    if rows.empty:
        raise CvlabelError(f"{corpus_dir}: no self-reported male/female rows in split {split!r}")
    cache = AudioCache(cache_root(config.train.cache_dir), checkpoint.feature_config)
    errors = cache.fill(rows["clip"].tolist(), jobs=jobs or os.cpu_count() or 1)
    rows = rows[~rows["clip"].isin(errors)].reset_index(drop=True)
    logits = clip_logits(checkpoint.model, checkpoint.feature_config, lambda i: cache.load(rows["clip"][i]),
                         len(rows), config.train.batch_size)
    metrics = classification_metrics(rows["label"].to_numpy(), logits, checkpoint.temperature,
                                      rows["client_id"].to_numpy())
    metrics["split"] = split
    metrics["decode_errors"] = len(errors)
    return metrics


def format_metrics(metrics: dict, keys: Sequence[str] | None = None) -> str:
    """Aligned `name  value` lines for the console."""
    keys = keys or [k for k, v in metrics.items() if isinstance(v, (int, float))]
    width = max(len(k) for k in keys)
    lines = []
    for key in keys:
        value = metrics.get(key)
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)
