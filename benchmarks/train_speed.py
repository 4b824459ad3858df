"""Training speed: the one decoding pass, then epochs that decode nothing.

    python benchmarks/train_speed.py [--corpus DIR] [--out outputs/bench-train] [--set k=v ...]

Without --corpus it builds a demo corpus. With an empty cache folder it times the decoding pass
into the cache (what a first run pays once), then a full `train` on the warm cache, and prints
the epoch times from its train_log.csv: epoch 1 against the mean of the later ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from cvlabel.artifacts import RunFolder
from cvlabel.cache import AudioCache
from cvlabel.config import DemoCorpusOptions, load_config
from cvlabel.democorpus import make_demo_corpus
from cvlabel.runners import resolve_jobs
from cvlabel.splits import labelled_rows
from cvlabel.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a Common Voice folder [default: a demo corpus built here]")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-train"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus or args.out / "corpus"
    if args.corpus is None and not (corpus / "validated.tsv").exists():
        make_demo_corpus(corpus, DemoCorpusOptions(), jobs=os.cpu_count() or 1)
    cache_dir, run = args.out / "cache", args.out / "run"
    shutil.rmtree(cache_dir, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    config = load_config(None, [*args.overrides, f"train.cache_dir={cache_dir}"])

    rows = labelled_rows(corpus, config.splits, "all")
    started = time.perf_counter()
    AudioCache(cache_dir, config.features).fill(rows["clip"].tolist(), jobs=resolve_jobs(config.train.jobs))
    decode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = train(corpus, run, config)
    train_seconds = time.perf_counter() - started

    epochs = pd.read_csv(RunFolder(run).train_log)
    later = epochs["seconds"].iloc[1:]
    print(f"{len(rows)} labelled clips of {corpus}; {metrics['splits']['train']['clips']} train clips")
    table = pd.DataFrame(
        {
            "seconds": {
                "decoding pass into the cache (once)": decode_seconds,
                "epoch 1 (cache warm)": epochs["seconds"].iloc[0],
                "later epochs, mean": later.mean() if len(later) else float("nan"),
                "whole train run on the warm cache": train_seconds,
                "first run (decoding + train)": decode_seconds + train_seconds,
            }
        }
    )
    print(table.to_string(float_format=lambda v: f"{v:.1f}"))
    if len(later):
        print(f"later epochs / epoch 1: {later.mean() / epochs['seconds'].iloc[0]:.2f}")


if __name__ == "__main__":
    main()
