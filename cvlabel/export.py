"""`cvlabel export parquet`: the release with self-reported and pseudo labels, as Parquet splits.

AUG_DIR gets train/dev/test.parquet and unused.parquet (every selected row is in exactly one),
and summary.json. Each file keeps every column of the release (the TSV's gender string in
`gender_raw`, untouched) plus `gender`, `gender_source`, `gender_confidence`, `split`.

- dev and test hold the self-reported male/female rows of the model run's dev and test
  speakers: the same untouched evaluation data as training used. Pseudo-labels go to train only.
- train holds the train speakers' male/female rows: self-reported, from the speaker's own
  answer on other rows (`speaker`), or pseudo-labels at or above the per-gender confidence
  threshold (`pseudo`); at most splits.max_clips_per_speaker per speaker; optionally rebalanced
  to a target female share.
- unused holds the rest, with `unused_reason`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .artifacts import (
    EXPORT_SPLITS,
    ExportFolder,
    RunFolder,
    export_table,
    read_predictions,
    read_reference,
    write_export_split,
)
from .cache import AudioCache, cache_root
from .certify import MIN_DEV_BALANCED_ACCURACY, certified_thresholds, claims_at
from .checkpoint import read_checkpoint_info, run_config
from .config import Config, ExportOptions
from .corpus import clips_dir, read_release
from .errors import CvlabelError
from .files import writable_folder, write_json
from .labels import BINARY_GENDERS, label_index, or_null
from .pooling import speaker_table
from .splits import assign_splits

log = logging.getLogger(__name__)

SOURCE_ORDER = {"self_reported": 0, "speaker": 1, "pseudo": 2}  # kept first when capping or rebalancing


def export_parquet(
    corpus_dir: str | Path,
    predictions_dir: str | Path,
    aug_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    reference: str | Path | None = None,
) -> dict[str, Any]:
    """Write AUG_DIR/{train,dev,test,unused}.parquet and summary.json; return the summary."""
    corpus_dir, out = Path(corpus_dir), ExportFolder(aug_dir)
    _check_options(options)
    predictions, plan = read_predictions(predictions_dir)
    if plan.get("selection") != "unlabeled":
        raise CvlabelError(
            f"{predictions_dir} holds predictions of the {plan.get('selection')!r} split; "
            "export needs those of 'cvlabel infer --unlabeled'"
        )
    if Path(plan["corpus"]) != corpus_dir.resolve():
        raise CvlabelError(f"{predictions_dir} was made for the corpus {plan['corpus']}, not {corpus_dir.resolve()}")
    config = run_config(plan["model"])

    manifest = read_release(corpus_dir)
    unknown = set(predictions["path"]) - set(manifest.loc[manifest["gender"].isna(), "path"])
    if unknown:
        raise CvlabelError(
            f"{predictions_dir} predicts clips that are not blank-gender rows of {corpus_dir} "
            f"(e.g. {sorted(unknown)[0]}); was it made for another corpus or release?"
        )
    checkpoint = read_checkpoint_info(plan["model"])
    dev_balanced_accuracy = checkpoint.info.get("dev_balanced_accuracy", 1.0)
    if not dev_balanced_accuracy >= MIN_DEV_BALANCED_ACCURACY and not options.allow_weak_model:
        raise CvlabelError(
            f"{plan['model']} is near chance on its dev speakers (balanced accuracy {dev_balanced_accuracy:.2f} < "
            f"{MIN_DEV_BALANCED_ACCURACY}): its labels are not usable; retrain it, or pass --allow-weak-model"
        )
    reference_path = Path(reference or RunFolder(Path(plan["model"]).parent).reference)
    reference_speakers = _reference_speakers(reference_path, plan["model_sha256"], checkpoint.temperature)
    claims = _claims(options, reference_speakers)
    thresholds = {gender: claim["threshold"] for gender, claim in claims.items()}
    writable_folder(
        out.path, ExportFolder.OWN, "cvlabel export"
    )  # after every check: a refused export leaves no folder behind

    rows = manifest[manifest["source_tsv"].isin(plan["tsvs"])].copy()
    # the speakers' placement decides the export's splits; the training cap is applied below
    with_splits, _ = assign_splits(manifest, replace(config.splits, max_clips_per_speaker=0))
    speaker_split = with_splits[with_splits["split"] != ""].groupby("client_id")["split"].first()
    rows["split"] = rows["client_id"].map(speaker_split).fillna("train")
    _label_rows(rows, predictions, thresholds)

    rows["unused_reason"] = None
    # dev/test are exactly the rows the run was evaluated on, so a retrained run meets the same test
    evaluation = set(with_splits.loc[with_splits["split"].isin(["dev", "test"]), "path"])
    held_out = rows["split"].isin(["dev", "test"])
    rows.loc[held_out & ~rows["path"].isin(evaluation), "unused_reason"] = "held-out speaker, not an evaluation row"
    in_train = rows["split"].eq("train")
    # a clip that cannot be read never lands in a training split; its reason is kept
    broken = _unusable_clips(rows, corpus_dir, config) if len(rows) else pd.Series(dtype=object)
    bad = broken.notna() & rows["unused_reason"].isna() & rows["gender"].isin(BINARY_GENDERS)
    rows.loc[bad, "unused_reason"] = broken[bad]
    unlabelled = in_train & ~rows["gender"].isin(BINARY_GENDERS) & rows["unused_reason"].isna()
    rows.loc[unlabelled, "unused_reason"] = rows.loc[unlabelled, "blank_reason"].fillna("no male/female label")
    before = _counts(rows[in_train & rows["unused_reason"].isna()])
    _cap_per_speaker(rows, config.splits.max_clips_per_speaker)
    if options.rebalance:
        _rebalance(rows, options.female_share)
    rows.loc[rows["unused_reason"].notna(), "split"] = "unused"

    metadata = {
        "model_sha256": plan["model_sha256"],
        "model": plan["model"],
        "corpus": plan["corpus"],
        "thresholds": thresholds,
        "options": asdict(options),
    }
    # one schema for the four files, so `AUG/*.parquet` reads as one table in polars, DuckDB, datasets
    table = export_table(rows.drop(columns=["blank_reason"]))
    for split in EXPORT_SPLITS:
        write_export_split(table.filter(pa.array(rows["split"].to_numpy() == split)), out.split(split), metadata)
    summary = {
        **metadata,
        "claims": claims,
        "rule": _rule(options, reference_path),
        "rows": {split: int((rows["split"] == split).sum()) for split in EXPORT_SPLITS},
        "train_before_cap_and_rebalance": before,
        "train_after": _counts(rows[rows["split"] == "train"]),
        "pseudo_labels": {
            g: int(((rows["gender_source"] == "pseudo") & (rows["gender"] == g)).sum()) for g in BINARY_GENDERS
        },
        "unused_reasons": {k: int(v) for k, v in rows["unused_reason"].value_counts().items()},
    }
    write_json(out.summary, summary)
    return summary


def _claims(options: ExportOptions, speakers: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per gender: the threshold and what the reference speakers certify of it."""
    if options.min_confidence is not None:
        chosen = dict.fromkeys(BINARY_GENDERS, options.min_confidence)
        return claims_at(speakers, chosen, options.certainty)
    claims = certified_thresholds(speakers, options.target_precision, options.certainty, options.accept_uncertified)
    for gender, claim in claims.items():
        if claim["threshold"] is None:
            log.warning(
                "cannot certify precision %.3f for %s on %d reference speakers (best lower bound %.3f): "
                "no %s pseudo-labels; lower --target-precision, or pass --accept-uncertified",
                options.target_precision, gender, claim["reference_speakers"], claim["best_lower_bound"], gender,
            )  # fmt: skip
    return claims


