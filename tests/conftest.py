"""Shared fixtures: tests make their own tiny clips and TSVs in temp dirs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from cvlabel.democorpus import DemoCorpusOptions, make_demo_corpus, synthesize_formant_voice

# Old (<= v16) and new (>= v17) Common Voice TSV headers.
OLD_COLUMNS = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent", "locale", "segment"]
NEW_COLUMNS = [
    "client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
]


def write_voice(path: Path, pitch_hz: float, seconds: float = 1.0, sample_rate: int = 48_000,
                formant_scale: float | None = None, seed: int = 0, silence_s: float = 0.3) -> Path:
    """Write a voiced synthetic clip (MP3 unless the suffix says otherwise) with silence around it."""
    rng = np.random.default_rng(seed)
    scale = formant_scale if formant_scale is not None else (1.0 if pitch_hz < 160 else 1.17)
    text = "a e i o u " * max(1, int(seconds * 3))
    voiced = synthesize_formant_voice(text, pitch_hz, scale, rng, sample_rate=sample_rate)[: int(seconds * sample_rate)]
    pad = np.zeros(int(silence_s * sample_rate), dtype=np.float32)
    soundfile.write(path, np.concatenate([pad, voiced, pad]), sample_rate, format="MP3" if path.suffix == ".mp3" else None)
    return path


def write_tsv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    """A Common Voice TSV: tab-joined, no quoting, missing fields blank."""
    lines = ["\t".join(columns)] + ["\t".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_release(tmp_path: Path) -> Path:
    """A release folder in the new schema mixing old and new gender vocabularies (no audio needed)."""
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    genders = ["male_masculine", "female_feminine", "male", "female", "", "do_not_wish_to_say", "non-binary", "other"]
    rows = [
        {"client_id": f"spk{k}", "path": f"clip_{k}_{j}.mp3", "sentence": f'sentence "{k} {j}', "gender": g, "locale": "en"}
        for k, g in enumerate(genders)
        for j in range(2)
    ]
    write_tsv(corpus / "validated.tsv", NEW_COLUMNS, rows[:12])
    write_tsv(corpus / "other.tsv", NEW_COLUMNS, rows[12:])
    write_tsv(corpus / "invalidated.tsv", NEW_COLUMNS, [])
    return corpus


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """A small Common-Voice-shaped corpus of formant voices (8 speakers per gender, 4 clips each),
    built once per test session. Treat it as read-only."""
    out = tmp_path_factory.mktemp("synthetic") / "corpus"
    make_demo_corpus(out, DemoCorpusOptions(speakers_per_gender=8, clips_per_speaker=4, locales=("en", "de"),
                                            engine="formant", seed=3))
    return out


TINY_TRAIN = ["model.channels=[8, 16, 16, 16]", "model.extra_convs=0", "model.hidden=16", "train.epochs=2",
              "train.batch_size=8", "train.crop_seconds=1.0", "train.jobs=1", "train.threads=1"]


@pytest.fixture(scope="session")
def trained_run(synthetic_corpus, tmp_path_factory) -> Path:
    """A tiny model trained for two epochs on the synthetic corpus (read-only)."""
    from cvlabel.config import load_config
    from cvlabel.train import train

    base = tmp_path_factory.mktemp("trained")
    run = base / "run"
    train(synthetic_corpus, run, load_config(None, [*TINY_TRAIN, f"train.cache_dir={base / 'cache'}"]))
    return run


def copy_corpus(source: Path, target: Path) -> Path:
    """A writable copy of a corpus (clips copied, so tests may break some)."""
    import shutil

    shutil.copytree(source, target)
    return target
