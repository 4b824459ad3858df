"""How many seconds of a clip does the model need? Labels and accuracy per `features.max_seconds`.

Scores clips of a trained run with the decode budget cut to each cap (seconds past the clip's
first sound, as `decode_clip` counts them) and compares, against the longest cap: clip label
agreement, clip accuracy and speaker accuracy (mean logit per speaker) on the truth, and the
seconds of speech the model heard. Run it on voices the model never heard: the trust
benchmark's views are made for that (their blank rows are the held-out voices).

    python benchmarks/max_seconds.py outputs/trust/voices-seed0/corpus outputs/trust/voices-seed0/run \\
        --truth ../shared/corpora/devcorpus/truth.tsv [--caps 20,6,4,3,2]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from cvlabel.corpus import read_release, read_tsv
from cvlabel.errors import AudioError
from cvlabel.labels import decide_logits, label_index
from cvlabel.scoring import inference_model
from cvlabel.speech import decode_speech


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="a corpus whose blank rows are the clips to score")
    parser.add_argument("run", type=Path, help="a trained run folder")
    parser.add_argument("--truth", type=Path, required=True, help="truth.tsv: path, client_id, true_gender")
    parser.add_argument("--caps", default="20,6,4,3,2", help="max_seconds values, the first is the reference")
    args = parser.parse_args()

    model = inference_model(args.run)
    manifest = read_release(args.corpus)
    rows = manifest[manifest["gender"].isna()].merge(read_tsv(args.truth), on=["path", "client_id"])
    rows = rows[rows["true_gender"].isin(["male", "female"])].reset_index(drop=True)
    truth = label_index(rows["true_gender"].to_numpy())
    caps = [float(c) for c in args.caps.split(",")]
    labels, table = {}, {}
    for cap in caps:
        features = replace(model.features, max_seconds=cap)
        speech, kept = [], []
        for index, path in enumerate(rows["path"]):
            try:
                speech.append(decode_speech(args.corpus / "clips" / path, features))
                kept.append(index)
            except AudioError:
                continue
        logits = np.full(len(rows), np.nan)
        logits[kept] = model.logits(speech)
        labels[cap] = decide_logits(logits[kept]), kept
        pooled = pd.Series(logits).groupby(rows["client_id"]).mean()
        speaker_truth = pd.Series(truth).groupby(rows["client_id"]).first()
        table[cap] = {
            "clips": len(kept),
            "speech_seconds": float(np.mean([s.shape[0] for s in speech]) / features.sample_rate),
            "clip_accuracy": float((labels[cap][0] == truth[kept]).mean()),
            "speakers": int(len(pooled)),
            "speaker_accuracy": float((decide_logits(pooled.to_numpy()) == speaker_truth.to_numpy()).mean()),
        }
    reference, reference_kept = labels[caps[0]]
    for cap in caps:
        mine = dict(zip(labels[cap][1], labels[cap][0], strict=True))
        both = [k for k in reference_kept if k in mine]
        agree = np.mean([mine[k] == reference[reference_kept.index(k)] for k in both])
        table[cap][f"label_agreement_with_{caps[0]:g}s"] = float(agree)
    print(f"{len(rows)} blank rows of {args.corpus} with a truth; model {args.run}")
    print(pd.DataFrame(table).T.rename_axis("max_seconds").to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
