"""Claimed vs delivered: does the export's certified precision hold on voices the model never heard?

The protocol of a release where whole speakers are blank. From a Common-Voice-shaped corpus with a
truth.tsv (../shared/corpora/make_dev_corpus.sh), each seed blanks whole voices: every row of the
held-out voice groups gets an empty gender, as a release does for speakers who never answered.
A voice group is everything that shares a vocal tract (an MBROLA voice and its pitch-moved twin;
one espeak variant in all its languages), so the model never hears a held-out vocal tract at
another pitch. `--holdout language` blanks every speaker of one locale instead.

Then the three verbs run for real: `cvlabel train` on the view, `infer --unlabeled`, `export
parquet`, and the export's claims (certified lower bound and point estimate per gender, from
summary.json) are set against what it delivered on the blanked rows (truth.tsv):

    claimed LB / point   the export's certified precision and its point estimate (clip-weighted)
    delivered            precision of the pseudo-labels at clip level and at speaker level
    coverage             pseudo-labelled rows / blank rows the model may fill (blank, not opted out,
                         no answer of the speaker's own elsewhere)
    holds                delivered clip precision >= claimed lower bound, for every labelled gender
    overlap / ordinary / formant / telephone   the committee's clip accuracy on the held-out rows
                         (pitch-moved twins, MBROLA as recorded, espeak, and all held-out clips
                         through a telephone channel)
    in-domain            the run's own test balanced accuracy

Under the table, each seed's pitch-moved voices below 0.95 (trust.json: `overlap_by_voice`, all of them).

    python benchmarks/trust.py ../shared/corpora/devcorpus --out outputs/trust [--seeds 0,1,2]
        [--holdout voices|language] [--target-precision 0.9] [--accept-uncertified] [--committee-clips N]
        [--set train.folds=5 ...]

A seed whose run folder is finished is not retrained. Prints one table; writes OUT/trust.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import train_once  # noqa: E402

from cvlabel.artifacts import ExportFolder, RunFolder, read_metrics
from cvlabel.augment import telephone
from cvlabel.cache import AudioCache, cache_root
from cvlabel.config import ExportOptions, InferOptions, load_config
from cvlabel.corpus import CLIP_TSVS, SPLIT_TSVS, read_tsv
from cvlabel.export import export_parquet
from cvlabel.inference import infer
from cvlabel.labels import decide_logits, label_index
from cvlabel.scoring import inference_model
from cvlabel.speech import Speech

VOICE_FOLDS = 3
LOCALES = ("en", "de", "fr", "es")


def voice_group(speaker: str) -> str:
    """What shares a vocal tract: `mbrola:de1` and `mbrola:de1-overlap` -> `mbrola:de1`;
    `espeak:en+m1` and `espeak:fr+m1` -> `espeak:+m1`."""
    source, _, name = speaker.partition(":")
    if source == "mbrola":
        return f"mbrola:{name.removesuffix('-overlap')}"
    if source == "espeak":
        return f"espeak:+{name.partition('+')[2]}"
    return speaker


def held_out_speakers(truth: pd.DataFrame, holdout: str, seed: int) -> set[str]:
    """The client_ids a seed blanks: one fold of the voice groups (within each source and gender,
    groups sorted by name are dealt round robin, so every fold holds both genders of both
    sources), or every speaker of one locale."""
    if holdout == "language":
        return set(truth.loc[truth["locale"] == LOCALES[seed % len(LOCALES)], "client_id"])
    groups = truth.groupby("group")[["source", "true_gender"]].first().reset_index().sort_values("group")
    chosen = []
    for _, part in groups.groupby(["source", "true_gender"], sort=True):
        chosen += [g for index, g in enumerate(part["group"]) if index % VOICE_FOLDS == seed % VOICE_FOLDS]
    return set(truth.loc[truth["group"].isin(chosen), "client_id"])


def blanked_view(corpus: Path, blank: set[str], out: Path) -> Path:
    """`corpus` with an empty gender on every row of `blank`: clips/ symlinked, every other byte kept."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "clips").exists():
        (out / "clips").symlink_to((corpus / "clips").resolve())
    for name in (*CLIP_TSVS, *SPLIT_TSVS, "clip_durations"):
        source = corpus / f"{name}.tsv"
        if not source.is_file():
            continue
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        header = lines[0].rstrip("\r\n").split("\t")
        if "gender" in header and "client_id" in header:
            who, gender = header.index("client_id"), header.index("gender")
            for k in range(1, len(lines)):
                fields = lines[k].rstrip("\r\n").split("\t")
                if fields[who] in blank:
                    fields[gender] = ""
                    lines[k] = "\t".join(fields) + "\n"
        (out / f"{name}.tsv").write_text("".join(lines), encoding="utf-8")
    return out


