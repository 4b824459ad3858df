"""Does the committee learn better without the training speakers whose voice contradicts their answer?

An experiment for issue 23. Most of the committee's mistakes on realcv are voices whose pitch disagrees
with the speaker's own answer (docs/experiments.md, session 10). Some of those answers may be wrong, or
the account may hold several people. Training on them could teach the committee the wrong voice. The
speaker encoder of embedding_probe.py reads voices better than the committee (0.971 against 0.954 on
held-out speakers), so it can act as the judge, at training time only: inference stays the committee's.

Per seed, for the speakers heldout.py keeps for training: logistic heads on their clips' d-vectors,
cross-fitted over 3 folds of those speakers, give each kept speaker an out-of-fold pooled logit (the
mean of its clips'). A kept speaker is dropped from training when that logit contradicts the speaker's
answer with confidence at least --confidence (0.9: a pooled logit beyond +-2.2 on the wrong side). The
dropped speakers' rows go blank in the training view, as the held-out speakers' do. Training and scoring
are heldout.py's (the same held-out speakers, clips and metrics), so the table sits beside heldout.py's:

    python benchmarks/heldout.py --corpus ../shared/corpora/realcv --out outputs/heldout --seeds 0,1,2
    python benchmarks/embedding_probe.py --corpus ../shared/corpora/realcv --encoder .../pretrained.pt \\
        --out outputs/probe --holdouts speakers        # the embeddings, cached in outputs/probe
    python benchmarks/clean_labels.py --corpus ../shared/corpora/realcv --probe outputs/probe \\
        --out outputs/clean --seeds 0,1,2 [--confidence 0.9]

Prints how many speakers each seed dropped (a count, no per-speaker result) and the committee's table on
the held-out speakers; writes OUT/clean.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedding_probe import cross_fitted_heads  # noqa: E402
from heldout import COLUMNS, evaluate, table  # noqa: E402
from holdouts import (  # noqa: E402
    blanked_view,
    held_out_speakers,
    scored_speakers,
    seed_folder,
    train_once,
)

from cvlabel.config import load_config
from cvlabel.corpus import read_tsv
from cvlabel.labels import label_index

FOLDS = 3  # heads cross-fitted over the kept speakers, as the committee's members are


def contradicted_speakers(
    truth: pd.DataFrame, embeddings: np.ndarray, held: set[str], confidence: float, l2: float, seed: int
) -> set[str]:
    """Kept self-reported speakers whose out-of-fold pooled d-vector logit contradicts their answer
    with at least `confidence`."""
    known = scored_speakers(truth)
    clients = truth["client_id"].to_numpy()
    train = truth["client_id"].isin(known.index).to_numpy() & ~np.isin(clients, list(held))
    labels = label_index(truth["true_gender"].where(train, "male"))
    _, oof = cross_fitted_heads(embeddings, labels, clients, train, seed, l2, FOLDS)
    pooled = pd.DataFrame({"logit": oof[train], "label": labels[train]}).groupby(clients[train]).mean()
    sure = math.log(confidence / (1 - confidence))  # the logit of that confidence
    against = np.where(pooled["label"] == 1, -pooled["logit"], pooled["logit"])  # > 0: says the other gender
    return set(pooled.index[against >= sure])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--probe", type=Path, required=True, help="embedding_probe.py's --out (its embeddings)")
    parser.add_argument("--partials-per-second", type=float, default=1.3, help="which embeddings of --probe")
    parser.add_argument("--out", type=Path, default=Path("outputs/clean"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--l2", type=float, default=1e-3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    truth = read_tsv(args.corpus / "truth.tsv")
    embeddings = np.load(args.probe / f"embeddings-{args.partials_per_second}.npy")
    report: dict[int, dict[str, Any]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        held = held_out_speakers(truth, "speakers", seed)
        dropped = contradicted_speakers(truth, embeddings, held, args.confidence, args.l2, seed)
        work = seed_folder(args.out, "speakers", seed)
        view = blanked_view(args.corpus, held | dropped, work / "corpus")
        config = load_config(None, [*args.overrides, f"train.seed={seed}"])
        train_once(view, work / "run", config, f"seed {seed}: ")
        rows = truth[truth["client_id"].isin(held)].reset_index(drop=True)
        rows["clip"] = [str(args.corpus / "clips" / p) for p in rows["path"]]
        rows["label"] = label_index(rows["true_gender"])
        report[seed] = {"dropped_speakers": len(dropped), **evaluate(work / "run", rows, config.train.cache_dir)}
        print(f"seed {seed}: {len(held)} speakers held out, {len(dropped)} kept speakers dropped from training")
        print(table({k: v for k, v in report[seed].items() if k != "dropped_speakers"}))
    if len(report) > 1:
        name = f"{load_config(None, args.overrides).model.kind}, as recorded"  # heldout.evaluate's row
        mean = {c: float(np.mean([r[name][c] for r in report.values()])) for c in COLUMNS}
        print(f"mean of seeds {args.seeds}, {name}: " + ", ".join(f"{c} {v:.4f}" for c, v in mean.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "clean.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
