"""Accuracy on held-out VOICES, above all on voices speaking at the other gender's typical pitch.

The development corpus (../shared/corpora/make_dev_corpus.sh) has every MBROLA voice twice: as
recorded (kind `diphone`) and as a twin at the other gender's typical pitch with the same vocal
tract (kind `diphone-overlap`); espeak formant voices (`formant`) are one variant (+m1, +f2, ...)
in four languages. A *voice group* is a voice with everything that shares its vocal tract: an
MBROLA voice and its twin, or one espeak variant in all its languages. Groups are dealt into
FOLDS deterministic folds (sorted by name within kind and gender, round robin), so each fold
holds out MBROLA men and women and one espeak man and woman.

For each fold: a corpus view without any row of the held-out groups (clips symlinked; the
release's TSV lines of the other speakers kept byte for byte, blank genders stay blank), a
training run on it (train.seed = fold + --seed-offset), then clip logits on every held-out clip (all TSVs,
labelled or not) scored against truth.tsv's true_gender:

    overlap    clip accuracy, held-out diphone-overlap clips (pitch says the wrong gender)
    ordinary   clip accuracy, held-out diphone clips
    formant    clip accuracy, held-out espeak clips
    telephone  clip accuracy, all held-out clips through augment.telephone (300-3400 Hz, mu-law)
    speakers   speaker accuracy (mean logit per client_id), all held-out speakers as recorded
    in-domain  the run's own test balanced accuracy (metrics.json; speakers of the training view)

and the same for a median-F0 threshold at 165 Hz (benchmarks/heldout.py) as a baseline.

    python benchmarks/voices.py DEVCORPUS --name baseline \\
        --out outputs/voices --set train.threads=1 --set train.jobs=1 --set train.cache_dir=/tmp/expcache \\
        [--set augment.pitch_prob=0.5 --set augment.pitch_semitones=7 ...] [--folds 0,1,2]

A fold whose run folder already holds a model is scored, not retrained. Writes
OUT/NAME/voices.json (per fold and mean) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import PITCH_THRESHOLD_HZ, median_f0  # noqa: E402
from holdouts import held_out_speakers, train_once, voice_group  # noqa: E402

from cvlabel.artifacts import read_metrics  # noqa: E402
from cvlabel.augment import telephone  # noqa: E402
from cvlabel.cache import AudioCache, cache_root  # noqa: E402
from cvlabel.checkpoint import load_checkpoint  # noqa: E402
from cvlabel.config import load_config  # noqa: E402
from cvlabel.corpus import CLIP_TSVS, SPLIT_TSVS, read_tsv  # noqa: E402
from cvlabel.labels import LABELS, decide_logits  # noqa: E402
from cvlabel.scoring import clip_logits  # noqa: E402
from cvlabel.speech import Speech  # noqa: E402

FOLDS = 3
METRICS = ("overlap", "ordinary", "formant", "telephone", "speakers", "in_domain")


def read_truth(corpus: Path) -> pd.DataFrame:
    truth = read_tsv(corpus / "truth.tsv")
    truth["group"] = truth["speaker"].map(voice_group)
    return truth


def corpus_view(corpus: Path, drop_clients: set[str], out: Path) -> Path:
    """`corpus` without the rows of `drop_clients`: clips/ symlinked; each TSV's other lines kept
    exactly as in the release."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "clips").exists():
        (out / "clips").symlink_to((corpus / "clips").resolve())
    for name in CLIP_TSVS + SPLIT_TSVS:
        source = corpus / f"{name}.tsv"
        if not source.is_file():
            continue
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        column = lines[0].rstrip("\r\n").split("\t").index("client_id")
        kept = [lines[0]] + [line for line in lines[1:] if line.rstrip("\r\n").split("\t")[column] not in drop_clients]
        (out / f"{name}.tsv").write_text("".join(kept), encoding="utf-8")
    durations = corpus / "clip_durations.tsv"
    if durations.is_file() and not (out / durations.name).exists():
        (out / durations.name).symlink_to(durations.resolve())
    return out


def score(rows: pd.DataFrame, logits: np.ndarray, tele_logits: np.ndarray) -> dict:
    """Clip accuracy by kind, on the telephone channel, and speaker accuracy (mean logit)."""
    label = rows["true_gender"].map({g: i for i, g in enumerate(LABELS)}).to_numpy()
    right = decide_logits(logits) == label
    result: dict[str, Any] = {
        kind: float(right[(rows["kind"] == name).to_numpy()].mean()) if (rows["kind"] == name).any() else None
        for kind, name in (("overlap", "diphone-overlap"), ("ordinary", "diphone"), ("formant", "formant"))
    }
    result["telephone"] = float((decide_logits(tele_logits) == label).mean())
    by_speaker = pd.DataFrame({"speaker": rows["speaker"].to_numpy(), "logit": logits, "label": label})
    speakers = by_speaker.groupby("speaker").agg(logit=("logit", "mean"), label=("label", "first"))
    result["speakers"] = float((decide_logits(speakers["logit"].to_numpy()) == speakers["label"]).mean())
    result["wrong_speakers"] = sorted(speakers.index[decide_logits(speakers["logit"].to_numpy()) != speakers["label"]])
    result["clips"] = int(len(rows))
    return result


