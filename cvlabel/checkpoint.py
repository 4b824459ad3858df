"""Self-describing checkpoints: weights plus the model and feature configs and the temperature.

Saved as tensors and plain values only, and loaded with torch's weights_only unpickler, so a
checkpoint file can never run code.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, FeatureConfig, ModelConfig, config_to_dict, from_dict, load_config
from .corpus import LABELS
from .errors import CvlabelError
from .files import atomic_path

if TYPE_CHECKING:
    from .model import GenderCNN

# torch is imported inside the functions that need it: the parent process of a parallel
# `cvlabel infer` finds its run folder here but never loads a model (saves ~0.3 GB and ~3 s).

CHECKPOINT_FORMAT = "cvlabel-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    """Everything inference needs, so pseudo-labels use exactly the features training did."""

    model: GenderCNN
    model_config: ModelConfig
    feature_config: FeatureConfig
    temperature: float  # calibrated on dev: p(female) = sigmoid(logit / temperature)
    labels: tuple[str, ...] = LABELS
    info: dict[str, Any] | None = None  # free-form provenance (corpus, git, metrics)


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> None:
    """Write a checkpoint of tensors and plain values only (loadable with weights_only=True)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "state_dict": checkpoint.model.state_dict(),
        "model_config": config_to_dict(checkpoint.model_config),
        "feature_config": config_to_dict(checkpoint.feature_config),
        "labels": list(checkpoint.labels),
        "temperature": float(checkpoint.temperature),
        "info": checkpoint.info or {},
    }
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def model_file(path: str | Path) -> Path:
    """A run folder's model.pt, or the checkpoint file itself."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def run_config(path: str | Path) -> Config:
    """The resolved config saved beside a checkpoint (defaults if there is none)."""
    saved = model_file(path).parent / "config.yaml"
    return load_config(saved if saved.is_file() else None)


def existing_model_file(path: str | Path) -> Path:
    """model_file(path), or a CvlabelError when there is no such file."""
    path = model_file(path)
    if not path.is_file():
        raise CvlabelError(f"{path}: no such checkpoint (expected a run folder or its model.pt)")
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint with torch's weights_only unpickler: a file carrying code is refused."""
    import torch

    from .model import GenderCNN

    path = existing_model_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CvlabelError(f"{path}: refused: not a plain cvlabel checkpoint ({_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, io.UnsupportedOperation) as exc:
        raise CvlabelError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CvlabelError(f"{path}: not a cvlabel checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CvlabelError(f"{path}: checkpoint version {payload.get('version')} is not supported by this cvlabel")
    if tuple(payload["labels"]) != LABELS:
        raise CvlabelError(f"{path}: checkpoint labels {payload['labels']} are not {list(LABELS)}")
    model_config = from_dict(ModelConfig, payload["model_config"])
    feature_config = from_dict(FeatureConfig, payload["feature_config"])
    model = GenderCNN(model_config, feature_config.n_mels)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CvlabelError(f"{path}: weights do not fit the model config ({_first_line(exc)})") from None
    model.eval()
    return Checkpoint(model, model_config, feature_config, float(payload["temperature"]), LABELS, payload["info"])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
