"""Synthetic voices for the demo corpus and the tests: free, offline, deterministic.

Two engines:
  espeak   Debian's espeak-ng formant voices, when the `espeak-ng` program is installed
  formant  a built-in numpy source-filter synthesizer: a glottal pulse train at the speaker's
           pitch shaped by vowel formants scaled to the speaker's vocal tract
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .config import Engine
from .errors import CvlabelError

CLIP_RATE = 48_000  # Hz: Common Voice's usual MP3 rate
SYNTH_RATE = 16_000  # Hz: the formant synthesizer's working rate
ENGINES: tuple[str, ...] = typing.get_args(Engine)

# Vowel formants F1-F3 in Hz of an adult male vocal tract (Peterson & Barney style averages);
# other speakers scale them by their `formant_scale`.
VOWEL_FORMANTS = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}
FORMANT_BANDWIDTHS = (80.0, 100.0, 140.0)  # Hz, F1-F3


@dataclass(frozen=True)
class Speaker:
    client_id: str
    gender: str  # true gender: male | female
    locale: str
    voice: str  # espeak voice name, or "formant"
    pitch_hz: float  # mean F0 for the formant engine
    formant_scale: float  # vocal-tract scale for the formant engine (female ~1.17)
    espeak_pitch: int  # espeak-ng -p (0-99)
    espeak_speed: int  # espeak-ng -s (words per minute)


def resolve_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise CvlabelError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "auto":
        return "espeak" if shutil.which("espeak-ng") else "formant"
    if engine == "espeak" and not shutil.which("espeak-ng"):
        raise CvlabelError("engine 'espeak' needs the espeak-ng program (Debian: apt-get install espeak-ng)")
    return engine


def synthesize_formant_voice(
    text: str, pitch_hz: float, formant_scale: float, rng: np.random.Generator, sample_rate: int = SYNTH_RATE
) -> np.ndarray:
    """A voiced utterance from a source-filter model: one syllable per vowel letter of `text`.

    Each syllable is a short noise burst (the consonant) and a glottal pulse train at a
    gliding pitch around `pitch_hz`, filtered by the vowel's formants times `formant_scale`.
    Returns float32 (samples,) at `sample_rate`, peak about 0.5.
    """
    vowels = [c for c in text.lower() if c in VOWEL_FORMANTS] or ["a"]
    pieces = []
    n_syll = len(vowels)
    for k, vowel in enumerate(vowels):
        # declining intonation with a little random wobble per syllable
        f0 = pitch_hz * (1.1 - 0.2 * k / max(1, n_syll - 1)) * float(rng.uniform(0.95, 1.05))
        vowel_s = float(rng.uniform(0.09, 0.17))
        consonant_s = float(rng.uniform(0.02, 0.06))
        pieces.append(0.05 * _shaped_noise(int(consonant_s * sample_rate), rng, sample_rate))
        pieces.append(_voiced_vowel(vowel, f0, formant_scale, vowel_s, rng, sample_rate))
        if rng.random() < 0.15:  # a pause between words
            pieces.append(np.zeros(int(float(rng.uniform(0.05, 0.15)) * sample_rate), dtype=np.float32))
    utterance = np.concatenate(pieces)
    return (0.5 * utterance / (np.abs(utterance).max() + 1e-9)).astype(np.float32)


def render_clip(path: Path, text: str, speaker: Speaker, engine: str, seed: int) -> float:
    """Synthesize `text` in the speaker's voice and write it as a Common-Voice-like MP3 (48 kHz, silence
    and room noise around the speech); returns its duration in seconds."""
    rng = np.random.default_rng(seed)
    if engine == "espeak":
        voiced, rate = _espeak(text, speaker)
    else:
        voiced, rate = synthesize_formant_voice(text, speaker.pitch_hz, speaker.formant_scale, rng), SYNTH_RATE
    voiced = soxr.resample(voiced, rate, CLIP_RATE).astype(np.float32)
    # Common Voice clips start and end with some silence and room noise
    lead, tail = (np.zeros(int(float(rng.uniform(0.2, 0.8)) * CLIP_RATE), dtype=np.float32) for _ in range(2))
    clip = np.concatenate([lead, voiced * float(rng.uniform(0.3, 1.0)), tail])
    clip += rng.normal(0, 10 ** (float(rng.uniform(-70, -55)) / 20), clip.shape).astype(np.float32)
    soundfile.write(path, np.clip(clip, -1, 1), CLIP_RATE, format="MP3")
    return round(clip.shape[0] / CLIP_RATE, 3)


def _espeak(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "voice.wav")
        # an argument list, never a shell string: the text comes from data
        subprocess.run(
            [
                "espeak-ng",
                "-v",
                speaker.voice,
                "-p",
                str(speaker.espeak_pitch),
                "-s",
                str(speaker.espeak_speed),
                "-w",
                wav,
                "--",
                text,
            ],
            check=True,
            capture_output=True,
        )
        samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    return samples[:, 0], rate


def _voiced_vowel(
    vowel: str, f0: float, scale: float, seconds: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    n = max(1, int(seconds * sample_rate))
    # glottal source: a pulse at every cycle of a slightly jittered, gliding pitch
    glide = np.linspace(1.0, float(rng.uniform(0.9, 1.1)), n)
    phase = np.cumsum(f0 * glide * (1 + 0.01 * rng.standard_normal(n)) / sample_rate)
    source = np.diff(np.floor(phase), prepend=0.0)
    source += 0.02 * rng.standard_normal(n)  # breath
    spectrum = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    response = 1.0 / (1.0 + (freqs / 300.0) ** 2)  # the glottal pulse's -12 dB/octave tilt
    for formant, bandwidth in zip(VOWEL_FORMANTS[vowel], FORMANT_BANDWIDTHS, strict=False):
        centre = formant * scale
        response = response * centre**2 / np.sqrt((centre**2 - freqs**2) ** 2 + (bandwidth * freqs) ** 2)
    signal = np.fft.irfft(spectrum * response, n)
    envelope = np.sin(np.linspace(0, np.pi, n)) ** 0.5
    return (signal * envelope).astype(np.float32)


def _shaped_noise(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    noise = rng.standard_normal(max(1, n))
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(noise.shape[0], 1 / sample_rate)
    spectrum *= freqs / (freqs + 2000.0)  # fricatives: mostly high frequencies
    return np.fft.irfft(spectrum, noise.shape[0]).astype(np.float32)