def _rule(options: ExportOptions, reference_path: Path) -> str:
    if options.min_confidence is not None:
        return f"min_confidence {options.min_confidence} (chosen by the user, not certified)"
    return (
        f"per gender, the lowest speaker confidence whose clip-weighted precision over the reference speakers "
        f"({reference_path}) reaches {options.target_precision} as a one-sided {options.certainty:.0%} lower bound"
        + ("; where none does, the point estimate (not certified)" if options.accept_uncertified else "")
    )


def _reference_speakers(path: Path, model_sha256: str, temperature: float) -> pd.DataFrame:
    """Reference speakers pooled as blank speakers are (pooling.speaker_table), with `correct`."""
    clips = _reference_rows(path, model_sha256)
    clips = clips[clips["gender"].isin(BINARY_GENDERS) & clips["logit"].notna()]
    speakers = speaker_table(clips, temperature)
    truth = clips.groupby("client_id")["gender"].first().reindex(speakers.index)
    speakers["correct"] = label_index(truth) == speakers["predicted"].to_numpy()
    return speakers


def _reference_rows(path: Path, model_sha256: str) -> pd.DataFrame:
    """Reference rows: the run's reference_predictions.parquet, or a `cvlabel infer --split` folder."""
    if path.is_dir():
        frame, plan = read_predictions(path)
        if plan.get("selection") not in ("dev", "test"):
            raise CvlabelError(f"{path}: reference predictions must come from 'cvlabel infer --split dev|test'")
        if plan["model_sha256"] != model_sha256:
            raise CvlabelError(f"{path}: reference predictions were made by another model")
        manifest = read_release(plan["corpus"])
        return frame.merge(manifest[["path", "gender"]], on="path")
    if not path.is_file():
        raise CvlabelError(
            f"{path}: no reference predictions to choose thresholds on; pass --min-confidence, "
            "or --reference with a 'cvlabel infer --split test' folder"
        )
    return read_reference(path)


