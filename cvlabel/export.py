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

from .artifacts import EXPORT_SPLITS, ExportFolder, RunFolder, read_predictions, read_reference, write_export_split
from .checkpoint import run_config
from .config import ExportOptions
from .corpus import read_release
from .errors import CvlabelError
from .files import writable_folder, write_json
from .labels import BINARY_GENDERS, decide, or_null
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
    writable_folder(out.path)
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
    thresholds, expected = _thresholds(
        options, reference or RunFolder(Path(plan["model"]).parent).reference, plan["model_sha256"]
    )

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
    rows.loc[in_train & ~rows["gender"].isin(BINARY_GENDERS), "unused_reason"] = np.where(
        rows.loc[in_train & ~rows["gender"].isin(BINARY_GENDERS), "pseudo_below_threshold"],
        "below confidence threshold",
        "no male/female label",
    )
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
    columns = [c for c in rows.columns if c not in ("pseudo_below_threshold",)]
    for split in EXPORT_SPLITS:
        part = rows.loc[rows["split"] == split, columns]
        if split != "unused":
            part = part.drop(columns=["unused_reason"])
        write_export_split(part, out.split(split), metadata)
    summary = {
        **metadata,
        "expected": expected,
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


def choose_thresholds(reference: pd.DataFrame, target_precision: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per gender, the lowest confidence at which the reference rows predicted as that gender reach
    `target_precision`, and stay there for every higher threshold. Returns (thresholds, expected)
    where expected holds the precision, coverage and rows behind each threshold. A gender that
    never reaches the target gets threshold None (no pseudo-labels of that gender).
    """
    thresholds: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    decided, confidences = decide(reference["p_female"].to_numpy())
    truth = reference["gender"].to_numpy()
    for index, gender in enumerate(BINARY_GENDERS):
        predicted = decided == index
        confidence = confidences[predicted]
        correct = truth[predicted] == gender
        order = np.argsort(-confidence, kind="stable")
        confidence, correct = confidence[order], correct[order]
        precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
        # the deepest cut whose every shallower cut also reaches the target
        ok = np.flatnonzero(np.minimum.accumulate(precision) >= target_precision) if len(precision) else np.array([])
        if len(ok) == 0:
            thresholds[gender] = None
            expected[gender] = {"precision": None, "coverage": 0.0, "reference_rows": int(predicted.sum())}
            continue
        cut = int(ok[-1])
        thresholds[gender] = float(confidence[cut])
        expected[gender] = {
            "precision": float(precision[cut]),
            "coverage": float((cut + 1) / max(1, predicted.sum())),
            "reference_rows": int(predicted.sum()),
        }
    return thresholds, expected


def _thresholds(
    options: ExportOptions, reference_path: str | Path, model_sha256: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    if options.min_confidence is not None:
        return {g: options.min_confidence for g in BINARY_GENDERS}, {"rule": f"min_confidence {options.min_confidence}"}
    reference = _reference_rows(Path(reference_path), model_sha256)
    thresholds, expected = choose_thresholds(reference, options.target_precision)
    for gender, value in thresholds.items():
        if value is None:
            log.warning(
                "no confidence threshold reaches precision %.3f for %s on the %d reference rows: no %s pseudo-labels",
                options.target_precision,
                gender,
                len(reference),
                gender,
            )
    expected["rule"] = (
        f"target precision {options.target_precision} on {len(reference)} self-reported dev/test "
        "rows (clip level; pooling per speaker usually does better)"
    )
    return thresholds, expected


def _reference_rows(path: Path, model_sha256: str) -> pd.DataFrame:
    """Reference rows: the run's reference_predictions.parquet, or a `cvlabel infer --split` folder."""
    if path.is_dir():
        frame, plan = read_predictions(path)
        if plan.get("selection") not in ("dev", "test"):
            raise CvlabelError(f"{path}: reference predictions must come from 'cvlabel infer --split dev|test'")
        if plan["model_sha256"] != model_sha256:
            raise CvlabelError(f"{path}: reference predictions were made by another model")
        manifest = read_release(plan["corpus"])
        # the clip's own prediction, not the speaker's answer that the speaker pass puts in p_female
        frame = frame.merge(manifest[["path", "gender"]], on="path").dropna(subset=["clip_p_female"])
        return frame.assign(p_female=frame["clip_p_female"])
    if not path.is_file():
        raise CvlabelError(
            f"{path}: no reference predictions to choose thresholds on; pass --min-confidence, "
            "or --reference with a 'cvlabel infer --split test' folder"
        )
    return read_reference(path)


def _label_rows(rows: pd.DataFrame, predictions: pd.DataFrame, thresholds: dict[str, Any]) -> None:
    """Set gender, gender_source, gender_confidence (and pseudo_below_threshold) in place."""
    stated = rows["gender"].notna()
    rows["gender_source"] = or_null(stated, "self_reported")
    rows["gender_confidence"] = np.where(stated, 1.0, np.nan)
    rows["pseudo_below_threshold"] = False
    by_path = predictions.set_index("path")
    blank = rows.index[~stated & rows["path"].isin(by_path.index)]
    found = by_path.loc[rows.loc[blank, "path"]]
    label, confidence, source = (
        found["label"].to_numpy(),
        found["confidence"].to_numpy(),
        found["label_source"].to_numpy(),
    )
    threshold = np.array([thresholds.get(g) if g in thresholds else None for g in label], dtype=object)
    passes = np.array([t is not None and c >= t for t, c in zip(threshold, confidence, strict=False)], dtype=bool)
    from_speaker = source == "speaker"
    take = from_speaker | passes
    rows.loc[blank[take], "gender"] = label[take]
    rows.loc[blank[take], "gender_source"] = np.where(from_speaker[take], "speaker", "pseudo")
    rows.loc[blank[take], "gender_confidence"] = confidence[take]
    rows.loc[blank[~take & pd.notna(label)], "pseudo_below_threshold"] = True


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
    if not 0 < options.female_share < 1:
        raise CvlabelError(f"--female-share must be in (0, 1), got {options.female_share}")
