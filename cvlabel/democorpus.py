"""A small Common-Voice-shaped corpus made on the spot, so the demo and tests need no download.

Two engines, both free:
  espeak   Debian's espeak-ng formant voices (+m1..+m7 male, +f1..+f5 female), when installed
  formant  a built-in numpy source-filter synthesizer: a glottal pulse train at the speaker's
           pitch shaped by vowel formants scaled to the speaker's vocal tract
`auto` uses espeak when the `espeak-ng` binary is on PATH, else formant.

Writes OUT/clips/*.mp3 (mono 48 kHz), validated.tsv, other.tsv, invalidated.tsv,
clip_durations.tsv (Common Voice v17+ columns), truth.tsv (the true gender of every clip,
blank rows included) and demo_corpus.json (engine, counts, seed).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
import soxr
from joblib import Parallel, delayed
from tqdm import tqdm

from .errors import CvlabelError
from .files import write_text

log = logging.getLogger(__name__)

CLIP_RATE = 48_000  # Hz: Common Voice's usual MP3 rate
SYNTH_RATE = 16_000  # Hz: the formant synthesizer's working rate
ENGINES = ("auto", "espeak", "formant")

# Short sentences per locale; some carry an unbalanced quote, as real Common Voice TSVs do.
SENTENCES = {
    "en": [
        "The old boat drifted slowly toward the harbour.",
        "Please bring the blue folder to the meeting.",
        'He said "wait here and left without a word.',
        "Every morning she walks along the river.",
        "The children painted the fence bright yellow.",
        "We found a small cafe near the station.",
        "My brother plays the violin on Sundays.",
        "Rain is expected over the hills tonight.",
    ],
    "de": [
        "Der Zug nach Berlin hat heute Verspätung.",
        "Meine Schwester wohnt in einem kleinen Dorf.",
        'Er rief "kommt schnell und lief davon.',
        "Im Sommer gehen wir oft an den See.",
        "Das Buch liegt auf dem Tisch im Flur.",
        "Morgen früh beginnt der neue Kurs.",
        "Die Katze schläft gern in der Sonne.",
        "Wir kaufen Brot beim Bäcker an der Ecke.",
    ],
    "fr": [
        "Le marché ouvre tôt le samedi matin.",
        "Ma voisine cultive des tomates sur son balcon.",
        'Il a dit "attends-moi et il est parti.',
        "Nous prenons le train pour aller à Lyon.",
        "La bibliothèque ferme à six heures du soir.",
        "Les enfants jouent dans le jardin public.",
        "Le café de la place est toujours plein.",
        "Il pleut souvent en automne dans cette région.",
    ],
    "es": [
        "El autobús llega a las ocho de la mañana.",
        "Mi abuela prepara una sopa muy rica.",
        'Ella gritó "ven aquí y cerró la puerta.',
        "Los niños juegan al fútbol en el parque.",
        "La tienda de la esquina vende fruta fresca.",
        "Mañana vamos a visitar el museo.",
        "El río pasa cerca de nuestra casa.",
        "Siempre leo un libro antes de dormir.",
    ],
}
ESPEAK_VARIANTS = {"male": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"], "female": ["f1", "f2", "f3", "f4", "f5"]}

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


@dataclass(frozen=True)
class DemoCorpusOptions:
    speakers_per_gender: int = 16  # at least 8, so every split holds several of each
    clips_per_speaker: int = 12  # clips each speaker records
    locales: tuple[str, ...] = ("en", "de", "fr", "es")  # speakers are spread over these
    engine: str = "auto"  # auto | espeak | formant
    gender_style: str = "v17"  # v17 (male_masculine, ...) or v16 (male, female, other)
    blank_speaker_share: float = 0.25  # speakers who never state a gender (their rows are all blank)
    blank_row_share: float = 0.05  # extra rows blanked among speakers who do state it
    seed: int = 0  # the whole corpus is a function of the options


def resolve_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise CvlabelError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "auto":
        return "espeak" if shutil.which("espeak-ng") else "formant"
    if engine == "espeak" and not shutil.which("espeak-ng"):
        raise CvlabelError("engine 'espeak' needs the espeak-ng program (Debian: apt-get install espeak-ng)")
    return engine


def make_demo_corpus(out_dir: str | Path, options: DemoCorpusOptions = DemoCorpusOptions(), jobs: int = 1) -> dict:
    """Write the corpus to out_dir (which must be empty or absent); returns the summary."""
    out_dir = Path(out_dir)
    if options.speakers_per_gender < 1 or options.clips_per_speaker < 1:
        raise CvlabelError("speakers_per_gender and clips_per_speaker must be at least 1")
    unknown = [loc for loc in options.locales if loc not in SENTENCES]
    if unknown or not options.locales:
        raise CvlabelError(f"unknown locale {unknown[0] if unknown else ''!r}; choose from {', '.join(SENTENCES)}")
    if options.gender_style not in ("v16", "v17"):
        raise CvlabelError(f"gender_style must be v16 or v17, got {options.gender_style!r}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CvlabelError(f"{out_dir} exists and is not empty; choose a new folder")
    engine = resolve_engine(options.engine)

    rng = np.random.default_rng(options.seed)
    speakers = _make_speakers(options, engine, rng)
    rows = _plan_rows(speakers, options, rng)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "clips").mkdir()
    work = [(row["path"], row["sentence"], speaker_of) for row, speaker_of in
            ((r, speakers[r["speaker_index"]]) for r in rows)]
    seeds = rng.integers(0, 2**31, size=len(work))
    rendered = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_render_clip)(out_dir / "clips" / path, text, speaker, engine, int(seed))
        for (path, text, speaker), seed in zip(work, seeds)
    )
    durations = list(tqdm(rendered, total=len(work), desc="synthesizing clips", unit="clip"))
    for row, duration in zip(rows, durations):
        row["duration_s"] = duration

    summary = _write_tables(out_dir, rows, speakers, options, engine)
    return summary


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


# ---------------------------------------------------------------- planning


def _make_speakers(options: DemoCorpusOptions, engine: str, rng: np.random.Generator) -> list[Speaker]:
    speakers = []
    for gender in ("male", "female"):
        for k in range(options.speakers_per_gender):
            locale = options.locales[k % len(options.locales)]
            variants = ESPEAK_VARIANTS[gender]
            variant = variants[k % len(variants)]
            client_id = hashlib.sha512(f"{options.seed}:{gender}:{k}".encode()).hexdigest()
            speakers.append(
                Speaker(
                    client_id=client_id,
                    gender=gender,
                    locale=locale,
                    voice=f"{locale}+{variant}" if engine == "espeak" else "formant",
                    pitch_hz=float(rng.uniform(95, 140) if gender == "male" else rng.uniform(175, 240)),
                    formant_scale=float(rng.uniform(0.95, 1.05) * (1.0 if gender == "male" else 1.17)),
                    espeak_pitch=int(rng.integers(35, 66)),
                    espeak_speed=int(rng.integers(140, 181)),
                )
            )
    return speakers


def _plan_rows(speakers: list[Speaker], options: DemoCorpusOptions, rng: np.random.Generator) -> list[dict]:
    blank_speakers: set[int] = set()
    for gender in ("male", "female"):  # the same share of each gender hides its gender
        ids = [i for i, s in enumerate(speakers) if s.gender == gender]
        n_blank = round(len(ids) * options.blank_speaker_share)
        blank_speakers.update(rng.choice(ids, size=n_blank, replace=False).tolist())
    # one stating speaker of each kind that must never be pseudo-labeled: an opt-out and an "other"
    stating = [i for i in range(len(speakers)) if i not in blank_speakers]
    declined = stating[0] if stating else None
    other = stating[-1] if len(stating) > 1 else None
    rows = []
    clip_number = 19_000_000 + int(rng.integers(0, 100_000))
    for index, speaker in enumerate(speakers):
        sentences = SENTENCES[speaker.locale]
        for take in range(options.clips_per_speaker):
            clip_number += 1
            if index in blank_speakers or rng.random() < options.blank_row_share:
                stated = ""
            elif index == declined:
                stated = "do_not_wish_to_say" if options.gender_style == "v17" else ""
            elif index == other:
                stated = "non-binary" if options.gender_style == "v17" else "other"
            else:
                stated = _gender_string(speaker.gender, options.gender_style)
            draw = rng.random()
            source_tsv = "invalidated" if draw < 0.03 else "other" if draw < 0.08 else "validated"
            rows.append(
                {
                    "client_id": speaker.client_id,
                    "path": f"common_voice_{speaker.locale}_{clip_number}.mp3",
                    "sentence": sentences[(take + index) % len(sentences)],
                    "gender": stated,
                    "true_gender": speaker.gender,
                    "locale": speaker.locale,
                    "source_tsv": source_tsv,
                    "speaker_index": index,
                    "voice": speaker.voice,
                }
            )
    return rows


def _gender_string(gender: str, style: str) -> str:
    if style == "v17":
        return {"male": "male_masculine", "female": "female_feminine"}[gender]
    return gender


# ---------------------------------------------------------------- rendering


def _render_clip(path: Path, text: str, speaker: Speaker, engine: str, seed: int) -> float:
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
            ["espeak-ng", "-v", speaker.voice, "-p", str(speaker.espeak_pitch), "-s", str(speaker.espeak_speed),
             "-w", wav, "--", text],
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
    for formant, bandwidth in zip(VOWEL_FORMANTS[vowel], FORMANT_BANDWIDTHS):
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


# ---------------------------------------------------------------- tables


TSV_COLUMNS = [
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
]


def _write_tables(out_dir: Path, rows: list[dict], speakers: list[Speaker], options: DemoCorpusOptions,
                  engine: str) -> dict:
    table = pd.DataFrame(rows)
    table["sentence_id"] = table["sentence"].map(lambda s: hashlib.sha256(s.encode()).hexdigest())
    table["sentence_domain"] = ""
    table["up_votes"] = np.where(table["source_tsv"] == "invalidated", 0, 2)
    table["down_votes"] = np.where(table["source_tsv"] == "invalidated", 2, 0)
    table["age"] = ""
    table["accents"] = ""
    table["variant"] = ""
    table["segment"] = ""
    for name in ("validated", "other", "invalidated"):
        part = table.loc[table["source_tsv"] == name, TSV_COLUMNS]
        _write_tsv(part, out_dir / f"{name}.tsv")
    durations = pd.DataFrame({"clip": table["path"], "duration[ms]": (table["duration_s"] * 1000).round().astype(int)})
    _write_tsv(durations, out_dir / "clip_durations.tsv")
    truth = table[["path", "client_id", "true_gender", "gender", "locale", "voice", "source_tsv", "duration_s"]]
    _write_tsv(truth.rename(columns={"gender": "gender_in_tsv"}), out_dir / "truth.tsv")

    summary = {
        "engine": engine,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()},
        "clips": len(table),
        "speakers": len(speakers),
        "speakers_by_gender": {g: int(sum(s.gender == g for s in speakers)) for g in ("male", "female")},
        "blank_gender_rows": int((table["gender"] == "").sum()),
        "blank_gender_speakers": int(table.groupby("client_id")["gender"].agg(lambda g: (g == "").all()).sum()),
        "rows_by_tsv": {k: int(v) for k, v in table["source_tsv"].value_counts().items()},
        "minutes": round(float(table["duration_s"].sum()) / 60, 1),
    }
    (out_dir / "demo_corpus.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    # plain tab-joined lines, no quoting: the sentences keep their stray quotes, as in Common Voice
    lines = ["\t".join(frame.columns)] + ["\t".join(map(str, values)) for values in frame.itertuples(index=False)]
    write_text(path, "\n".join(lines) + "\n")