def run_fold(
    corpus: Path,
    truth: pd.DataFrame,
    fold: int,
    held: list[str],
    out: Path,
    overrides: list[str],
    config_path: Path | None,
    seed_offset: int = 0,
) -> dict:
    held_rows = truth[truth["client_id"].isin(held)].reset_index(drop=True)
    view = corpus_view(corpus, set(held_rows["client_id"]), out.parent / "views" / f"fold{fold}")
    config = load_config(config_path, [f"train.seed={fold + seed_offset}", *overrides])
    run = out / f"fold{fold}"
    train_once(view, run, config, f"fold {fold}: ")
    checkpoint = load_checkpoint(run)
    features = checkpoint.config.features
    cache = AudioCache(cache_root(config.train.cache_dir), features)
    clips = [str(corpus / "clips" / p) for p in held_rows["path"]]
    errors = cache.fill(clips, jobs=config.train.jobs or 1)
    keep = np.array([c not in errors for c in clips])
    held_rows, clips = held_rows[keep].reset_index(drop=True), [c for c, k in zip(clips, keep, strict=True) if k]
    audio = [cache.load(c) for c in clips]
    phone = [Speech(telephone(a.samples, a.rate), a.rate) for a in audio]
    logits = clip_logits(checkpoint.model, features, audio.__getitem__, len(audio)).mean(axis=1)
    tele_logits = clip_logits(checkpoint.model, features, phone.__getitem__, len(phone)).mean(axis=1)
    held_rows.assign(logit=logits, telephone_logit=tele_logits)[
        ["path", "speaker", "kind", "true_gender", "logit", "telephone_logit"]
    ].to_csv(run / "heldout_logits.tsv", sep="\t", index=False)
    result: dict[str, Any] = {
        "held_out": sorted(set(held_rows["speaker"])),
        "cnn": score(held_rows, logits, tele_logits),
    }
    result["cnn"]["in_domain"] = read_metrics(run)["balanced_accuracy"]

    pitch_file = out.parent / f"pitch-fold{fold}.json"  # the threshold does not depend on the variant
    if pitch_file.exists():
        result["pitch"] = json.loads(pitch_file.read_text())
    else:
        f0 = np.array([median_f0(a.samples, a.rate) for a in audio])
        f0_tele = np.array([median_f0(a.samples, a.rate) for a in phone])
        result["pitch"] = score(
            held_rows,
            np.nan_to_num(f0 - PITCH_THRESHOLD_HZ, nan=0.0),
            np.nan_to_num(f0_tele - PITCH_THRESHOLD_HZ, nan=0.0),
        )
        result["pitch"]["in_domain"] = None
        pitch_file.write_text(json.dumps(result["pitch"], indent=1) + "\n")
    return result


def table(results: dict[int, dict], model: str) -> pd.DataFrame:
    rows = {f"fold {fold}": {m: r[model][m] for m in METRICS} for fold, r in results.items()}
    frame = pd.DataFrame(rows).T.astype(float)
    frame.loc["mean"] = frame.mean()
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--name", required=True, help="variant name: results go to OUT/NAME")
    parser.add_argument("--out", type=Path, default=Path("outputs/voices"))
    parser.add_argument("--folds", default=",".join(str(f) for f in range(FOLDS)))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--seed-offset", type=int, default=0, help="train.seed is fold + this (replicates)")
    args = parser.parse_args()

    truth = read_truth(args.corpus)
    groups = {fold: sorted(held_out_speakers(truth, "voices", fold)) for fold in range(FOLDS)}
    out = args.out / args.name
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for fold in (int(f) for f in args.folds.split(",")):
        results[fold] = run_fold(
            args.corpus, truth, fold, groups[fold], out, args.overrides, args.config, args.seed_offset
        )
    summary = {"name": args.name, "overrides": args.overrides, "seed_offset": args.seed_offset, "folds": results}
    for model in ("cnn", "pitch"):
        frame = table(results, model)
        summary[f"mean_{model}"] = frame.loc["mean"].to_dict()
        print(f"{args.name}: {model}" + (" (median F0 > 165 Hz)" if model == "pitch" else ""))
        print(frame.to_string(float_format=lambda v: f"{v:.3f}"))
        for fold, r in results.items():
            if r[model]["wrong_speakers"]:
                print(f"  fold {fold} wrong speakers: {', '.join(r[model]['wrong_speakers'])}")
    (out / "voices.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
