"""A compact CNN over log-mels.

The network downsamples time and frequency by 16 with strided convolutions, then pools the
valid (unpadded) frames into per-clip mean and standard deviation: any clip length works, and
clips of different lengths can share a batch. It outputs one logit; p(female) = sigmoid(logit / T).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .config import ModelConfig


class GenderCNN(nn.Module):
    def __init__(self, config: ModelConfig, n_mels: int):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width, freq = 1, n_mels
        for channels in config.channels:
            layers += [
                nn.Conv2d(width, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            width, freq = channels, (freq - 1) // 2 + 1
        for _ in range(config.extra_convs):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.channels_last = False  # fuse_for_inference switches the body to channels-last convolutions
        pooled = 2 * width * freq  # mean and std of every (channel, frequency) row
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(pooled, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1)
        )

    def fuse_for_inference(self) -> GenderCNN:
        """Fold each batch norm and ReLU into the convolution before it (eval mode only): the same
        outputs to float rounding, fewer passes over memory. The state dict changes, so fuse only
        a model that will not be saved."""
        self.eval()
        groups = [[str(i), str(i + 1), str(i + 2)] for i in range(0, len(self.body), 3)]
        self.body = torch.ao.quantization.fuse_modules(self.body, groups)
        for stage in self.body[::3]:  # ConvReLU2d (conv, then ReLU): the ReLU may overwrite the conv's fresh
            stage[1].inplace = True  # output; a new tensor for it cost as much as the conv (memory, page faults)
        # channels-last convolutions ran 6-15% faster on a CPU (one thread, 3 runs), above all the first one
        return self.use_channels_last()

    def use_channels_last(self, enabled: bool = True) -> GenderCNN:
        """Hold the body's weights, and so its activations, channels-last (or back in the usual layout):
        the same outputs to float rounding; a training step's forward and backward took 25-30% less time
        on a CPU (benchmarks/train_step.py)."""
        self.body = self.body.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self.channels_last = enabled
        return self

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """features: (batch, n_mels, time), zero-padded; frames: (batch,) valid frames. -> (batch,) logits.

        With `frames`, every stage's output past a clip's valid frames is zeroed before the next
        stage reads it, as the convolution's own zero padding would be at the end of that clip
        alone: a clip's logit does not depend on how far its batch was padded or what it was
        batched with (to float rounding)."""
        hidden = features.unsqueeze(1)  # (batch, 1, freq, time)
        if self.channels_last:  # with one channel only the strides change, not the data
            hidden = hidden.contiguous(memory_format=torch.channels_last)
        if frames is None:
            hidden = self.body(hidden)  # (batch, channels, freq', time')
        else:
            valid = frames.to(hidden.device)
            # the body is conv, batch norm, ReLU per stage (fused: the fused module, then two Identity)
            for stage, first in enumerate(range(0, len(self.body), 3)):
                for layer in self.body[first : first + 3]:
                    hidden = layer(hidden)
                if stage < len(self.config.channels):
                    valid = _halved(valid)
                _zero_past(hidden, valid)
        batch, channels, freq, time = hidden.shape
        hidden = hidden.reshape(batch, channels * freq, time)
        if frames is None:
            mask = torch.ones(batch, 1, time, device=hidden.device)
        else:
            mask = _frame_mask(valid.clamp(min=1), time).unsqueeze(1)
        count = mask.sum(dim=2)
        mean = hidden.sum(dim=2) / count  # the tails past `valid` are zero already (_zero_past)
        var = (((hidden - mean.unsqueeze(2)) * mask) ** 2).sum(dim=2) / count
        pooled = torch.cat([mean, torch.sqrt(var + 1e-5)], dim=1)
        return self.head(pooled).squeeze(1)


class Committee(nn.Module):
    """The members trained on different folds of the train speakers, run on the same features.

    forward gives (batch, members) logits; the committee's logit is their mean, and their
    disagreement about a speaker is a reason not to label it (pooling.py).
    """

    def __init__(self, members: list[GenderCNN]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @classmethod
    def empty(cls, config: ModelConfig, n_mels: int, size: int) -> Committee:
        return cls([GenderCNN(config, n_mels) for _ in range(size)])

    def fuse_for_inference(self) -> Committee:
        for member in self.members:
            member.fuse_for_inference()
        return self

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """features: (batch, n_mels, time); frames: (batch,) valid frames. -> (batch, members) logits."""
        return torch.stack([member(features, frames) for member in self.members], dim=1)


def _halved(frames: torch.Tensor) -> torch.Tensor:
    """Frames after one strided stage (3x3 kernel, stride 2, padding 1): ceil(frames / 2)."""
    return torch.div(frames - 1, 2, rounding_mode="floor") + 1


def _zero_past(hidden: torch.Tensor, valid: torch.Tensor) -> None:
    """Zero, in place, each clip's frames of (batch, channels, freq, time) past its `valid` count:
    only the padded tails are written (a whole-tensor mask costs a pass over every stage's output).
    Neighbouring rows with the same count (batches are sorted by length) are zeroed by one slice."""
    time, start = hidden.shape[-1], 0
    for frames, rows in itertools.groupby(valid.tolist()):
        end = start + len(list(rows))
        if frames < time:
            hidden[start:end, :, :, frames:] = 0
        start = end


def _frame_mask(valid: torch.Tensor, time: int) -> torch.Tensor:
    """(batch, time) 1.0 on each clip's first `valid` frames, 0.0 after."""
    return (torch.arange(time, device=valid.device)[None, :] < valid[:, None]).float()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
