"""The speaker-encoder model (model.kind = encoder): a frozen pretrained speaker encoder, linear heads on it.

The encoder is Resemblyzer's GE2E voice encoder (a 3-layer LSTM over 40 mel bands giving a 256-d
L2-normed d-vector; trained by its authors on LibriSpeech and VoxCeleb 1/2, released under Apache-2.0).
Only its weights come from Resemblyzer (fetched once from PyPI: pretrained_encoder_state); the network
and its input are rebuilt here as Resemblyzer defines them, and equal librosa's mel to 6.3e-7
(benchmarks/embedding_probe.py --check-mel). Each clip is heard once: the middle 1.6 s of its speech
(one partial, as the encoder was trained), at 16 kHz, quiet clips raised to -30 dBFS (Resemblyzer's rule).

The committee's members are logistic heads on the d-vector, cross-fitted over the train speakers as the
CNN members are (training.py), so the out-of-fold reference and every claim of export work as for the
CNN. The encoder never learns: it heard thousands of speakers, a release's few hundred would only
unteach it (docs/experiments.md, session 15: as a teacher or a label cleaner it did not help the CNN).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr
import torch
import torchaudio
from torch import nn

from .errors import CvlabelError
from .files import atomic_path
from .speech import Speech

ENCODER_RATE = 16_000  # Hz: the rate the encoder was trained at
HOP = 160  # samples between mel frames (10 ms)
WINDOW = 400  # samples of each frame's window and FFT (25 ms)
PARTIAL_FRAMES = 160  # mel frames a partial (1.6 s, as the encoder was trained)
PARTIAL_SAMPLES = WINDOW + (PARTIAL_FRAMES - 1) * HOP  # the samples the partial's frames read
MEL_BANDS = 40
EMBEDDING = 256  # the d-vector's size
MIN_TEMPERATURE = 0.1  # the heads' weight penalty shrinks their logits (on realcv the out-of-fold NLL was least
# at T ~0.35, ECE 0.137 -> 0.013): their calibration may sharpen them, up to 10x (a CNN's only softens: metrics.py)
TARGET_DBFS = -30.0  # quieter clips are raised to this level, louder ones left alone (Resemblyzer's rule)

# Where the weights come from: the Resemblyzer 0.1.4 wheel on PyPI, checked by its SHA-256
ENCODER_PACKAGE = "resemblyzer==0.1.4"
ENCODER_WHEEL = "Resemblyzer-0.1.4-py3-none-any.whl"
ENCODER_WHEEL_SHA256 = "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f"
ENCODER_WEIGHTS_MEMBER = "resemblyzer/pretrained.pt"
ENCODER_FILE = "resemblyzer-0.1.4.safetensors"  # the weights alone, converted once into the cache folder
ENCODER_NAME = "resemblyzer-0.1.4 GE2E"  # what a checkpoint's info says its encoder is


class SpeakerEncoder(nn.Module):
    """Resemblyzer's VoiceEncoder network: mel power frames (batch, frames, 40) -> L2-normed (batch, 256)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MEL_BANDS, EMBEDDING, 3, batch_first=True)
        self.linear = nn.Linear(EMBEDDING, EMBEDDING)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-9)


