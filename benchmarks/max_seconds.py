"""How many seconds of a clip does the model need, and at which rate? Labels and accuracy per decode.

Scores clips of a trained run first as it was trained (its own rate, soundfile + soxr, 20 s),
then decoded at `--sample-rate` by `--decoder` with the budget cut to each cap (seconds past the
clip's first sound, as `decode_clip` counts them), and compares each with the first: clip label
agreement, clip accuracy and speaker accuracy (mean logit per speaker) on the truth, and the
seconds of speech the model heard. Run it on voices the model never heard: the trust
benchmark's views are made for that (their blank rows are the held-out voices).

    python benchmarks/max_seconds.py outputs/trust/voices-seed0/corpus outputs/trust/voices-seed0/run \\
        --truth ../shared/corpora/devcorpus/truth.tsv [--caps 20,6,4,3,2] [--sample-rate 12000]
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
    parser.add_argument("--caps", default="20,6,4,3,2", help="max_seconds values to try")
    parser.add_argument("--sample-rate", type=int, help="decode at this rate [default: the model's own]")
    parser.add_argument("--decoder", default="auto", help="features.decoder of the capped decodes")
    args = parser.parse_args()

    model = inference_model(args.run)
    manifest = read_release(args.corpus)
    rows = manifest[manifest["gender"].isna()].merge(read_tsv(args.truth), on=["path", "client_id"])
    rows = rows[rows["true_gender"].isin(["male", "female"])].reset_index(drop=True)
    truth = label_index(rows["true_gender"].to_numpy())
    rate = args.sample_rate or model.features.sample_rate
    variants = {
        f"as trained ({model.features.sample_rate} Hz, soundfile, 20 s)": replace(
            model.features, decoder="soundfile", max_seconds=20.0
        )
    }
    for cap in [float(c) for c in args.caps.split(",")]:
        variants[f"{rate} Hz, {args.decoder}, {cap:g} s"] = replace(
            model.features, sample_rate=rate, decoder=args.decoder, max_seconds=cap
        )
    labels, table = {}, {}
    for name, features in variants.items():
        speech, kept = [], []
        for index, path in enumerate(rows["path"]):
            try:
                speech.append(decode_speech(args.corpus / "clips" / path, features))
                kept.append(index)
            except AudioError:
                continue
        logits = np.full(len(rows), np.nan)
        logits[kept] = replace(model, features=features).logits(speech)  # log-mels at the decoded rate
        labels[name] = decide_logits(logits[kept]), kept
        pooled = pd.Series(logits).groupby(rows["client_id"]).mean()
        speaker_truth = pd.Series(truth).groupby(rows["client_id"]).first()
        table[name] = {
            "clips": len(kept),
            "speech_seconds": float(np.mean([s.samples.shape[0] / s.rate for s in speech])),
            "clip_accuracy": float((labels[name][0] == truth[kept]).mean()),
            "speakers": int(len(pooled)),
            "speaker_accuracy": float((decide_logits(pooled.to_numpy()) == speaker_truth.to_numpy()).mean()),
        }
    first = next(iter(variants))
    reference = dict(zip(labels[first][1], labels[first][0], strict=True))
    for name in variants:
        mine = dict(zip(labels[name][1], labels[name][0], strict=True))
        both = [k for k in reference if k in mine]
        table[name]["label_agreement"] = float(np.mean([mine[k] == reference[k] for k in both]))
    print(f"{len(rows)} blank rows of {args.corpus} with a truth; model {args.run}; agreement with the first row")
    print(pd.DataFrame(table).T.to_string(float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
