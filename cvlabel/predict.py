"""`cvlabel predict FILE...`: the calibrated gender of single clips, one result per file."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .audio import load_audio
from .cache import speech_of
from .checkpoint import load_checkpoint
from .errors import AudioError
from .evaluate import batch_logits
from .metrics import sigmoid
from .model import LABELS


def predict_files(paths: Iterable[str | Path], model_dir: str | Path) -> list[dict]:
    """One dict per file: path, label, p_female (calibrated), confidence, duration_s, error.

    A file that cannot be decoded, or holds no speech, gets its error and null figures; the
    others are still predicted.
    """
    checkpoint = load_checkpoint(model_dir)
    model = checkpoint.model.fuse_for_inference()
    config = checkpoint.feature_config
    results = []
    for path in paths:
        result = {"path": str(path), "label": None, "p_female": None, "confidence": None, "duration_s": None,
                  "error": None}
        try:
            samples = load_audio(path, config.sample_rate, max_seconds=config.max_seconds)
            result["duration_s"] = round(samples.shape[0] / config.sample_rate, 3)
            speech = speech_of(samples, config, path)
        except AudioError as exc:
            result["error"] = exc.reason
            results.append(result)
            continue
        p_female = float(sigmoid(batch_logits(model, [speech], config, 1)[0] / checkpoint.temperature))
        result.update(label=LABELS[int(p_female >= 0.5)], p_female=round(p_female, 4),
                      confidence=round(max(p_female, 1 - p_female), 4))
        results.append(result)
    return results
