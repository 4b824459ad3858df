"""Training steps a second, as `train` runs them, and where a step's time goes.

    python benchmarks/train_step.py [--corpus ../shared/corpora/realcv] [--out outputs/bench-step]
                                    [--clips 1000] [--epochs 2] [--parts] [--set k=v ...]

Decodes the first --clips self-reported clips of the corpus into a cache under --out (once), then
times one committee member's training loop (`training._MemberTrainer.fit`, the code `train` runs:
crops, augmentation, log-mels, SpecAugment, forward, backward, update) for --epochs epochs over them,
with a dev set of two clips so that the epochs' dev scoring is negligible, and prints clips a second
(clip-steps: epochs x clips drawn / seconds). The loop's whole time is measured, so the script also runs on
an older checkout (`PYTHONPATH=OLD_CHECKOUT python benchmarks/train_step.py ...`): two runs, one
after the other, give the speed-up of a change.

--serial prepares each batch in the loop instead (the thread's share of the speed-up).
--parts then times the parts of a step one after another (reading the decode cache, augmented
log-mels, SpecAugment, the network) on random batches, in milliseconds a clip.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import cvlabel.training as training
from cvlabel.cache import AudioCache
from cvlabel.config import load_config
from cvlabel.splits import labelled_rows

WARMUP_STEPS = 3


class _Quiet:
    """What fit reports its progress to: nothing."""

    def update(self, *args: Any) -> None: ...

    def set_postfix(self, **kwargs: Any) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora/realcv"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench-step"))
    parser.add_argument("--clips", type=int, default=1000, help="clips decoded and trained on")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the member timed")
    parser.add_argument("--parts", action="store_true", help="also time the parts of a step")
    parser.add_argument(
        "--serial", action="store_true", help="prepare each batch in the loop, not in a thread (at the same threads)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    overrides = [f"train.cache_dir={args.out / 'cache'}", f"train.epochs={args.epochs}", *args.overrides]
    config = load_config(None, [*overrides, f"train.patience={args.epochs}"])
    rows = labelled_rows(args.corpus, config.splits, "all").head(args.clips)
    cache = AudioCache(args.out / "cache", config.features)
    failed = cache.fill(rows["clip"].tolist(), jobs=os.cpu_count() or 1)
    rows = rows[~rows["clip"].isin(failed)].reset_index(drop=True)
    dev = pd.concat([rows[rows["label"] == label].head(1) for label in (0, 1)]).reset_index(drop=True)
    threads = training.model_threads(config.train.threads) if hasattr(training, "model_threads") else os.cpu_count()
    torch.set_num_threads(threads or 1)  # as train sets them

    if args.serial:
        training.prefetched = lambda items, prepare: ((item, prepare(item)) for item in items)
    trainer = training._MemberTrainer(0, rows, dev, cache, config, _Quiet())
    started = time.perf_counter()
    trainer.fit([], args.out / "train_log.csv")
    seconds = time.perf_counter() - started
    steps = training._steps(len(rows), config)
    clip_steps = args.epochs * steps * config.train.batch_size
    print(f"{training.__file__}: one member, {args.epochs} epochs of {steps} steps of {config.train.batch_size} clips "
          f"({len(rows)} clips of {args.corpus}), {torch.get_num_threads()} torch threads")  # fmt: skip
    print(f"{seconds:.1f} s: {clip_steps / seconds:.0f} clips a second, {1000 * seconds / clip_steps:.2f} ms a clip")
    if args.parts:
        print(parts_table(rows, cache, config, steps=30))


def parts_table(rows: pd.DataFrame, cache: AudioCache, config: Any, steps: int) -> str:
    """Milliseconds a clip of each part of a step, run one after another on random batches of `rows`."""
    from cvlabel.augment import spec_augment
    from cvlabel.model import GenderCNN

    load, labels = cache.loader(rows["clip"].tolist()), rows["label"].to_numpy()
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    model = GenderCNN(config.model, config.features.n_mels).use_channels_last()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    names = ["read the decode cache", "augmented log-mels", "SpecAugment", "forward, backward, update"]
    parts = dict.fromkeys(names, 0.0)
    batch = config.train.batch_size
    for step in range(WARMUP_STEPS + steps):
        chosen = rng.integers(0, len(labels), batch)
        times = [time.perf_counter()]
        speech = [load(i) for i in chosen]
        times.append(time.perf_counter())
        features = training.training_features(speech, config, rng, generator)
        times.append(time.perf_counter())
        features = spec_augment(features, config.augment, generator)
        times.append(time.perf_counter())
        loss = loss_fn(model(features), torch.as_tensor(labels[chosen], dtype=torch.float32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter())
        if step >= WARMUP_STEPS:
            for name, start, end in zip(names, times, times[1:], strict=False):
                parts[name] += end - start
    table = pd.DataFrame({"ms a clip": {name: 1000 * seconds / (steps * batch) for name, seconds in parts.items()}})
    table.loc["whole step (parts in turn)"] = table["ms a clip"].sum()
    table["share"] = table["ms a clip"] / table["ms a clip"].iloc[-1]
    heading = f"parts of a step, one after another ({torch.get_num_threads()} torch threads, {steps} steps):"
    return heading + "\n" + table.to_string(float_format=lambda v: f"{v:.2f}")


if __name__ == "__main__":
    main()
