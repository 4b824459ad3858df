"""From scratch, fine-tuned from a base model, or the base model alone: which a small release should use.

Real Common Voice only (truth.tsv of self-reported answers). Each seed s is a release the base model
never heard: the locales of holdouts.py's locale fold s (about a fifth of the self-reported speakers).

- The base model of seed s is heldout.py's `--holdout locale` run of seed s (trained on every other
  locale; the same --bases folder reuses it, or it is trained here).
- The release: only those locales' rows. Half of its self-reported male/female speakers (of each
  gender) are blanked for measuring; of the other half, `--sizes` says how many keep their answers
  (`all`, or N: the first N by a hash, each gender in its share; the rest are blanked too, so they
  are only blank speakers of the release).
- On that release: `base` (no training), `scratch` (cvlabel train, defaults), `fine-tune`
  (`--init` the base, defaults) and `fine-tune, lr/4` (the same at a quarter of the learning rate);
  each measured on the measuring half's rows, with the median-F0 threshold beside them.

    nice -n 19 python benchmarks/finetune.py --corpus ../shared/corpora/realcv --bases outputs/s10/nopitch \\
        --out outputs/finetune --seeds 0,1,2 [--sizes all,30]

Prints one table per size (the mean of the seeds, each seed's balanced accuracy beside it); writes
OUT/finetune.json.
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
from heldout import COLUMNS, evaluate, locale_subset  # noqa: E402
from holdouts import (  # noqa: E402
    add_common_arguments,
    blanked_view,
    held_out_locales,
    held_out_speakers,
    is_real,
    parse_common,
    scored_speakers,
    seed_folder,
    stable_rank,
    train_once,
)

from cvlabel.config import load_config
from cvlabel.corpus import read_tsv
from cvlabel.labels import BINARY_GENDERS, label_index

PITCH = "pitch 165 Hz, as recorded"


def release_speakers(truth: pd.DataFrame, speakers: set[str], seed: int, size: str) -> tuple[set[str], set[str]]:
    """(kept labelled speakers, measured speakers) of a release whose self-reported speakers are `speakers`."""
    genders = scored_speakers(truth)
    kept: set[str] = set()
    measured: set[str] = set()
    labelled_total = 0
    halves: dict[str, list[str]] = {}
    for gender in BINARY_GENDERS:
        ids = sorted((c for c in speakers if genders.get(c) == gender), key=lambda c: stable_rank(100 + seed, c))
        measured.update(ids[::2])
        halves[gender] = ids[1::2]
        labelled_total += len(halves[gender])
    for ids in halves.values():
        share = len(ids) if size == "all" else max(3, round(int(size) * len(ids) / labelled_total))
        kept.update(ids[:share])
    return kept, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--bases", type=Path, required=True, help="heldout.py/trust.py --out with locale runs")
    parser.add_argument("--out", type=Path, default=Path("outputs/finetune"))
    parser.add_argument("--seeds", default="0,1,2", help="locale folds, and train.seed of each")
    parser.add_argument("--sizes", default="all", help="labelled speakers a release keeps: all, or numbers")
    args, corpus = parse_common(parser)
    truth = read_tsv(corpus / "truth.tsv")
    if not is_real(truth):
        raise SystemExit(f"{corpus}: not real Common Voice (truth.tsv has no self-reported answers)")
    report: dict[str, dict[int, dict[str, Any]]] = {}
    for size in args.sizes.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            config = load_config(args.config, [*args.overrides, f"train.seed={seed}"])
            held = held_out_speakers(truth, "locale", seed)
            base_work = seed_folder(args.bases, "locale", seed)
            base = base_work / "run"
            train_once(blanked_view(corpus, held, base_work / "corpus"), base, config, f"seed {seed}, base: ")
            locales = held_out_locales(truth, "locale", seed)
            kept, measured = release_speakers(truth, held, seed, size)
            work = args.out / f"size{size}-seed{seed}"
            subset = locale_subset(corpus, locales, work / "locales")
            release = blanked_view(subset, held - kept, work / "release")
            rows = truth[truth["client_id"].isin(measured)].reset_index(drop=True)
            rows["clip"] = [str(corpus / "clips" / p) for p in rows["path"]]
            rows["label"] = label_index(rows["true_gender"])
            runs = {
                "base": base,
                "scratch": work / "scratch",
                "fine-tune": work / "finetune",
                "fine-tune, lr/4": work / "finetune-lr4",
            }
            lr = config.train.learning_rate
            settings = {
                "scratch": [],
                "fine-tune": [f"train.init={base.resolve()}"],
                "fine-tune, lr/4": [f"train.init={base.resolve()}", f"train.learning_rate={lr / 4}"],
            }
            results: dict[str, Any] = {}
            for name, run in runs.items():
                if name in settings:
                    trained = load_config(args.config, [*args.overrides, f"train.seed={seed}", *settings[name]])
                    train_once(release, run, trained, f"size {size}, seed {seed}, {name}: ")
                measured_here = evaluate(run, rows, config.train.cache_dir)
                results[name] = measured_here["cnn, as recorded"]
                results.setdefault(PITCH, measured_here[PITCH])
            labelled = truth[truth["client_id"].isin(kept)]
            results["release"] = {
                "locales": locales,
                "labelled_speakers": len(kept),
                "labelled_clips": len(labelled),
                "measured_speakers": len(measured),
            }
            report.setdefault(size, {})[seed] = results
            print(
                f"size {size}, seed {seed}: locales {', '.join(locales)}; {len(kept)} labelled speakers "
                f"({len(labelled)} clips), {len(measured)} measured"
            )
            print(pd.DataFrame({k: v for k, v in results.items() if k != "release"}).T[COLUMNS].to_string(
                float_format=lambda v: f"{v:.4f}"))  # fmt: skip
        seeds = report[size]
        names = [k for k in next(iter(seeds.values())) if k != "release"]
        mean = pd.DataFrame(
            {n: {c: float(np.mean([r[n][c] for r in seeds.values()])) for c in COLUMNS} for n in names}
        ).T
        mean["balanced_accuracy by seed"] = [
            " / ".join(f"{r[n]['balanced_accuracy']:.3f}" for r in seeds.values()) for n in names
        ]
        print(f"size {size}: mean of seeds {args.seeds}")
        print(mean.to_string(float_format=lambda v: f"{v:.4f}"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
