"""Shared fixtures: tests make their own tiny clips and TSVs in temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvlabel.config import DemoCorpusOptions
from cvlabel.democorpus import make_demo_corpus
from cvlabel.testing import NEW_COLUMNS, tiny_train_config, write_tsv


@pytest.fixture
def tiny_release(tmp_path: Path) -> Path:
    """A release folder in the new schema mixing old and new gender vocabularies (no audio needed)."""
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    genders = ["male_masculine", "female_feminine", "male", "female", "", "do_not_wish_to_say", "non-binary", "other"]
    rows = [
        {
            "client_id": f"spk{k}",
            "path": f"clip_{k}_{j}.mp3",
            "sentence": f'sentence "{k} {j}',
            "gender": g,
            "locale": "en",
        }
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
    make_demo_corpus(
        out,
        DemoCorpusOptions(speakers_per_gender=8, clips_per_speaker=4, locales=("en", "de"), engine="formant", seed=3),
    )
    return out


@pytest.fixture(scope="session")
def trained_run(synthetic_corpus, tmp_path_factory) -> Path:
    """A tiny model trained for two epochs on the synthetic corpus (read-only)."""
    from cvlabel.config import load_config
    from cvlabel.training import train

    base = tmp_path_factory.mktemp("trained")
    run = base / "run"
    train(synthetic_corpus, run, load_config(None, tiny_train_config(base / "cache")))
    return run
