"""A small Common-Voice-shaped corpus made on the spot, so the demo and tests need no download.

Voices come from synthesis.py: espeak-ng's formant voices (+m1..+m7 male, +f1..+f5 female) when
installed, else a built-in formant synthesizer (`auto`). This module plans the speakers and rows
and writes the tables.

Writes OUT/clips/*.mp3 (mono 48 kHz), validated.tsv, other.tsv, invalidated.tsv,
clip_durations.tsv (Common Voice v17+ columns), truth.tsv (the true gender of every clip,
blank rows included) and demo_corpus.json (engine, counts, seed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from .config import DemoCorpusOptions, GenderStyle
from .corpus import TSV_HEADER_V17
from .errors import CvlabelError
from .files import write_text
from .progress import progress
from .runners import resolve_jobs
from .synthesis import Speaker, render_clip, resolve_engine

log = logging.getLogger(__name__)


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


def make_demo_corpus(
    out_dir: str | Path, options: DemoCorpusOptions = DemoCorpusOptions(), jobs: int = 1
) -> dict[str, Any]:
    """Write the corpus to out_dir (which must be empty or absent); returns the summary."""
    out_dir = Path(out_dir)
    if options.speakers_per_gender < 1 or options.clips_per_speaker < 1:
        raise CvlabelError("speakers_per_gender and clips_per_speaker must be at least 1")
    unknown = [loc for loc in options.locales if loc not in SENTENCES]
    if unknown or not options.locales:
        raise CvlabelError(f"unknown locale {unknown[0] if unknown else ''!r}; choose from {', '.join(SENTENCES)}")
    if options.gender_style not in typing.get_args(GenderStyle):
        raise CvlabelError(f"gender_style must be v16 or v17, got {options.gender_style!r}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CvlabelError(f"{out_dir} exists and is not empty; choose a new folder")
    engine = resolve_engine(options.engine)

    rng = np.random.default_rng(options.seed)
    speakers = _make_speakers(options, engine, rng)
    rows = _plan_rows(speakers, options, rng)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "clips").mkdir()
    work = [
        (row["path"], row["sentence"], speaker_of)
        for row, speaker_of in ((r, speakers[r["speaker_index"]]) for r in rows)
    ]
    seeds = rng.integers(0, 2**31, size=len(work))
    rendered = Parallel(n_jobs=resolve_jobs(jobs), return_as="generator")(
        delayed(render_clip)(out_dir / "clips" / path, text, speaker, engine, int(seed))
        for (path, text, speaker), seed in zip(work, seeds, strict=False)
    )
    durations = list(progress(iterable=rendered, total=len(work), desc="synthesizing clips", unit="clip"))
    for row, duration in zip(rows, durations, strict=False):
        row["duration_s"] = duration

    summary = _write_tables(out_dir, rows, speakers, options, engine)
    return summary


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


# ---------------------------------------------------------------- tables


def _write_tables(
    out_dir: Path, rows: list[dict], speakers: list[Speaker], options: DemoCorpusOptions, engine: str
) -> dict:
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
        part = table.loc[table["source_tsv"] == name, TSV_HEADER_V17]
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
