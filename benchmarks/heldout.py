"""Accuracy on voices and languages the model never heard, against a plain pitch threshold.

Splits a Common-Voice-shaped corpus by locale (symlinked clips, filtered TSVs), trains on some
locales, and measures on the self-reported rows of the others: as recorded, and through a
simulated telephone channel (300-3400 Hz, 8-bit mu-law). A median-F0 threshold is the baseline
the research repo's recipe lost to on real telephone speech.

    python benchmarks/heldout.py ../shared/corpora/devcorpus --train-locales de,fr --test-locales en,es \\
        --out outputs/heldout [--set train.epochs=20 ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holdouts import train_once  # noqa: E402

from cvlabel.augment import telephone
from cvlabel.cache import AudioCache, cache_root
from cvlabel.checkpoint import load_checkpoint
from cvlabel.config import load_config
from cvlabel.corpus import CLIP_TSVS, read_tsv
from cvlabel.metrics import classification_metrics
from cvlabel.scoring import clip_logits
from cvlabel.splits import labelled_rows

PITCH_THRESHOLD_HZ = 165.0  # between typical adult male (~120 Hz) and female (~210 Hz) F0


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


def median_f0(samples: np.ndarray, rate: int = 16_000) -> float:
    """Median autocorrelation pitch of the voiced 40 ms frames, searched in 60-400 Hz."""
    frame, lo, hi = int(0.04 * rate), rate // 400, rate // 60
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--train-locales", default="de,fr")
    parser.add_argument("--test-locales", default="en,es")
    parser.add_argument("--out", type=Path, default=Path("outputs/heldout"))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    config = load_config(args.config, args.overrides)
    train_corpus = locale_subset(args.corpus, args.train_locales.split(","), args.out / "corpus-train")
    test_corpus = locale_subset(args.corpus, args.test_locales.split(","), args.out / "corpus-test")
    run = args.out / "run"
    train_once(train_corpus, run, config)
    checkpoint = load_checkpoint(run)
    features = checkpoint.config.features
    rows = labelled_rows(test_corpus, checkpoint.config.splits, "all")
    cache = AudioCache(cache_root(config.train.cache_dir), features)
    errors = cache.fill(rows["clip"].tolist(), jobs=2)
    rows = rows[~rows["clip"].isin(errors)].reset_index(drop=True)
    audio = [cache.load(c) for c in rows["clip"]]
    labels, speakers = rows["label"].to_numpy(), rows["client_id"].to_numpy()

    results = {}
    for condition, clips in (
        ("as recorded", audio),
        ("telephone", [telephone(a, features.sample_rate) for a in audio]),
    ):
        logits = clip_logits(checkpoint.model, features, clips.__getitem__, len(clips)).mean(axis=1)
        results[f"cnn, {condition}"] = classification_metrics(labels, logits, checkpoint.temperature, speakers)
        f0 = np.array([median_f0(a) for a in clips])
        pitch_logits = np.nan_to_num(f0 - PITCH_THRESHOLD_HZ, nan=0.0) / 20.0
        results[f"pitch {PITCH_THRESHOLD_HZ:.0f} Hz, {condition}"] = classification_metrics(
            labels, pitch_logits, 1.0, speakers
        )
    table = pd.DataFrame(results).T[
        ["clips", "speakers", "balanced_accuracy", "accuracy", "roc_auc", "ece", "speaker_accuracy"]
    ]
    print(f"train locales {args.train_locales}; test locales {args.test_locales} (self-reported rows only)")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    (args.out / "heldout.json").write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
