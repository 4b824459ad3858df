"""Clip logits from speech samples: the one batched scoring path of train, evaluate, infer and predict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .checkpoint import existing_model_file, load_checkpoint
from .config import FeatureConfig
from .encoder import EncoderCommittee
from .features import frame_count, log_mel
from .model import GenderCNN
from .speech import Speech

if TYPE_CHECKING:
    from .checkpoint import AnyCommittee

SORT_WINDOW = 256  # clips whose audio is held at once and batched by length: memory stays bounded


Clip = Speech | np.ndarray  # speech at its rate, or samples at the features' sample_rate


def clip_logits(
    model: GenderCNN | AnyCommittee,
    config: FeatureConfig,
    load: Callable[[int], Clip],
    count: int,
    batch_size: int = 32,
) -> np.ndarray:
    """Logits of `count` clips, where load(i) gives clip i's speech: (count, members), one column
    for a single GenderCNN.

    Within windows of SORT_WINDOW clips, clips are batched in order of length so padding stays
    small; padded frames are masked out of the model's pooling.
    """
    model.eval()
    logits = np.empty((count, _members(model)), dtype=np.float64)
    for first in range(0, count, SORT_WINDOW):
        indices = list(range(first, min(count, first + SORT_WINDOW)))
        logits[indices] = batch_logits(model, [load(index) for index in indices], config, batch_size)
    return logits


@torch.inference_mode()
def batch_logits(
    model: GenderCNN | AnyCommittee, clips: Sequence[Clip], config: FeatureConfig, batch_size: int
) -> np.ndarray:
    """Logits of speech clips of any lengths (each at its own rate, the features computed at it;
    a bare array is at config.sample_rate), batched shortest first; log-mels are computed one batch
    at a time, so only a batch's features are held. Returns (clips, members): one column per
    committee member (one for a single GenderCNN). An encoder committee hears its own input."""
    speech = [clip if isinstance(clip, Speech) else Speech(clip, config.sample_rate) for clip in clips]
    if isinstance(model, EncoderCommittee):
        return model.speech_logits(speech, max(batch_size, ENCODER_BATCH))
    rated = [config.at_rate(clip.rate) for clip in speech]
    frames = np.array(
        [frame_count(clip.samples.shape[0], at) for clip, at in zip(speech, rated, strict=True)], dtype=np.int64
    )
    logits = np.empty((len(clips), _members(model)), dtype=np.float64)
    order = np.argsort(frames, kind="stable")
    for start in range(0, len(clips), batch_size):
        chosen = order[start : start + batch_size]
        # padded to one of a few shapes (see BATCH_ROWS); the model zeroes the padding at every
        # stage, so a clip's logit does not depend on it
        rows, length = _round_up(len(chosen), BATCH_ROWS), _round_up(frames[chosen].max(), TIME_FRAMES)
        batch = torch.zeros(rows, config.n_mels, length)
        for row, index in enumerate(chosen):
            batch[row, :, : frames[index]] = log_mel(speech[index].samples, rated[index])
        valid = torch.ones(len(batch), dtype=torch.int64)  # padding rows: one frame of zeros each
        valid[: len(chosen)] = torch.as_tensor(frames[chosen])
        out = model(batch, valid).double().numpy()
        logits[chosen] = out.reshape(len(batch), -1)[: len(chosen)]
    return logits


# oneDNN compiles a convolution for each input shape and caches 1,024 of them: clips of any length
# gave a new shape nearly every batch, so a worker either recompiled every batch (cache off) or grew
# from 0.7 to 1.4 GB over 20k clips (cache on). Padded to a multiple of BATCH_ROWS clips and of
# TIME_FRAMES frames (the body's stride: 0.32 s at a 20 ms hop), a batch takes one of a few shapes
# (52 at the defaults), all of which stay cached, and memory stays flat.
BATCH_ROWS = 8
TIME_FRAMES = 16
ENCODER_BATCH = 64  # partials a batch of the speaker encoder at least (benchmarks/embedding_probe.py --speed)


def _round_up(count: int, multiple: int) -> int:
    return -(-int(count) // multiple) * multiple


def _members(model: GenderCNN | AnyCommittee) -> int:
    return 1 if isinstance(model, GenderCNN) else len(model.members)


@dataclass(frozen=True)
class InferenceModel:
    """A checkpoint loaded once for inference: the fused committee, its features and its temperature."""

    model: AnyCommittee
    features: FeatureConfig
    temperature: float  # p_female = sigmoid(logit / temperature)

    def member_logits(self, speech: Sequence[Clip], batch_size: int = 32, member: int | None = None) -> np.ndarray:
        """Raw logits (evidence for female) of speech, as speech.decode_speech gives it (or samples at
        features.sample_rate): (clips, members), or (clips, 1) from the one `member` given."""
        if isinstance(self.model, EncoderCommittee):  # the encoder is the cost, not the heads: all of them
            every = batch_logits(self.model, speech, self.features, batch_size)
            return every if member is None else every[:, [member]]
        model = self.model if member is None else self.model.members[member]
        return batch_logits(model, speech, self.features, batch_size)

    def logits(self, speech: Sequence[Clip], batch_size: int = 32) -> np.ndarray:
        """The committee's logit of each clip: the mean of its members' logits. (clips,)"""
        return self.member_logits(speech, batch_size).mean(axis=1)


def inference_model(path: str | Path) -> InferenceModel:
    """The checkpoint at `path` (a run folder or its model file) loaded and fused, once per process:
    a worker reuses it for every shard. A replaced file is loaded again."""
    file = existing_model_file(path)
    return _load_inference_model(str(file.resolve()), file.stat().st_mtime_ns)


@lru_cache(maxsize=2)
def _load_inference_model(path: str, mtime_ns: int) -> InferenceModel:
    checkpoint = load_checkpoint(path)
    return InferenceModel(checkpoint.model.fuse_for_inference(), checkpoint.config.features, checkpoint.temperature)
