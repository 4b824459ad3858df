"""Where a realcv run's errors are, aggregated: by native rate, against the pitch threshold, and
whether the median F0 adds to the committee's logit.

Reads the runs of `benchmarks/heldout.py --corpus ../shared/corpora/realcv --holdout speakers` (the
same --out); for each seed, scores the blanked speakers' clips with the run's committee and a
median-F0 threshold at 165 Hz. A fusion of the two (a logistic regression on the committee's logit
and the F0, classes weighted equally) is fitted on the run's own reference (train speakers predicted
out of fold, and dev) and scored on the blanked speakers. Aggregates only (no per-speaker rows):

    python benchmarks/realcv_errors.py --corpus ../shared/corpora/realcv --out outputs/trust-realcv --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import PITCH_THRESHOLD_HZ, median_f0  # noqa: E402
from holdouts import held_out_speakers, seed_folder  # noqa: E402

from cvlabel.artifacts import RunFolder, read_reference
from cvlabel.cache import AudioCache, cache_root
from cvlabel.checkpoint import load_checkpoint
from cvlabel.corpus import read_tsv
from cvlabel.labels import label_index
from cvlabel.metrics import classification_metrics
from cvlabel.scoring import clip_logits

NEWTON_STEPS = 50  # of the fusion's logistic regression (converges in ~10)


def scored(run: Path, clips: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decoded, committee logit, median F0) of clips; the last two for the decoded ones only."""
    checkpoint = load_checkpoint(run)
    features = checkpoint.config.features
    cache = AudioCache(cache_root(checkpoint.config.train.cache_dir), features)
    errors = cache.fill(clips, jobs=2)
    decoded = np.array([clip not in errors for clip in clips])
    speech = [cache.load(clip) for clip, ok in zip(clips, decoded, strict=True) if ok]
    logits = clip_logits(checkpoint.model, features, speech.__getitem__, len(speech)).mean(axis=1)
    f0 = np.array([median_f0(s.samples, s.rate) for s in speech])
    return decoded, logits, f0


def fusion_inputs(logits: np.ndarray, f0: np.ndarray) -> np.ndarray:
    return np.stack(
        [logits, (np.nan_to_num(f0, nan=PITCH_THRESHOLD_HZ) - PITCH_THRESHOLD_HZ) / 20, np.ones_like(f0)], 1
    )


def fit_fusion(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Weights of a class-balanced logistic regression, by Newton's method."""
    target = labels.astype(float)
    weight = np.where(target == 1, 0.5 / target.mean(), 0.5 / (1 - target.mean()))
    w = np.zeros(inputs.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-inputs @ w))
        hessian = (inputs * (weight * p * (1 - p))[:, None]).T @ inputs + 1e-6 * np.eye(inputs.shape[1])
        w -= np.linalg.solve(hessian, inputs.T @ (weight * (p - target)))
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="heldout.py's --out")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    truth = read_tsv(args.corpus / "truth.tsv")
    for seed in [int(s) for s in args.seeds.split(",")]:
        work = seed_folder(args.out, "speakers", seed)
        run = RunFolder(work / "run")
        reference = read_reference(run.reference)
        reference = reference[reference["split"].isin(["train", "dev"])]
        ok, _, reference_f0 = scored(run.path, [str(work / "corpus" / "clips" / p) for p in reference["path"]])
        reference = reference[ok]
        weights = fit_fusion(
            fusion_inputs(reference["logit"].to_numpy(), reference_f0), label_index(reference["gender"].to_numpy())
        )
        rows = truth[truth["client_id"].isin(held_out_speakers(truth, "speakers", seed))].reset_index(drop=True)
        ok, logits, f0 = scored(run.path, [str(args.corpus / "clips" / p) for p in rows["path"]])
        rows = rows[ok].reset_index(drop=True)
        labels, speakers = label_index(rows["true_gender"].to_numpy()), rows["client_id"].to_numpy()
        pitch = fusion_inputs(logits, f0)[:, 1]
        table = {
            name: classification_metrics(labels, value, 1.0, speakers)
            for name, value in (
                ("committee", logits),
                ("pitch", pitch),
                ("fusion", fusion_inputs(logits, f0) @ weights),
            )
        }
        cnn_wrong, pitch_wrong = (logits > 0) != labels, (pitch > 0) != labels
        by_rate = pd.Series(cnn_wrong).groupby(rows["orig_sr"]).agg(["mean", "size"])
        print(f"seed {seed}: {len(rows)} clips of {len(set(speakers))} blanked speakers")
        for name, metrics in table.items():
            print(
                f"  {name:9s} balanced {metrics['balanced_accuracy']:.4f}  female recall {metrics['recall_female']:.4f}"
            )
        print(
            f"  committee errors also wrong by pitch: {int((cnn_wrong & pitch_wrong).sum())} of {int(cnn_wrong.sum())}"
        )
        print("  committee clip error by native rate: " + ", ".join(
            f"{rate} Hz {row['mean']:.3f} ({int(row['size'])} clips)" for rate, row in by_rate.iterrows()))  # fmt: skip


if __name__ == "__main__":
    main()
