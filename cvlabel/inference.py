"""`cvlabel infer`: predict the gender of selected rows in parallel shards, then pool per speaker.

The predictions folder (artifacts.PredictionsFolder) holds plan.json, one part file per shard
and, at the end, predictions.parquet. A killed run loses only the shards in flight; running the
same command again skips the finished ones. One function, `predict_shard`, does one shard;
`--jobs 1` calls it in-process, `--jobs N` maps it over worker processes, and `--backend dask`
runs it on a Dask cluster (runners.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import typing
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import FINAL_SCHEMA, PLAN_VERSION, PREDICTION_SCHEMA, PredictionsFolder, write_frame
from .audio import MISSING_FILE, mp3_decoder, require_decoder
from .checkpoint import existing_model_file, read_checkpoint_info, run_config
from .config import Backend, InferOptions, Selection
from .corpus import CLIP_TSVS, clips_dir, read_release, release_fingerprint
from .errors import AudioError, CvlabelError
from .files import file_sha256, folder_lock, writable_folder
from .labelling import eligible_rows
from .labels import BINARY_GENDERS, LABELS, calibrate, decide, label_names, or_null
from .metrics import balanced_accuracy
from .pooling import pool_by_speaker
from .progress import progress
from .runners import LocalRunner, dask_runner, exit_with_parent, keep_freed_memory, resolve_jobs
from .splits import SPLITS, assign_splits
from .summaries import InferSummary

# No torch at the top of this module: with worker processes, the parent only reads TSVs, hands
# out shards and pools the results, and importing torch there would cost ~0.3 GB and ~3 s.

log = logging.getLogger(__name__)

SELECTIONS: tuple[str, ...] = typing.get_args(Selection)  # all: every self-reported row (a base model's reference)
BACKENDS: tuple[str, ...] = typing.get_args(Backend)


def infer(
    corpus_dir: str | Path, model_dir: str | Path, out_dir: str | Path, options: InferOptions = InferOptions()
) -> InferSummary:
    """Predict the selected rows into out_dir (resuming a previous run) and pool per speaker."""
    started = time.time()
    corpus_dir, out = Path(corpus_dir), PredictionsFolder(out_dir)
    _check_options(options)
    checkpoint_file = existing_model_file(model_dir)
    described = read_checkpoint_info(checkpoint_file)  # the header alone: no torch in this process
    require_decoder(described.config.features.decoder)  # one line now, not an error on every row
    manifest = read_release(corpus_dir)  # every TSV: speakers' self-reports anywhere count
    rows, skipped_opt_out = select_rows(manifest, options, checkpoint_file)
    if rows.empty and options.selection != "unlabeled":  # a reference of nobody certifies nothing
        raise CvlabelError(
            f"{corpus_dir}: no self-reported male/female rows in the {options.selection!r} selection to predict"
            + (
                ": this release has none, so export can only label with --min-confidence"
                if options.selection == "all"
                else ""
            )
        )
    missing = _missing_clips(rows, corpus_dir)
    if len(missing) > options.max_missing_share * len(rows):
        raise CvlabelError(
            f"{len(missing):,} of {len(rows):,} clips to predict are not in {clips_dir(corpus_dir)} (first: "
            f"{missing[0]}); is the clips folder complete? (--max-missing-share {options.max_missing_share} is "
            "the share allowed; raise it to predict the others)"
        )
    rows["turn"] = scoring_turns(rows["client_id"], options.committee_clips)
    writable_folder(out.path, PredictionsFolder.OWN, "cvlabel infer")
    # one infer at a time in a folder: a second would redo the work and sweep the first's temp files
    with folder_lock(out.path, "cvlabel infer"):
        _prepare_out_dir(out, _plan(corpus_dir, checkpoint_file, options, rows))

        shards = [rows.iloc[i : i + options.shard_size] for i in range(0, len(rows), options.shard_size)]
        todo = [k for k in range(len(shards)) if not out.part(k).exists()]
        todo_rows = sum(len(shards[k]) for k in todo)
        calls = (
            (_shard_records(shards[k], corpus_dir), str(checkpoint_file), str(out.part(k)), options.batch_size)
            for k in todo
        )  # lazy: a release's rows are never all in flight
        runner: AbstractContextManager[Any]
        if options.backend == "dask":
            runner, where = dask_runner(options.scheduler, options.jobs), "on Dask"
        else:
            jobs = resolve_jobs(options.jobs, rows=todo_rows, tasks=len(todo))
            runner, where = nullcontext(LocalRunner(jobs)), f"{jobs} jobs"
        log.info(
            "%d rows in %d shards, %d to do, %s, MP3 via %s", len(rows), len(shards), len(todo), where, mp3_decoder()
        )
        # read from the checkpoint's header (no torch here); the weights load where the shards run, in
        # every worker at once (a first call to load them in one worker kept the others waiting)
        temperature = described.temperature
        with (
            runner as run,
            progress(total=len(rows), initial=len(rows) - todo_rows, desc="predicting", unit="clip") as bar,
        ):
            run.map(predict_shard, calls, bar.update)

        # --split dev|test checks the model on self-reported speakers: their own answers must not stand in
        answers = manifest if options.selection == "unlabeled" else manifest.iloc[0:0]
        final = pool_by_speaker(out.read_parts(len(shards)), answers, temperature)
        write_frame(final, FINAL_SCHEMA, out.predictions)
        return {
            "rows": len(final),
            "errors": int(final["error"].notna().sum()),
            "missing_clips": int((final["error"] == MISSING_FILE).sum()),
            "labels": {g: int((final["label"] == g).sum()) for g in LABELS},
            "label_source": {k: int(v) for k, v in final["label_source"].value_counts().items()},
            "speakers": int(final["client_id"].nunique()),
            "disputed_rows": int(final["speaker_disputed"].sum()),  # never pseudo-labelled (pooling.py)
            "skipped_opted_out_rows": skipped_opt_out,
            # blank rows of the TSVs not given to --tsv (invalidated, by default): why inspect counts more
            "blank_rows_not_read": int((manifest["gender"].isna() & ~manifest["source_tsv"].isin(options.tsvs)).sum())
            if options.selection == "unlabeled"
            else 0,
            "unheard_locales": _unheard_locales(rows, described.info),
            "decoders": {str(k): int(v) for k, v in final["decoder"].value_counts().sort_index().items()},
            # rows no MP3 decimation served (a WAV, a FLAC): resampled by soundfile + soxr, the slow way
            "slow_decodes": {
                int(k): int(v)
                for k, v in final.loc[final["decoder"] == "soundfile", "native_hz"].value_counts().items()
            },
            "clip_balanced_accuracy": _clip_balanced_accuracy(final, rows)
            if options.selection != "unlabeled"
            else None,
            "seconds": round(time.time() - started, 1),
        }


def _clip_balanced_accuracy(final: pd.DataFrame, rows: pd.DataFrame) -> float | None:
    """For --split dev|test|all: the clips' own decisions (clip_p_female) against the speakers' answers."""
    truth = final["path"].map(rows.set_index("path")["gender"])
    scored = final["clip_p_female"].notna() & truth.isin(BINARY_GENDERS)
    if not scored.any():
        return None
    decided = label_names(decide(final.loc[scored, "clip_p_female"].to_numpy(dtype=float))[0])  # labels' rule
    return round(balanced_accuracy(truth[scored].to_numpy(), decided), 4)


def _unheard_locales(rows: pd.DataFrame, info: dict[str, Any]) -> list[str] | None:
    """The locales of the predicted rows that a model which lists its locales (the base model) never
    heard; None for a model that does not list them (a run trained on the release itself)."""
    if "locales" not in info or "locale" not in rows:
        return None
    return sorted(set(rows["locale"].dropna()) - set(info["locales"]))


def select_rows(manifest: pd.DataFrame, options: InferOptions, model_file: Path) -> tuple[pd.DataFrame, int]:
    """The rows to predict, and how many blank rows were skipped because their speaker opted out.

    unlabeled: the rows labelling.eligible_rows names (blank gender, from options.tsvs, of a speaker
    who did not opt out). dev/test: the self-reported rows of that split, placed by the
    split settings inside the checkpoint; all: those of every split (for a model that never heard
    the release, the base model, every self-reported speaker is a clean reference).
    """
    if options.selection == "unlabeled":
        eligible, opted_out = eligible_rows(manifest, options.tsvs)
        return manifest[eligible].reset_index(drop=True), opted_out
    with_splits, _ = assign_splits(manifest, run_config(model_file).splits)
    if options.selection == "all":  # the self-reported rows of every split
        return with_splits[with_splits["split"].isin(SPLITS)].reset_index(drop=True), 0
    return with_splits[with_splits["split"] == options.selection].reset_index(drop=True), 0


def scoring_turns(client_ids: pd.Series, committee_clips: int) -> np.ndarray:
    """Who scores each row: -1, the whole committee (a speaker's first `committee_clips` rows, in row
    order), else a turn number; the row goes to member turn % members, so every member scores its
    share of each large speaker and pooling can still compare the members (pooling.py)."""
    rank = client_ids.groupby(client_ids, sort=False).cumcount().to_numpy()
    return np.where(rank < committee_clips, -1, rank - committee_clips)


def predict_shard(records: list[dict[str, Any]], model_file: str, out_file: str, batch_size: int, worker: int) -> int:
    """Decode, featurise and predict one shard of rows; write its Parquet file atomically.

    A clip that fails becomes an error row: no clip can stop the shard. Returns the row count.
    worker: 0 in-process; otherwise this runs in a worker process, which exits when the process that
    started its pool dies (`worker` is that pid; 1 when the runner does not know it, e.g. Dask).
    """
    import torch

    from .scoring import SORT_WINDOW, inference_model
    from .speech import decode_speech

    if worker:
        torch.set_num_threads(1)  # one process per core: threads inside a worker would only contend
        exit_with_parent(worker if worker > 1 else None)
        keep_freed_memory()
    model = inference_model(model_file)
    members = np.full((len(records), len(model.model.members)), np.nan)
    errors: dict[int, str] = {}
    decoded: dict[int, tuple[str, int]] = {}  # each decoded clip's decoder and native rate
    for first in range(0, len(records), SORT_WINDOW):  # bounded audio in memory, whatever the shard size
        speech = {}
        for index in range(first, min(len(records), first + SORT_WINDOW)):
            try:
                speech[index] = decode_speech(records[index]["clip"], model.features)
                decoded[index] = (speech[index].decoder, speech[index].native_rate)
            except AudioError as exc:
                errors[index] = exc.reason
            except Exception as exc:  # a decoder or feature failure of any other kind: recorded, not raised
                errors[index] = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
        scorers: dict[int | None, list[int]] = {}  # member (None: all of them) -> the clips it scores
        for index in speech:
            turn = records[index]["turn"]
            scorers.setdefault(None if turn < 0 else turn % members.shape[1], []).append(index)
        for member, chosen in scorers.items():
            logits = model.member_logits([speech[i] for i in chosen], batch_size, member)
            if member is None:
                members[chosen] = logits
            else:
                members[chosen, member] = logits[:, 0]
    scored = ~np.isnan(members)
    ok = scored.any(axis=1)  # False where the clip failed
    # the committee's logit: the mean of the members that scored the clip
    logits = np.where(ok, np.where(scored, members, 0.0).sum(axis=1) / np.maximum(scored.sum(axis=1), 1), np.nan)
    p_female = calibrate(logits, model.temperature)
    predicted, confidence = decide(p_female)
    table = pd.DataFrame(
        {
            "path": [r["path"] for r in records],
            "client_id": [r["client_id"] for r in records],
            "source_tsv": [r["source_tsv"] for r in records],
            "duration_s": [r["duration_s"] for r in records],
            "logit": logits,
            "member_logits": [list(row) if good else None for row, good in zip(members, ok, strict=True)],
            "p_female": np.where(ok, p_female, np.nan),
            "label": or_null(ok, label_names(predicted)),
            "confidence": np.where(ok, confidence, np.nan),
            "error": [errors.get(i) for i in range(len(records))],
            "decoder": [decoded[i][0] if i in decoded else None for i in range(len(records))],
            "native_hz": pd.array([decoded[i][1] if i in decoded else None for i in range(len(records))], "Int64"),
        }
    )
    write_frame(table, PREDICTION_SCHEMA, Path(out_file))
    return len(records)


def _shard_records(shard: pd.DataFrame, corpus_dir: Path) -> list[dict[str, Any]]:
    # built from whole columns: the parent makes these while the workers run, on the same cores
    folder = str(clips_dir(corpus_dir))
    durations = shard["duration_s"].to_numpy(dtype="float64", na_value=np.nan).tolist()
    return [
        {
            "path": path,
            "clip": os.path.join(folder, path),
            "client_id": client_id,
            "source_tsv": source_tsv,
            "duration_s": None if np.isnan(duration) else duration,
            "turn": turn,
        }
        for path, client_id, source_tsv, duration, turn in zip(
            shard["path"].tolist(),
            shard["client_id"].tolist(),
            shard["source_tsv"].tolist(),
            durations,
            shard["turn"].astype("int64").tolist(),
            strict=True,
        )
    ]


def _plan(corpus_dir: Path, model_file: Path, options: InferOptions, rows: pd.DataFrame) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "model_sha256": file_sha256(model_file),
        "model": str(model_file.resolve()),
        "corpus": str(corpus_dir.resolve()),
        "selection": options.selection,
        "tsvs": list(options.tsvs),
        "shard_size": options.shard_size,
        "committee_clips": options.committee_clips,
        "rows": len(rows),
        "rows_sha256": hashlib.sha256("\n".join(rows["path"]).encode()).hexdigest(),
        # what export checks the release against: not a key of resuming (a TSV edit that keeps the rows resumes)
        "tsvs_sha256": release_fingerprint(corpus_dir),
    }


# What a predictions folder was made with, in the words of the refusal when a re-run differs
PLAN_WORDS = {
    "version": "cvlabel version",
    "model_sha256": "model",
    "selection": "selection (--unlabeled or --split)",
    "tsvs": "--tsv",
    "shard_size": "--shard-size",
    "committee_clips": "--committee-clips",
    "rows_sha256": "set of rows (the release's TSVs changed since)",
}


def _prepare_out_dir(out: PredictionsFolder, plan: dict[str, Any]) -> None:
    """Check that the (locked) folder was made for the same plan; drop leftovers of a killed run."""
    try:
        previous = out.read_plan()
        if previous is not None:
            different = [words for key, words in PLAN_WORDS.items() if previous.get(key) != plan[key]]
            # a plan with no finished shard holds nothing to lose (say, a run refused a broken model): replace it
            if different and out.parts():
                raise CvlabelError(
                    f"{out.path} holds predictions made with another {', '.join(different)} (model "
                    f"{previous.get('model')}, selection {previous.get('selection')}); choose a new --out folder"
                )
        elif out.parts():
            raise CvlabelError(f"{out.path} holds prediction shards without a plan.json; choose a new --out folder")
        for leftover in out.path.glob("*.tmp*"):
            leftover.unlink()
        out.write_plan(plan)
    except OSError as exc:
        raise CvlabelError(f"{out.path}: cannot write there ({exc.strerror or exc})") from None


def _missing_clips(rows: pd.DataFrame, corpus_dir: Path) -> list[str]:
    """The selected rows' paths whose clip is not on disk (one stat each: cheap next to decoding)."""
    folder = clips_dir(corpus_dir)
    return [path for path in rows["path"] if not (folder / path).exists()]


def _check_options(options: InferOptions) -> None:
    if options.selection not in SELECTIONS:
        raise CvlabelError(f"unknown selection {options.selection!r}; choose from {', '.join(SELECTIONS)}")
    unknown = [t for t in options.tsvs if t not in CLIP_TSVS]
    if unknown or not options.tsvs:
        raise CvlabelError(f"unknown TSV {unknown[0] if unknown else ''!r}; choose from {', '.join(CLIP_TSVS)}")
    if options.backend not in BACKENDS:
        raise CvlabelError(f"unknown backend {options.backend!r}; choose from {', '.join(BACKENDS)}")
    if options.scheduler and options.backend != "dask":
        raise CvlabelError("--scheduler is an address for --backend dask")
    if options.batch_size < 1 or options.shard_size < 1 or options.jobs < 0 or options.committee_clips < 0:
        raise CvlabelError("--batch-size and --shard-size must be at least 1, --jobs and --committee-clips at least 0")
