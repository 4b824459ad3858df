"""Which speakers a benchmark blanks, and the corpus view it trains on (trust.py, heldout.py, voices.py).

Two kinds of corpus, told apart by truth.tsv's `label_basis`:

- the synthetic development corpus (../shared/corpora/make_dev_corpus.sh; `package`): every
  speaker's gender is known. Holdouts `voices` (one fold of the voice groups: a voice with its
  pitch-moved twin, an espeak variant in all its languages) and `language` (every speaker of one
  locale).
- real Common Voice (/work/shared/corpora/realcv; `self-reported` or `unknown`): a speaker's own
  answer is the only truth, and the speakers who never answered have none. Holdouts `speakers` (a
  third of each gender's self-reported male/female speakers) and `locale` (one of five sets of
  whole locales, about a fifth of those speakers each). Only self-reported male/female speakers are
  ever blanked: a speaker who answered `other` keeps their rows as they are (an opt-out, never
  pseudo-labelled), and the blank speakers stay blank and are never scored.

A blanked speaker loses the gender of every row, in every locale: the model never hears them.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from cvlabel.artifacts import RunFolder
from cvlabel.config import Config, config_to_dict, load_config
from cvlabel.corpus import CLIP_TSVS, SPLIT_TSVS
from cvlabel.labels import BINARY_GENDERS
from cvlabel.training import train

SYNTHETIC_HOLDOUTS = ("voices", "language")
REAL_HOLDOUTS = ("speakers", "locale")
VOICE_FOLDS = 3  # voices: seed s blanks voice-group fold s % 3
LOCALES = ("en", "de", "fr", "es")  # language: seed s blanks every speaker of LOCALES[s % 4]
SPEAKER_FOLDS = 3  # speakers: seed s blanks a third of each gender's speakers (folds dealt anew every 3 seeds)
LOCALE_FOLDS = 5  # locale: seed s blanks locale fold s % 5, about a fifth of the speakers
SELF_REPORTED = "self-reported"  # truth.tsv's label_basis of a real speaker's own answer


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpus (positionally or as --corpus), --config and --set: what every holdout script takes."""
    parser.add_argument("corpus", type=Path, nargs="?", help="a Common-Voice-shaped folder with truth.tsv")
    parser.add_argument("--corpus", dest="corpus_option", type=Path, help="the same, as an option")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])


def parse_common(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Path]:
    """The parsed arguments and the corpus folder, or the parser's error when none was given."""
    args = parser.parse_args()
    corpus = args.corpus or args.corpus_option
    if corpus is None:
        parser.error("give the corpus folder (positionally or as --corpus)")
    return args, corpus


def is_real(truth: pd.DataFrame) -> bool:
    """Whether truth.tsv is real Common Voice's (speakers' own answers) rather than the synthetic corpus's."""
    return SELF_REPORTED in set(truth["label_basis"])


def resolve_holdout(truth: pd.DataFrame, holdout: str | None) -> str:
    """The holdout to run: the corpus's default when none is asked for; one of another corpus's is refused."""
    real = is_real(truth)
    allowed = REAL_HOLDOUTS if real else SYNTHETIC_HOLDOUTS
    if holdout is None:
        return allowed[0]
    if holdout not in allowed:
        kind = "real Common Voice (truth.tsv says self-reported)" if real else "the synthetic development corpus"
        raise SystemExit(f"--holdout {holdout} is not a holdout of {kind}; choose {' or '.join(allowed)}")
    return holdout


def scored_speakers(truth: pd.DataFrame) -> pd.Series:
    """client_id -> gender of the speakers whose gender is known to be male or female: every speaker of
    the synthetic corpus, the self-reported male/female speakers of a real one."""
    known = truth["true_gender"].isin(BINARY_GENDERS)
    if is_real(truth):
        known &= truth["label_basis"] == SELF_REPORTED
    return truth[known].groupby("client_id")["true_gender"].first()


def voice_group(speaker: str) -> str:
    """What shares a vocal tract: `mbrola:de1` and `mbrola:de1-overlap` -> `mbrola:de1`;
    `espeak:en+m1` and `espeak:fr+m1` -> `espeak:+m1`."""
    source, _, name = speaker.partition(":")
    if source == "mbrola":
        return f"mbrola:{name.removesuffix('-overlap')}"
    if source == "espeak":
        return f"espeak:+{name.partition('+')[2]}"
    return speaker


def locale_folds(truth: pd.DataFrame) -> list[list[str]]:
    """The locales dealt into LOCALE_FOLDS sets of about equal self-reported male/female speakers:
    largest first, each to the set with the fewest so far (realcv: fr, 23% of them, is a set alone)."""
    speakers = truth[truth["client_id"].isin(scored_speakers(truth).index)].groupby("locale")["client_id"].nunique()
    folds: list[list[str]] = [[] for _ in range(LOCALE_FOLDS)]
    load = [0] * LOCALE_FOLDS
    for locale in sorted(speakers.index, key=lambda name: (-speakers[name], name)):
        fold = min(range(LOCALE_FOLDS), key=lambda k: (load[k], k))
        folds[fold].append(locale)
        load[fold] += int(speakers[locale])
    return folds