def delivered(view: Path, pred: Path, aug: Path, truth: pd.DataFrame, held: set[str]) -> dict[str, Any]:
    """What the export delivered on the blank rows, against the truth."""
    predictions = pd.read_parquet(pred / "predictions.parquet").merge(truth, on=["path", "client_id"])
    fillable = predictions[predictions["label_source"] != "speaker"]
    rows = ExportFolder(aug).read_rows().merge(truth, on=["path", "client_id"])
    pseudo = rows[rows["gender_source"] == "pseudo"]
    right = pseudo["gender"] == pseudo["true_gender"]
    by_speaker = pseudo.assign(right=right).groupby("client_id")["right"].all()
    result = {
        "blank_rows": int(len(predictions)),
        "fillable_rows": int(len(fillable)),
        "pseudo_rows": int(len(pseudo)),
        "coverage": len(pseudo) / max(1, len(fillable)),
        "precision": float(right.mean()) if len(pseudo) else None,
        "speakers": int(len(by_speaker)),
        "speaker_precision": float(by_speaker.mean()) if len(by_speaker) else None,
        "by_gender": {
            g: float(right[pseudo["gender"] == g].mean()) if (pseudo["gender"] == g).any() else None
            for g in ("male", "female")
        },  # fmt: skip
        "wrong_speakers": sorted(set(pseudo.loc[~right, "speaker"])),
    }
    # the committee on the held-out rows, clip by clip, as recorded
    mine = predictions[predictions["client_id"].isin(held) & predictions["logit"].notna()]
    right_clip = decide_logits(mine["logit"].to_numpy()) == label_index(mine["true_gender"])
    for name, kind in (("overlap", "diphone-overlap"), ("ordinary", "diphone"), ("formant", "formant")):
        chosen = (mine["kind"] == kind).to_numpy()
        result[name] = float(right_clip[chosen].mean()) if chosen.any() else None
    # which pitch-moved voices fail: a few voices, not a share of every voice, is what the twins column hides
    twins = mine.assign(right=right_clip)[mine["kind"].to_numpy() == "diphone-overlap"]
    result["overlap_by_voice"] = {k: round(float(v), 3) for k, v in twins.groupby("speaker")["right"].mean().items()}
    return result


def telephone_accuracy(run: Path, view: Path, truth: pd.DataFrame, held: set[str]) -> float:
    """The committee's clip accuracy on every held-out clip passed through a telephone channel."""
    model = inference_model(run)
    config = load_config(RunFolder(run).config)
    rows = truth[truth["client_id"].isin(held)]
    clips = [str(view / "clips" / p) for p in rows["path"]]
    cache = AudioCache(cache_root(config.train.cache_dir), model.features)
    errors = cache.fill(clips, jobs=1)
    keep = [k for k, clip in enumerate(clips) if clip not in errors]
    speech = [Speech(telephone(s.samples, s.rate), s.rate) for s in (cache.load(clips[k]) for k in keep)]
    logits = model.logits(speech)
    return float((decide_logits(logits) == label_index(rows["true_gender"].to_numpy()[keep])).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs/trust"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--holdout", choices=("voices", "language"), default="voices")
    parser.add_argument("--target-precision", type=float, default=0.9)
    parser.add_argument("--accept-uncertified", action="store_true", help="export's option of the same name")
    parser.add_argument("--committee-clips", type=int, default=InferOptions.committee_clips, help="infer's option")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    truth = read_tsv(args.corpus / "truth.tsv")
    truth["group"] = truth["speaker"].map(voice_group)
    report = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        work = args.out / f"{args.holdout}-seed{seed}"
        held = held_out_speakers(truth, args.holdout, seed)
        view = blanked_view(args.corpus, held, work / "corpus")
        run = work / "run"
        train_once(view, run, load_config(args.config, [*args.overrides, f"train.seed={seed}"]), f"seed {seed}: ")
        for folder in ("pred", "aug"):
            shutil.rmtree(work / folder, ignore_errors=True)
        infer(view, run, work / "pred", InferOptions(committee_clips=args.committee_clips))
        summary = export_parquet(
            view,
            work / "pred",
            work / "aug",
            ExportOptions(target_precision=args.target_precision, accept_uncertified=args.accept_uncertified),
        )
        result = delivered(view, work / "pred", work / "aug", truth, held)
        result["telephone"] = telephone_accuracy(run, view, truth, held)
        result["in_domain"] = read_metrics(run)["balanced_accuracy"]
        result["held_out_speakers"] = len(held)
        result["claims"] = summary["claims"]
        labelled = [g for g, claim in summary["claims"].items() if claim["threshold"] is not None]
        result["claimed_lower_bound"] = min((summary["claims"][g]["lower_bound"] for g in labelled), default=None)
        result["claimed_precision"] = min((summary["claims"][g]["precision"] for g in labelled), default=None)
        result["holds"] = all(
            result["by_gender"][g] is None or result["by_gender"][g] >= summary["claims"][g]["lower_bound"]
            for g in labelled
        )
        report[seed] = result

    columns = ["held_out_speakers", "claimed_lower_bound", "claimed_precision", "precision", "speaker_precision",
               "coverage", "holds", "overlap", "ordinary", "formant", "telephone", "in_domain"]  # fmt: skip
    table = pd.DataFrame({f"seed {s}": {c: r[c] for c in columns} for s, r in report.items()}).T
    numeric = table.drop(columns=["holds"]).apply(pd.to_numeric, errors="coerce")
    table.loc["mean"] = {**numeric.mean().to_dict(), "holds": bool(table["holds"].all())}
    mode = "point estimate where uncertifiable" if args.accept_uncertified else "certified only"
    print(f"holdout: {args.holdout}; target precision {args.target_precision} ({mode}); corpus {args.corpus}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for seed, result in report.items():
        if result["wrong_speakers"]:
            print(f"seed {seed}: wrongly labelled speakers: {', '.join(result['wrong_speakers'])}")
        weak = {k: v for k, v in result["overlap_by_voice"].items() if v < 0.95}
        if weak:
            print(f"seed {seed}: pitch-moved voices below 0.95: {', '.join(f'{k} {v:.2f}' for k, v in weak.items())}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"trust-{args.holdout}-{args.target_precision}{'-uncertified' if args.accept_uncertified else ''}"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
