"""Accuracy on speakers and languages the model never heard, against a plain pitch threshold.

Trains on a corpus some speakers are held out of and measures the committee on their self-reported
rows: as recorded, and through a simulated telephone channel (300-3400 Hz, 8-bit mu-law). A
median-F0 threshold at 165 Hz on the same clips (the audio the model hears) is the baseline the
research repo's recipe lost to on real telephone speech. Columns: balanced clip accuracy, clip
accuracy, ROC AUC, female recall, ECE after calibration, speaker accuracy (mean logit a speaker).

The synthetic corpus (../shared/corpora/make_dev_corpus.sh): split by locale (symlinked clips,
filtered TSVs), trained on some locales, measured on the others:

    python benchmarks/heldout.py ../shared/corpora/devcorpus --train-locales de,fr --test-locales en,es \\
        --out outputs/heldout [--set train.epochs=20 ...]

Real Common Voice (truth.tsv's label_basis `self-reported`, detected): each seed blanks the
speakers of holdouts.py (`--holdout speakers`, the default: a third of each gender's self-reported
male/female speakers; `--holdout locale`: whole locales, about a fifth of those speakers), trains
on the rest (blank speakers and `other` answers as they are), and measures on the blanked
speakers' rows only. The views, runs and seeds are trust.py's: the same --out reuses its runs. A
smoke test with the second line:

    nice -n 19 python benchmarks/heldout.py --corpus /work/shared/corpora/realcv --out outputs/trust-realcv \\
        [--holdout speakers|locale] [--seeds 0,1,2]
    nice -n 19 python benchmarks/heldout.py --corpus /work/shared/corpora/realcv --out outputs/smoke-trust \\
        --seeds 0 --set train.epochs=3 --set train.folds=2

Prints the table(s); writes OUT/heldout.json (synthetic) or OUT/heldout-HOLDOUT.json (per seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holdouts import (  # noqa: E402
    REAL_HOLDOUTS,
    add_common_arguments,
    blanked_view,
    held_out_locales,
    held_out_speakers,
    is_real,
    parse_common,
    resolve_holdout,
    seed_folder,
    train_once,
)

from cvlabel.augment import telephone
from cvlabel.cache import AudioCache, cache_root
from cvlabel.checkpoint import load_checkpoint
from cvlabel.config import load_config
from cvlabel.corpus import CLIP_TSVS, read_tsv
from cvlabel.labels import label_index
from cvlabel.metrics import classification_metrics
from cvlabel.scoring import clip_logits
from cvlabel.speech import Speech
from cvlabel.splits import labelled_rows

PITCH_THRESHOLD_HZ = 165.0  # between typical adult male (~120 Hz) and female (~210 Hz) F0
COLUMNS = ["clips", "speakers", "balanced_accuracy", "accuracy", "roc_auc", "recall_female", "ece", "speaker_accuracy"]


def locale_subset(corpus: Path, locales: list[str], out: Path) -> Path:
    """A corpus folder holding only the rows of `locales` (clips symlinked, not copied)."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "clips").exists():
        (out / "clips").symlink_to((corpus / "clips").resolve())
    for name in CLIP_TSVS:
        if (corpus / f"{name}.tsv").is_file():
            table = read_tsv(corpus / f"{name}.tsv")
            table = table[table["locale"].isin(locales)]
            table.to_csv(out / f"{name}.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")
    return out