def held_out_speakers(truth: pd.DataFrame, holdout: str, seed: int) -> set[str]:
    """The client_ids a seed blanks (see the module docstring). `voices` needs truth's `group`
    column (voice_group of `speaker`)."""
    if holdout == "language":
        return set(truth.loc[truth["locale"] == LOCALES[seed % len(LOCALES)], "client_id"])
    if holdout == "voices":
        # within each source and gender, groups sorted by name are dealt round robin, so every fold
        # holds both genders of both sources
        groups = truth.groupby("group")[["source", "true_gender"]].first().reset_index().sort_values("group")
        chosen = []
        for _, part in groups.groupby(["source", "true_gender"], sort=True):
            chosen += [g for index, g in enumerate(part["group"]) if index % VOICE_FOLDS == seed % VOICE_FOLDS]
        return set(truth.loc[truth["group"].isin(chosen), "client_id"])
    genders = scored_speakers(truth)
    if holdout == "locale":
        locales = locale_folds(truth)[seed % LOCALE_FOLDS]
        return set(truth.loc[truth["locale"].isin(locales), "client_id"]) & set(genders.index)
    if holdout == "speakers":
        held: set[str] = set()
        deal = seed // SPEAKER_FOLDS  # seeds 0-2 split the speakers one way, 3-5 another, ...
        for gender in BINARY_GENDERS:
            ids = sorted(genders.index[genders == gender], key=lambda cid: stable_rank(deal, cid))
            held.update(cid for index, cid in enumerate(ids) if index % SPEAKER_FOLDS == seed % SPEAKER_FOLDS)
        return held
    raise ValueError(f"unknown holdout {holdout!r}")


def held_out_locales(truth: pd.DataFrame, holdout: str, seed: int) -> list[str]:
    """The locales a seed blanks whole (none for the speaker and voice holdouts)."""
    if holdout == "language":
        return [LOCALES[seed % len(LOCALES)]]
    if holdout == "locale":
        return locale_folds(truth)[seed % LOCALE_FOLDS]
    return []


def seed_folder(out: Path, holdout: str, seed: int) -> Path:
    """One seed's work folder (corpus/, run/, pred/, aug/): trust.py and heldout.py given the same
    --out share the trained runs."""
    return out / f"{holdout}-seed{seed}"


def blanked_view(corpus: Path, blank: set[str], out: Path) -> Path:
    """`corpus` with an empty gender on every row of `blank`: clips/ symlinked, every other byte kept."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "clips").exists():
        (out / "clips").symlink_to((corpus / "clips").resolve())
    for name in (*CLIP_TSVS, *SPLIT_TSVS, "clip_durations"):
        source = corpus / f"{name}.tsv"
        if not source.is_file():
            continue
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        header = lines[0].rstrip("\r\n").split("\t")
        if "gender" in header and "client_id" in header:
            who, gender = header.index("client_id"), header.index("gender")
            for k in range(1, len(lines)):
                fields = lines[k].rstrip("\r\n").split("\t")
                if fields[who] in blank:
                    fields[gender] = ""
                    lines[k] = "\t".join(fields) + "\n"
        (out / f"{name}.tsv").write_text("".join(lines), encoding="utf-8")
    return out


def train_once(corpus: Path, run: Path, config: Config, label: str = "") -> None:
    """Train `run` on `corpus` unless it holds a finished model: a re-run of a benchmark reuses it.
    A finished run trained with other settings is refused, not reused (a smoke test's run must not
    stand in for the real one)."""
    if RunFolder(run).model.exists():
        differ = _different_settings(load_config(RunFolder(run).config), config)
        if differ:
            raise SystemExit(
                f"{run} was trained with other settings ({', '.join(differ)}): pass another --out, or delete it"
            )
        return
    shutil.rmtree(run, ignore_errors=True)  # an unfinished run of an earlier, killed benchmark
    started = time.time()
    train(corpus, run, config)
    print(f"{label}trained in {time.time() - started:.0f} s", file=sys.stderr)


def _different_settings(saved: Config, wanted: Config) -> list[str]:
    """`section.key=saved value` for every setting that differs, where and in how many processes aside."""

    def what(config: Config) -> dict[str, Any]:
        # the cache's place and the process counts do not change what is trained
        return config_to_dict(replace(config, train=replace(config.train, cache_dir="", jobs=0, threads=0)))

    a, b = what(saved), what(wanted)
    return [f"{s}.{k}={a[s][k]}" for s in a for k in a[s] if a[s][k] != b.get(s, {}).get(k)]


def stable_rank(seed: int, key: str) -> str:
    """A sort key that deals `key`s in an order fixed by `seed` (the same on every machine and run)."""
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()
