"""Build the base model that ships inside the package (cvlabel/models/base.safetensors).

Trains a committee with `cvlabel train` on the self-reported speakers of the real Common Voice share
(../shared/corpora/realcv: CC0 clips as published, 31 locales; never the synthetic corpus, whose MBROLA
voices are not free), then writes its checkpoint with the marks `--model base` relies on: info
`base_model` (export then accepts `infer --split all` as its reference: the model never heard a
user's release), the locales and speakers it heard, and the run's own test figures; the config's
`train.cache_dir` is emptied (a user's cache, not this machine's). Anyone with ../shared rebuilds it:

    python benchmarks/build_base_model.py --corpus ../shared/corpora/realcv --out outputs/base-model \\
        [--set augment.pitch_prob=0 ...] [--install]

Without --install the checkpoint is written to OUT/base.safetensors only; with it, also to
cvlabel/models/base.safetensors (then update cvlabel/models/README.md, the model card, from the
figures printed here).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd

from cvlabel.artifacts import BASE_MODEL_FILE, RunFolder, read_metrics, read_reference
from cvlabel.checkpoint import HEARD_BEFORE, load_checkpoint, save_checkpoint, speaker_digest
from cvlabel.config import load_config
from cvlabel.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="../shared/corpora/realcv")
    parser.add_argument("--out", type=Path, default=Path("outputs/base-model"))
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--install", action="store_true", help="also write cvlabel/models/base.safetensors")
    args = parser.parse_args()

    truth = pd.read_csv(args.corpus / "truth.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    if "label_basis" not in truth or not (truth["label_basis"] == "self-reported").any():
        raise SystemExit(f"{args.corpus}: not the real Common Voice share (truth.tsv has no self-reported rows)")
    config = load_config(args.config, args.overrides)
    run = args.out / "run"
    if not RunFolder(run).model.exists():
        shutil.rmtree(run, ignore_errors=True)
        train(args.corpus, run, config)
    metrics = read_metrics(run)
    checkpoint = load_checkpoint(run)
    heard = truth[truth["true_gender"].isin(["male", "female"])]
    trained_on = read_reference(RunFolder(run).reference)
    info = {
        "base_model": True,
        "trained_on": "real Common Voice clips as published (CC0): the self-reported speakers of cvlabel's share",
        "locales": sorted(heard["locale"].unique()),
        "speakers": heard.groupby("true_gender")["client_id"].nunique().astype(int).to_dict(),
        "clips": int(len(heard)),
        "sample_rates": {r: int(n) for r, n in heard["orig_sr"].value_counts().items()},
        "test": {k: metrics[k] for k in ("balanced_accuracy", "speaker_accuracy", "recall_female", "roc_auc", "ece")},
        "dev_balanced_accuracy": metrics["dev"]["balanced_accuracy"],
        "mp3_decoder": checkpoint.info.get("mp3_decoder", ""),
        # the speakers its weights learned from (train) or chose epochs on (dev): a user's release of these
        # locales may hold them, and export must not count them as clean reference speakers
        HEARD_BEFORE: sorted({speaker_digest(c) for c in trained_on.loc[trained_on["split"] != "test", "client_id"]}),
    }
    shipped = dataclasses.replace(checkpoint.config, train=dataclasses.replace(checkpoint.config.train, cache_dir=""))
    args.out.mkdir(parents=True, exist_ok=True)
    targets = [args.out / "base.safetensors", *([BASE_MODEL_FILE] if args.install else [])]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint.model, shipped, checkpoint.temperature, target, info=info)
    shown = {**info, HEARD_BEFORE: f"{len(info[HEARD_BEFORE])} speakers"}
    print(json.dumps({**shown, "written": [str(t) for t in targets]}, indent=1))


if __name__ == "__main__":
    main()