def median_f0(samples: np.ndarray, rate: float) -> float:
    """Median autocorrelation pitch of the voiced 40 ms frames, searched in 60-400 Hz; `rate` is the
    samples' rate (a cached clip's own: speech.Speech)."""
    frame, lo, hi = int(0.04 * rate), int(rate // 400), int(rate // 60)
    loudest = np.sqrt(np.mean(samples**2)) + 1e-9
    estimates = []
    for start in range(0, samples.shape[0] - frame, frame // 2):
        x = samples[start : start + frame] - samples[start : start + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.3 * loudest:
            continue
        ac = np.correlate(x, x, mode="full")[frame - 1 :]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.3:  # clearly periodic: voiced
            estimates.append(rate / lag)
    return float(np.median(estimates)) if estimates else float("nan")


def evaluate(run: Path, rows: pd.DataFrame, cache_dir: str) -> dict[str, dict[str, Any]]:
    """The run's committee and the pitch threshold on `rows` (`clip`, `label`, `client_id`), as
    recorded and through a telephone channel: classification_metrics of each."""
    checkpoint = load_checkpoint(run)
    features = checkpoint.config.features
    cache = AudioCache(cache_root(cache_dir), features)
    errors = cache.fill(rows["clip"].tolist(), jobs=2)
    rows = rows[~rows["clip"].isin(errors)].reset_index(drop=True)
    audio = [cache.load(c) for c in rows["clip"]]
    labels, speakers = rows["label"].to_numpy(), rows["client_id"].to_numpy()
    results = {}
    for condition, clips in (
        ("as recorded", audio),
        ("telephone", [Speech(telephone(a.samples, a.rate), a.rate) for a in audio]),
    ):
        logits = clip_logits(checkpoint.model, features, clips.__getitem__, len(clips)).mean(axis=1)
        model = f"{checkpoint.config.model.kind}, {condition}"  # cnn or encoder
        results[model] = classification_metrics(labels, logits, checkpoint.temperature, speakers)
        f0 = np.array([median_f0(a.samples, a.rate) for a in clips])  # each clip at its decoded rate
        pitch_logits = np.nan_to_num(f0 - PITCH_THRESHOLD_HZ, nan=0.0) / 20.0
        results[f"pitch {PITCH_THRESHOLD_HZ:.0f} Hz, {condition}"] = classification_metrics(
            labels, pitch_logits, 1.0, speakers
        )
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    return pd.DataFrame(results).T[COLUMNS].to_string(float_format=lambda v: f"{v:.4f}")


def synthetic(args: argparse.Namespace, corpus: Path) -> None:
    """Train on --train-locales, measure on the self-reported rows of --test-locales."""
    config = load_config(args.config, args.overrides)
    train_corpus = locale_subset(corpus, args.train_locales.split(","), args.out / "corpus-train")
    test_corpus = locale_subset(corpus, args.test_locales.split(","), args.out / "corpus-test")
    run = args.out / "run"
    train_once(train_corpus, run, config)
    rows = labelled_rows(test_corpus, load_checkpoint(run).config.splits, "all")
    results = evaluate(run, rows, config.train.cache_dir)
    print(f"train locales {args.train_locales}; test locales {args.test_locales} (self-reported rows only)")
    print(table(results))
    (args.out / "heldout.json").write_text(json.dumps(results, indent=1, default=str) + "\n")


def real(args: argparse.Namespace, corpus: Path, truth: pd.DataFrame, holdout: str) -> None:
    """Per seed: blank holdouts.py's speakers, train on the view, measure on the blanked speakers' rows."""
    report: dict[int, dict[str, Any]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        work = seed_folder(args.out, holdout, seed)
        held = held_out_speakers(truth, holdout, seed)
        view = blanked_view(corpus, held, work / "corpus")
        config = load_config(args.config, [*args.overrides, f"train.seed={seed}"])  # as trust.py: runs shared
        train_once(view, work / "run", config, f"seed {seed}: ")
        rows = truth[truth["client_id"].isin(held)].reset_index(drop=True)
        rows["clip"] = [str(corpus / "clips" / p) for p in rows["path"]]
        rows["label"] = label_index(rows["true_gender"])
        report[seed] = evaluate(work / "run", rows, config.train.cache_dir)
        locales = held_out_locales(truth, holdout, seed)
        where = f" (locales {', '.join(locales)})" if locales else ""
        print(f"holdout {holdout}, seed {seed}: {len(held)} self-reported speakers blanked{where}")
        print(table(report[seed]))
    if len(report) > 1:
        print(f"holdout {holdout}: mean of seeds {args.seeds}")
        mean = {name: {c: float(np.mean([r[name][c] for r in report.values()])) for c in COLUMNS} for name in
                next(iter(report.values()))}  # fmt: skip
        print(table(mean))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"heldout-{holdout}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--train-locales", default="de,fr", help="synthetic corpus")
    parser.add_argument("--test-locales", default="en,es", help="synthetic corpus")
    parser.add_argument("--holdout", choices=REAL_HOLDOUTS, help="real Common Voice [default: speakers]")
    parser.add_argument("--seeds", default="0", help="real Common Voice: holdout folds, and train.seed of each")
    parser.add_argument("--out", type=Path, default=Path("outputs/heldout"))
    args, corpus = parse_common(parser)
    truth = read_tsv(corpus / "truth.tsv") if (corpus / "truth.tsv").is_file() else None
    if truth is not None and is_real(truth):
        real(args, corpus, truth, resolve_holdout(truth, args.holdout))
    elif args.holdout:
        parser.error("--holdout is for real Common Voice (a truth.tsv of self-reported answers)")
    else:
        synthetic(args, corpus)


if __name__ == "__main__":
    main()