def _label_rows(rows: pd.DataFrame, predictions: pd.DataFrame, thresholds: dict[str, float | None]) -> None:
    """Set gender, gender_source, gender_confidence in place, and for blank rows left blank, why
    (`blank_reason`). A pseudo-label needs an undisputed speaker at or above its gender's threshold."""
    stated = rows["gender"].notna()
    rows["gender_source"] = or_null(stated, "self_reported")
    rows["gender_confidence"] = np.where(stated, 1.0, np.nan)
    rows["blank_reason"] = None
    by_path = predictions.set_index("path")
    blank = rows.index[~stated & rows["path"].isin(by_path.index)]
    found = by_path.loc[rows.loc[blank, "path"]]
    label, confidence = found["label"].to_numpy(dtype=object), found["confidence"].to_numpy(dtype=float)
    from_speaker = (found["label_source"] == "speaker").to_numpy()
    by_model = (found["label_source"] == "model").to_numpy()
    disputed = found["speaker_disputed"].to_numpy(dtype=bool)
    threshold = np.array([thresholds.get(g) if isinstance(g, str) else None for g in label], dtype=object)
    certified = np.array([t is not None for t in threshold], dtype=bool)
    passes = certified & (confidence >= np.where(certified, threshold, np.inf).astype(float))
    take = from_speaker | (by_model & ~disputed & passes)
    rows.loc[blank[take], "gender"] = label[take]
    rows.loc[blank[take], "gender_source"] = np.where(from_speaker[take], "speaker", "pseudo")
    rows.loc[blank[take], "gender_confidence"] = confidence[take]
    reason = np.select(
        [found["error"].notna().to_numpy(), disputed, ~certified, ~passes],
        ["clip could not be decoded", "disputed speaker (committee members or clips disagree)",
         "no certified threshold for this gender", "below confidence threshold"],
        default="no male/female label",
    )  # fmt: skip
    rows.loc[blank[~take], "blank_reason"] = reason[~take]


def _unusable_clips(rows: pd.DataFrame, corpus_dir: Path, config: Config) -> pd.Series:
    """Why each labelled row's clip cannot be trained on (None where it can): missing or empty on
    disk, or recorded as undecodable in the decode cache by training."""
    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    folder = clips_dir(corpus_dir)
    reasons = []
    for path, labelled in zip(rows["path"], rows["gender"].isin(BINARY_GENDERS), strict=True):
        reason = None
        if labelled:
            clip = folder / path
            try:
                size = clip.stat().st_size
            except OSError:
                size = -1
            if size <= 0:
                reason = "clip missing" if size < 0 else "clip is empty (0 bytes)"
            elif cache.entry(clip).with_suffix(".err").exists():
                reason = "clip could not be decoded"
        reasons.append(reason)
    return pd.Series(reasons, index=rows.index, dtype=object)


def _cap_per_speaker(rows: pd.DataFrame, cap: int) -> None:
    """Mark train rows over `cap` per speaker unused: self-reported kept first, then by confidence."""
    if cap <= 0:
        return
    train = rows[(rows["split"] == "train") & rows["unused_reason"].isna()]
    order = train.assign(_source=train["gender_source"].map(SOURCE_ORDER), _conf=-train["gender_confidence"])
    order = order.sort_values(["client_id", "_source", "_conf", "path"])
    over = order.groupby("client_id").cumcount() >= cap
    rows.loc[order.index[over.to_numpy()], "unused_reason"] = f"over {cap} clips per speaker"


def _rebalance(rows: pd.DataFrame, female_share: float) -> None:
    """Drop majority-gender train rows (pseudo first, lowest confidence first) until the share holds.

    Pseudo-labels of the minority gender are all kept: they are what enlarges it.
    """
    train = rows[(rows["split"] == "train") & rows["unused_reason"].isna()]
    counts = train["gender"].value_counts()
    female, male = int(counts.get("female", 0)), int(counts.get("male", 0))
    if female + male == 0:
        return
    if female / (female + male) < female_share:
        majority, keep = "male", int(np.floor(female * (1 - female_share) / female_share))
    else:
        majority, keep = "female", int(np.floor(male * female_share / (1 - female_share)))
    candidates = train[train["gender"] == majority]
    if len(candidates) <= keep:
        return
    ranked = candidates.assign(
        _source=candidates["gender_source"].map(SOURCE_ORDER), _conf=-candidates["gender_confidence"]
    )
    ranked = ranked.sort_values(["_source", "_conf", "path"])
    rows.loc[ranked.index[keep:], "unused_reason"] = "rebalanced away"


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    table = frame.groupby(["gender", "gender_source"]).size()
    return {f"{gender}/{source}": int(n) for (gender, source), n in table.items()}


def _check_options(options: ExportOptions) -> None:
    if options.min_confidence is not None and not 0.5 < options.min_confidence <= 1:
        raise CvlabelError(f"--min-confidence must be in (0.5, 1], got {options.min_confidence}")
    if not 0.5 < options.target_precision <= 1:
        raise CvlabelError(f"--target-precision must be in (0.5, 1], got {options.target_precision}")
    if not 0.5 < options.certainty < 1:
        raise CvlabelError(f"--certainty must be in (0.5, 1), got {options.certainty}")
    if not 0 < options.female_share < 1:
        raise CvlabelError(f"--female-share must be in (0, 1), got {options.female_share}")
