"""What `cvlabel train` costs on a large release, at the default budget (train.epoch_clips).

    python benchmarks/train_scale.py --corpus ../shared/corpora/realcv --clips 100000 --out outputs/train-scale \
        [--set k=v ...]

Builds a release of about --clips self-reported clips out of the corpus's (its validated.tsv rows with
a male/female answer, copied under new speakers: copy k of speaker S is `S-copyK`, its clips hard links
`copyK_NAME.mp3`, so nothing is copied on disk), then runs `cvlabel train` on it in a fresh process with an
empty decode cache and prints wall time, what the run says it trained (clips, steps, seconds), and the
peak memory (RSS of the main process and of the tree, every 0.2 s).

The copies share their voices across the splits, so the run's accuracy here means nothing; this measures
time and memory only (held-out accuracy against the budget: benchmarks/heldout.py with --set
train.epoch_clips=N).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_speed import run_and_watch  # noqa: E402  (a benchmark helper beside this file)

from cvlabel.corpus import normalise_gender, read_tsv  # noqa: E402
from cvlabel.labels import BINARY_GENDERS  # noqa: E402


def scaled_release(corpus: Path, clips: int, target: Path) -> Path:
    """The corpus's self-reported validated rows, copied under new speakers until about `clips` rows."""
    if (target / "validated.tsv").exists():
        return target
    rows = read_tsv(corpus / "validated.tsv")
    rows = rows[normalise_gender(rows["gender"], corpus / "validated.tsv").isin(BINARY_GENDERS)]
    copies = max(1, math.ceil(clips / len(rows)))
    (target / "clips").mkdir(parents=True)
    parts = []
    for copy in range(copies):
        part = rows.assign(client_id=rows["client_id"] + f"-copy{copy}", path=f"copy{copy:03d}_" + rows["path"])
        for source, name in zip(rows["path"], part["path"], strict=True):
            os.link(corpus / "clips" / source, target / "clips" / name)
        parts.append(part)
    pd.concat(parts).head(clips).to_csv(target / "validated.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora/realcv"))
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("outputs/train-scale"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    release = scaled_release(args.corpus, args.clips, args.out / f"release-{args.clips}")
    run, cache = args.out / "run", args.out / "cache"
    for folder in (run, cache):
        if folder.exists():
            raise SystemExit(f"{folder} exists: remove it, or give another --out (the run must start from nothing)")
    sets = [f"--set={item}" for item in [f"train.cache_dir={cache}", *args.overrides]]
    command = [sys.executable, "-m", "cvlabel", "-q", "train", str(release), "--out", str(run), *sets]
    watched = run_and_watch(command)
    metrics = json.loads((run / "metrics.json").read_text())
    log = pd.read_csv(run / "train_log.csv")
    splits = metrics["splits"]
    print(f"cvlabel train on {release}: {sum(s['clips'] for s in splits.values())} self-reported clips "
          f"(train {splits['train']['clips']}, dev {splits['dev']['clips']}, test {splits['test']['clips']}), "
          f"{os.cpu_count()} cores")  # fmt: skip
    table = pd.Series(
        {
            "wall seconds (decoding, training, reference, report)": watched["seconds"],
            "train_seconds (metrics.json)": metrics["train_seconds"],
            "member-epochs run": len(log),
            "seconds an epoch, mean (its steps and dev scoring)": log["seconds"].mean(),
            "peak RSS, main process (MB)": watched["peak_rss_main_mb"],
            "peak RSS, process tree (MB)": watched["peak_rss_tree_mb"],
        }
    )
    print(table.to_string(float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
