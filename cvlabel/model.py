"""A compact CNN over log-mels.

The network downsamples time and frequency by 16 with strided convolutions, then pools the
valid (unpadded) frames into per-clip mean and standard deviation: any clip length works, and
clips of different lengths can share a batch. It outputs one logit; p(female) = sigmoid(logit / T).
"""

from __future__ import annotations

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
        # channels-last convolutions ran 6-15% faster on a CPU (one thread, 3 runs), above all the first one
        self.body = self.body.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def output_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames left after the strided stages (3x3 kernels, stride 2, padding 1)."""
        for _ in self.config.channels:
            frames = torch.div(frames - 1, 2, rounding_mode="floor") + 1
        return frames

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """features: (batch, n_mels, time), zero-padded; frames: (batch,) valid frames. -> (batch,) logits."""
        images = features.unsqueeze(1)  # (batch, 1, freq, time)
        if self.channels_last:  # with one channel only the strides change, not the data
            images = images.contiguous(memory_format=torch.channels_last)
        hidden = self.body(images)  # (batch, channels, freq', time')
        batch, channels, freq, time = hidden.shape
        hidden = hidden.reshape(batch, channels * freq, time)
        if frames is None:
            mask = torch.ones(batch, 1, time, device=hidden.device)
        else:
            valid = self.output_frames(frames.to(hidden.device)).clamp(min=1, max=time)
            mask = (torch.arange(time, device=hidden.device)[None, :] < valid[:, None]).unsqueeze(1).float()
        count = mask.sum(dim=2)
        mean = (hidden * mask).sum(dim=2) / count
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