class EncoderCommittee(nn.Module):
    """The frozen encoder and `size` logistic heads: forward gives (batch, members) logits, as Committee does."""

    def __init__(self, size: int):
        super().__init__()
        self.encoder = SpeakerEncoder()
        self.members = nn.ModuleList(nn.Linear(EMBEDDING, 1) for _ in range(size))

    def fuse_for_inference(self) -> EncoderCommittee:
        return self.eval()  # nothing to fuse; the same call as the CNN committee's

    def embed(self, windows: torch.Tensor) -> torch.Tensor:
        """(batch, PARTIAL_SAMPLES) partial windows (encoder_window) -> (batch, 256) d-vectors."""
        return self.encoder(partial_mel(windows))

    def heads(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, 256) d-vectors -> (batch, members) logits."""
        return torch.cat([member(embeddings) for member in self.members], dim=1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.heads(self.embed(windows))

    @torch.inference_mode()
    def embeddings(self, speech: Sequence[Speech], batch_size: int = 64) -> np.ndarray:
        """(clips, 256) d-vectors of clips as speech.decode_speech gives them."""
        self.eval()
        out = np.empty((len(speech), EMBEDDING), dtype=np.float32)
        for first in range(0, len(speech), batch_size):
            chosen = speech[first : first + batch_size]
            windows = torch.from_numpy(np.stack([encoder_window(clip.samples, clip.rate) for clip in chosen]))
            out[first : first + len(chosen)] = self.embed(windows).numpy()
        return out

    def speech_logits(self, speech: Sequence[Speech], batch_size: int = 64) -> np.ndarray:
        """(clips, members) logits of clips as speech.decode_speech gives them."""
        with torch.inference_mode():
            return self.heads(torch.from_numpy(self.embeddings(speech, batch_size))).double().numpy()

    def set_head(self, member: int, weight: np.ndarray, bias: float) -> None:
        with torch.no_grad():
            self.members[member].weight.copy_(torch.as_tensor(weight, dtype=torch.float32)[None, :])
            self.members[member].bias.fill_(bias)


def encoder_window(samples: np.ndarray, rate: float) -> np.ndarray:
    """The samples the encoder reads of a clip (its speech, at `rate`): at 16 kHz, raised to TARGET_DBFS when
    quieter, the middle partial with the half-window of context each of its frames reads on either side
    (zeros beyond the clip, as a centred, zero-padded STFT has them). (PARTIAL_SAMPLES,) float32."""
    if rate != ENCODER_RATE:
        samples = soxr.resample(samples, rate, ENCODER_RATE)
    samples = np.asarray(samples, dtype=np.float32)
    level = 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) + 1e-12)
    if level < TARGET_DBFS:
        samples = samples * np.float32(10 ** ((TARGET_DBFS - level) / 20))
    frames = len(samples) // HOP + 1  # a centred STFT's frames
    first = max(0, (frames - PARTIAL_FRAMES) // 2)  # the partial's first frame (the first one of a short clip)
    start = first * HOP - WINDOW // 2  # the first sample its first frame reads
    window = np.zeros(PARTIAL_SAMPLES, dtype=np.float32)
    lo, hi = max(start, 0), min(start + PARTIAL_SAMPLES, len(samples))
    window[lo - start : hi - start] = samples[lo:hi]
    return window


def partial_mel(windows: torch.Tensor) -> torch.Tensor:
    """(batch, PARTIAL_SAMPLES) -> (batch, PARTIAL_FRAMES, 40) mel power frames: Resemblyzer's input (40 Slaney
    mel bands of the power spectrum, 25 ms Hann windows every 10 ms), of the frames encoder_window centred."""
    return _mel_transform()(windows).transpose(1, 2)


@lru_cache(maxsize=1)
def _mel_transform() -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=ENCODER_RATE, n_fft=WINDOW, hop_length=HOP, n_mels=MEL_BANDS, norm="slaney", mel_scale="slaney",
        center=False,
    )  # fmt: skip


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """An L2-regularised logistic regression (weights w, bias b: logit = x @ w + b), each class weighted to
    equal mass, as balanced accuracy counts them (releases are ~4:1 male). L-BFGS in float64: deterministic."""
    xs, ys = torch.from_numpy(np.asarray(x, dtype=np.float64)), torch.from_numpy(np.asarray(y, dtype=np.float64))
    weight = torch.where(ys == 1, 0.5 / ys.mean(), 0.5 / (1 - ys.mean()))
    w = torch.zeros(xs.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = (weight * nn.functional.binary_cross_entropy_with_logits(xs @ w + b, ys, reduction="none")).mean()
        value = value + l2 * (w @ w)
        value.backward()
        return value

    optimizer.step(loss)
    return w.detach().numpy(), float(b.detach())


def pretrained_encoder_state(folder: Path) -> dict[str, torch.Tensor]:
    """The encoder's weights, from folder/ENCODER_FILE; made there the first time from the Resemblyzer wheel
    (folder/ENCODER_WHEEL if it is there, else downloaded from the package index by pip, checked by its
    SHA-256). A CvlabelError saying what to do when neither works (a machine without the index)."""
    from safetensors.torch import load_file, save_file

    weights = folder / ENCODER_FILE
    if not weights.is_file():
        state = _weights_from_wheel(_encoder_wheel(folder))
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights) as tmp:
            save_file(state, str(tmp), metadata={"source": f"{ENCODER_WHEEL} ({ENCODER_WEIGHTS_MEMBER})"})
    return load_file(str(weights))


def _encoder_wheel(folder: Path) -> bytes:
    wheel = folder / ENCODER_WHEEL
    if wheel.is_file():
        data = wheel.read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                       "--dest", tmp, ENCODER_PACKAGE]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            found = Path(tmp) / ENCODER_WHEEL
            if done.returncode != 0 or not found.is_file():
                why = (done.stderr.strip().splitlines() or ["pip said nothing"])[-1]
                raise CvlabelError(
                    f"model.kind encoder needs the speaker encoder's weights, from the {ENCODER_PACKAGE} wheel on "
                    f"PyPI, and pip could not download it ({why}). On a machine that can: 'pip download --no-deps "
                    f"--dest DIR {ENCODER_PACKAGE}', then copy DIR/{ENCODER_WHEEL} into {folder}"
                )
            data = found.read_bytes()
    if hashlib.sha256(data).hexdigest() != ENCODER_WHEEL_SHA256:
        raise CvlabelError(f"{ENCODER_WHEEL}: not the published wheel (its SHA-256 differs); delete it and retry")
    return data


def _weights_from_wheel(wheel: bytes) -> dict[str, torch.Tensor]:
    """The encoder's tensors of Resemblyzer's pretrained.pt (a torch pickle, read with weights_only: no code)."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        saved = torch.load(io.BytesIO(archive.read(ENCODER_WEIGHTS_MEMBER)), map_location="cpu", weights_only=True)
    wanted = SpeakerEncoder().state_dict()
    return {name: saved["model_state"][name].contiguous() for name in wanted}
