"""`cvlabel predict`: the calibrated gender of single clips, one result per file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .audio import load_audio
from .cache import speech_of
from .checkpoint import load_checkpoint
from .config import FeatureConfig
from .errors import AudioError
from .evaluate import batch_logits
from .features import log_mel
from .metrics import sigmoid
from .model import LABELS, GenderCNN


@dataclass(frozen=True)
class Predictor:
    """A checkpoint loaded once for inference: the fused model, its features and its temperature."""

    model: GenderCNN
    config: FeatureConfig
    temperature: float  # p(female) = sigmoid(logit / temperature)

    @classmethod
    def load(cls, model_dir: str | Path) -> "Predictor":
        checkpoint = load_checkpoint(model_dir)
        return cls(checkpoint.model.fuse_for_inference(), checkpoint.feature_config, checkpoint.temperature)

    def logit(self, speech: np.ndarray) -> float:
        """The model's logit (evidence for female) of silence-trimmed samples, as speech_of gives them."""
        return float(batch_logits(self.model, [log_mel(speech, self.config)], 1)[0])

    def verdict(self, logit: float) -> dict:
        """label, calibrated p_female and confidence of one logit or of a pooled (mean) logit."""
        p_female = float(sigmoid(logit / self.temperature))
        return {"label": LABELS[int(p_female >= 0.5)], "p_female": round(p_female, 4),
                "confidence": round(max(p_female, 1 - p_female), 4)}


def predict_files(paths: Iterable[str | Path], model_dir: str | Path) -> list[dict]:
    """One dict per file: path, label, p_female (calibrated), confidence, duration_s, error.

    A file that cannot be decoded, or holds no speech, gets its error and null figures; the
    others are still predicted.
    """
    predictor = Predictor.load(model_dir)
    config = predictor.config
    results = []
    for path in paths:
        result = {"path": str(path), "label": None, "p_female": None, "confidence": None, "duration_s": None,
                  "error": None}
        try:
            samples = load_audio(path, config.sample_rate, max_seconds=config.max_seconds)
            result["duration_s"] = round(samples.shape[0] / config.sample_rate, 3)
            logit = predictor.logit(speech_of(samples, config, path))
        except AudioError as exc:
            result["error"] = exc.reason
            results.append(result)
            continue
        result.update(predictor.verdict(logit))
        results.append(result)
    return results
