"""`cvlabel evaluate`: a trained run's metrics on the self-reported rows of any corpus and split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cache import AudioCache, cache_root
from .checkpoint import load_checkpoint
from .errors import CvlabelError
from .metrics import classification_metrics
from .runners import resolve_jobs
from .scoring import clip_logits
from .splits import labelled_rows


def evaluate_run(run_dir: str | Path, corpus_dir: str | Path, split: str = "test", jobs: int = 0) -> dict[str, Any]:
    """Metrics of a trained run on the self-reported rows of `split` of any corpus.

    The split settings inside the checkpoint decide the splits, so evaluating on the corpus it
    was trained on gives its held-out test speakers; `all` uses every labelled row.
    """
    checkpoint = load_checkpoint(run_dir)
    config = checkpoint.config
    rows = labelled_rows(corpus_dir, config.splits, split)
    if rows.empty:
        raise CvlabelError(f"{corpus_dir}: no self-reported male/female rows in split {split!r}")
    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    errors = cache.fill(rows["clip"].tolist(), jobs=resolve_jobs(jobs))
    rows = rows[~rows["clip"].isin(errors)].reset_index(drop=True)
    logits = clip_logits(
        checkpoint.model, config.features, lambda i: cache.load(rows["clip"][i]), len(rows), config.train.batch_size
    ).mean(axis=1)  # the committee's logit
    metrics = classification_metrics(
        rows["label"].to_numpy(), logits, checkpoint.temperature, rows["client_id"].to_numpy()
    )
    metrics["split"] = split
    metrics["decode_errors"] = len(errors)
    return metrics


# The metrics `train` and `evaluate` print, in this order.
METRIC_KEYS = (
    "clips",
    "speakers",
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "ece_before_calibration",
    "ece",
    "speaker_accuracy",
    "precision_male",
    "recall_male",
    "precision_female",
    "recall_female",
)


def format_metrics(metrics: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """Aligned `name  value` lines for the console."""
    keys = keys or [k for k, v in metrics.items() if isinstance(v, (int, float))]
    width = max(len(k) for k in keys)
    lines = []
    for key in keys:
        value = metrics.get(key)
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)
