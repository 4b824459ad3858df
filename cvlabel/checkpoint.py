"""Self-describing checkpoints: the committee's weights, the whole resolved config, and the temperature.

A checkpoint is a safetensors file: tensors plus a JSON header of strings, so loading it can
never run code, and its config can be read without torch (the parent of a parallel
`cvlabel infer` selects rows by the run's split settings without importing torch). Everything
that decides what a model hears and which rows were held out travels inside the file: a copied
checkpoint gives the same features and the same dev/test rows as the run that made it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import LEGACY_MODEL_FILE, model_path
from .config import Config, config_to_dict, from_dict
from .errors import CvlabelError
from .files import atomic_path, ordinary_permissions
from .labels import LABELS

if TYPE_CHECKING:
    from .encoder import EncoderCommittee
    from .model import Committee

    AnyCommittee = Committee | EncoderCommittee  # what a checkpoint holds, by config.model.kind

CHECKPOINT_FORMAT = "cvlabel-checkpoint"
CHECKPOINT_VERSION = "2"  # 1 was cvlabel 0.1's pickled model.pt


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself, read without torch."""

    config: Config  # the run's whole resolved config: features, splits, model, training
    temperature: float  # calibrated on dev: p_female = sigmoid(logit / temperature)
    info: dict[str, Any]  # free-form provenance (corpus, best epoch)


@dataclass
class Checkpoint(CheckpointInfo):
    model: AnyCommittee


HEARD_BEFORE = "heard_before"  # info key: speaker_digest of every speaker the model's weights learned from before
# the run that made it (the base model: all of its training speakers; a fine-tuned model: its init's, inherited).
# Such a speaker of a user's release is no clean reference: export leaves them out of its claims


def speaker_digest(client_id: str) -> str:
    """A short fingerprint of a client_id (16 hex digits of its SHA-256): enough to recognise a speaker
    among millions, and a checkpoint holds no list of ids."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:16]


def heard_before(info: dict[str, Any]) -> frozenset[str]:
    """The speaker digests a checkpoint's starting weights had heard (HEARD_BEFORE), or none."""
    return frozenset(info.get(HEARD_BEFORE, ()))


def save_checkpoint(
    model: AnyCommittee, config: Config, temperature: float, path: str | Path, info: dict[str, Any] | None = None
) -> None:
    """Write weights and header (atomically: temp name, then rename)."""
    from safetensors.torch import save_file

    header = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "labels": json.dumps(list(LABELS)),
        "config": json.dumps(config_to_dict(config)),
        "temperature": repr(float(temperature)),
        "members": str(len(model.members)),
        "info": json.dumps(info or {}),
    }
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=header)
        ordinary_permissions(tmp)


def existing_model_file(path: str | Path) -> Path:
    """model_path(path), or a CvlabelError saying what is there instead."""
    file = model_path(path)
    if not file.is_file():
        legacy = Path(path) / LEGACY_MODEL_FILE if Path(path).is_dir() else Path(path)
        if legacy.is_file() and legacy.suffix == ".pt":
            raise CvlabelError(
                f"{legacy}: a checkpoint of cvlabel 0.1, which this version does not read; "
                "train the run again with 'cvlabel train'"
            )
        if not Path(path).exists():
            raise CvlabelError(f"{path}: no such run folder or model file")
        raise CvlabelError(f"{path}: no {file.name} in this folder (not a finished 'cvlabel train' run)")
    return file


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """The config, temperature and provenance of a checkpoint, without torch or the weights."""
    from safetensors import SafetensorError, safe_open

    file = existing_model_file(path)
    try:
        with safe_open(str(file), framework="numpy") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CvlabelError(f"{file}: not a readable checkpoint ({_first_line(exc)})") from None
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CvlabelError(f"{file}: not a cvlabel checkpoint")
    if header.get("version") != CHECKPOINT_VERSION:
        raise CvlabelError(f"{file}: checkpoint version {header.get('version')} is not supported by this cvlabel")
    try:
        labels = tuple(json.loads(header["labels"]))
        config = from_dict(Config, _upgraded(json.loads(header["config"])))
        temperature = float(header["temperature"])
        members = int(header["members"])
        info = json.loads(header.get("info", "{}"))
    except (KeyError, ValueError) as exc:
        raise CvlabelError(f"{file}: damaged checkpoint header ({_first_line(exc)})") from None
    if labels != LABELS:
        raise CvlabelError(f"{file}: checkpoint labels {list(labels)} are not {list(LABELS)}")
    return CheckpointInfo(config, temperature, {**info, "members": members})


def run_config(path: str | Path) -> Config:
    """The resolved config a run was trained with, from its checkpoint."""
    return read_checkpoint_info(path).config


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The model with its weights (in eval mode) and everything read_checkpoint_info gives."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    described = read_checkpoint_info(path)
    file = existing_model_file(path)
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CvlabelError(f"{file}: not a readable checkpoint ({_first_line(exc)})") from None
    model = empty_committee(described.config, described.info["members"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CvlabelError(f"{file}: weights do not fit the model config ({_first_line(exc)})") from None
    model.eval()
    return Checkpoint(described.config, described.temperature, described.info, model)


def empty_committee(config: Config, members: int) -> AnyCommittee:
    """A committee of `members` of config.model.kind, with random weights (for a checkpoint's to fill)."""
    if config.model.kind == "encoder":
        from .encoder import EncoderCommittee

        return EncoderCommittee(members)
    from .model import Committee

    return Committee.empty(config.model, config.features.n_mels, members)


def _upgraded(tree: dict[str, Any]) -> dict[str, Any]:
    """A config of an older checkpoint in today's keys: cvlabel <= 0.2 gave the STFT in samples
    (n_fft, hop_length) where today's gives milliseconds; the same analysis either way."""
    features = dict(tree.get("features", {}))
    rate = features.get("sample_rate", 16_000)
    if "n_fft" in features:
        features["window_ms"] = 1000 * features.pop("n_fft") / rate
    if "hop_length" in features:
        features["hop_ms"] = 1000 * features.pop("hop_length") / rate
    # cvlabel <= 0.2 heard every clip at sample_rate; later models hear each MP3 at its native rate / k
    features.setdefault("min_decode_rate", 0)
    return {**tree, "features": features}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
