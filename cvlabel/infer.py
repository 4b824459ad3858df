"""`cvlabel infer`: predict the gender of selected rows in parallel shards, then pool per speaker.

PRED_DIR holds:
    plan.json               what was asked (model, corpus, selection, rows): a re-run must match it
    part-NNNNN.parquet      one per shard of rows, clip-level predictions (PREDICTION_SCHEMA),
                            each written to a temp name and renamed, so a finished shard is whole
    predictions.parquet     every row after the speaker pass (FINAL_SCHEMA)

A killed run loses only the shards in flight; running the same command again skips the
finished ones. One function, `predict_shard`, does one shard; `--jobs 1` calls it in-process,
`--jobs N` maps it over worker processes, and `--backend dask` runs it on a Dask cluster (cluster.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from tqdm import tqdm

from .checkpoint import Checkpoint, existing_model_file, load_checkpoint, run_config
from .config import InferOptions
from .corpus import BINARY_GENDERS, CLIP_TSVS, LABELS, clips_dir, read_release
from .errors import AudioError, CvlabelError
from .files import writable_folder, write_json, write_parquet
from .metrics import decide, sigmoid
from .splits import assign_splits, speaker_genders

# No torch at the top of this module: with worker processes, the parent only reads TSVs, hands
# out shards and pools the results, and importing torch there would cost ~0.3 GB and ~3 s.

log = logging.getLogger(__name__)

SELECTIONS = ("unlabeled", "dev", "test")
BACKENDS = ("local", "dask")
PLAN_VERSION = 1

PREDICTION_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # as in the TSV, relative to clips/
        ("client_id", pa.string()),
        ("source_tsv", pa.string()),  # validated | other | invalidated
        ("duration_s", pa.float64()),  # from clip_durations.tsv, else the decoded length (capped at max_seconds)
        ("logit", pa.float64()),  # the model's raw output; null on error
        ("p_female", pa.float64()),  # calibrated: sigmoid(logit / temperature); null on error
        ("label", pa.string()),  # male | female; null on error
        ("confidence", pa.float64()),  # max(p_female, 1 - p_female); null on error
        ("error", pa.string()),  # null, or why the clip gave no prediction
    ]
)
FINAL_SCHEMA = pa.schema(
    list(PREDICTION_SCHEMA)
    + [
        ("clip_p_female", pa.float64()),  # the clip's own calibrated p_female, before pooling
        ("speaker_p_female", pa.float64()),  # sigmoid(mean logit of the speaker's predicted clips / T)
        ("speaker_n_clips", pa.int64()),  # clips pooled into speaker_p_female
        ("label_source", pa.string()),  # speaker: self-reported on the speaker's other rows; model: pooled prediction
    ]
)


def part_path(out_dir: Path, index: int) -> Path:
    """The file of shard `index`: the one place that names it."""
    return out_dir / f"part-{index:05d}.parquet"


def predictions_path(out_dir: Path) -> Path:
    return out_dir / "predictions.parquet"


def infer(corpus_dir: str | Path, model_dir: str | Path, out_dir: str | Path, options: InferOptions = InferOptions()) -> dict:
    """Predict the selected rows into out_dir (resuming a previous run) and pool per speaker."""
    started = time.time()
    corpus_dir, model_dir, out_dir = Path(corpus_dir), Path(model_dir), Path(out_dir)
    _check_options(options)
    checkpoint_file = existing_model_file(model_dir)
    manifest = read_release(corpus_dir)  # every TSV: speakers' self-reports anywhere count
    rows, skipped_opt_out = select_rows(manifest, options, model_dir)
    _prepare_out_dir(out_dir, _plan(corpus_dir, checkpoint_file, options, rows))

    shards = [rows.iloc[i : i + options.shard_size] for i in range(0, len(rows), options.shard_size)]
    todo = [k for k in range(len(shards)) if not part_path(out_dir, k).exists()]
    todo_rows = sum(len(shards[k]) for k in todo)
    calls = ((_shard_records(shards[k], corpus_dir), str(checkpoint_file), str(part_path(out_dir, k)),
              options.batch_size) for k in todo)  # lazy: a release's rows are never all in flight
    if options.backend == "dask":
        from .cluster import dask_runner, local_workers

        runner, where = dask_runner(options.scheduler, local_workers(options.jobs)), "on Dask"
    else:
        jobs = worker_count(options.jobs, todo_rows, len(todo))
        runner, where = nullcontext(LocalRunner(jobs)), f"{jobs} jobs"
    log.info("%d rows in %d shards, %d to do, %s", len(rows), len(shards), len(todo), where)
    with runner as run:
        # the checkpoint is loaded (and checked) where the shards will run, never in a parent of workers
        temperature = run.call(model_temperature, str(checkpoint_file))
        with tqdm(total=len(rows), initial=len(rows) - todo_rows, desc="predicting", unit="clip") as bar:
            run.map(predict_shard, calls, bar.update)

    parts = pd.concat([pq.read_table(part_path(out_dir, k)).to_pandas() for k in range(len(shards))],
                      ignore_index=True) if shards else PREDICTION_SCHEMA.empty_table().to_pandas()
    final = speaker_pass(parts, manifest, temperature)
    _write_parquet(final, FINAL_SCHEMA, predictions_path(out_dir))
    summary = {
        "rows": len(final),
        "errors": int(final["error"].notna().sum()),
        "labels": {g: int((final["label"] == g).sum()) for g in LABELS},
        "label_source": {k: int(v) for k, v in final["label_source"].value_counts().items()},
        "speakers": int(final["client_id"].nunique()),
        "skipped_opted_out_rows": skipped_opt_out,
        "seconds": round(time.time() - started, 1),
    }
    return summary


# Below this many rows to predict, `--jobs 0` runs in-process: each worker process first imports
# torch (~3 s here), which costs more than a second core saves on a small run. Measured, `cvlabel
# infer` from a fresh process, in-process vs two workers: 500 rows 6.7 vs 9.2 s, 1,000 rows 9.6
# vs 9.7 s, 2,000 rows 15.1 vs 12.1 s.
SERIAL_BELOW_ROWS = 1000


def worker_count(requested: int, rows: int, shards: int, cores: int | None = None) -> int:
    """Processes to use: `requested`, or for 0 one per core, except in-process for small runs."""
    if requested == 0:
        requested = 1 if rows < SERIAL_BELOW_ROWS else (cores or os.cpu_count() or 1)
    return max(1, min(requested, shards))


class LocalRunner:
    """infer's calls in this process (jobs 1) or in joblib worker processes; see cluster.DaskRunner."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """function(*args) once, where the shards will run (the pool's workers are reused by map)."""
        return function(*args) if self.jobs == 1 else Parallel(n_jobs=self.jobs)([delayed(function)(*args)])[0]

    def map(self, function: Callable[..., int], calls: Iterable[tuple], on_done: Callable[[int], Any]) -> None:
        """function(*args, worker=...) for every args in `calls`; on_done(result) as each finishes."""
        if self.jobs == 1:
            for args in calls:
                on_done(function(*args, worker=False))
            return
        tasks = (delayed(function)(*args, worker=True) for args in calls)
        for result in Parallel(n_jobs=self.jobs, return_as="generator_unordered")(tasks):
            on_done(result)


def select_rows(manifest: pd.DataFrame, options: InferOptions, model_dir: Path) -> tuple[pd.DataFrame, int]:
    """The rows to predict, and how many blank rows were skipped because their speaker opted out.

    unlabeled: blank gender, from options.tsvs, and the speaker never said `other` or
    `do_not_wish_to_say` on any row (an opt-out or a non-binary answer is the speaker's, so it
    covers their blank rows too). dev/test: the self-reported rows of that split, placed by the
    run's own split settings.
    """
    if options.selection == "unlabeled":
        genders, conflicting = speaker_genders(manifest)
        not_binary = set(genders.index[~genders.isin(BINARY_GENDERS)]) | set(conflicting)
        blank = manifest["gender"].isna() & manifest["source_tsv"].isin(options.tsvs)
        opted_out = blank & manifest["client_id"].isin(not_binary)
        return manifest[blank & ~opted_out].reset_index(drop=True), int(opted_out.sum())
    with_splits, _ = assign_splits(manifest, run_config(model_dir).splits)
    return with_splits[with_splits["split"] == options.selection].reset_index(drop=True), 0


def predict_shard(records: list[dict], model_file: str, out_file: str, batch_size: int, worker: bool) -> int:
    """Decode, featurise and predict one shard of rows; write its Parquet file atomically.

    A clip that fails becomes an error row: no clip can stop the shard. Returns the row count.
    """
    import torch

    from .cache import decode_speech
    from .evaluate import SORT_WINDOW, batch_logits

    if worker:
        torch.set_num_threads(1)  # one process per core: threads inside a worker would only contend
    checkpoint = _cached_checkpoint(model_file, os.stat(model_file).st_mtime_ns)
    config = checkpoint.feature_config
    logits = np.full(len(records), np.nan)
    errors = {}
    for first in range(0, len(records), SORT_WINDOW):  # bounded audio in memory, whatever the shard size
        speech = {}
        for index in range(first, min(len(records), first + SORT_WINDOW)):
            try:
                speech[index] = decode_speech(records[index]["clip"], config)
            except AudioError as exc:
                errors[index] = exc.reason
            except Exception as exc:  # a decoder or feature failure of any other kind: recorded, not raised
                errors[index] = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
        if speech:
            logits[list(speech)] = batch_logits(checkpoint.model, list(speech.values()), config, batch_size)
    p_female = sigmoid(logits / checkpoint.temperature)
    predicted, confidence = decide(p_female)
    ok = ~np.isnan(logits)
    table = pd.DataFrame({
        "path": [r["path"] for r in records],
        "client_id": [r["client_id"] for r in records],
        "source_tsv": [r["source_tsv"] for r in records],
        "duration_s": [r["duration_s"] for r in records],
        "logit": np.where(ok, logits, np.nan),
        "p_female": np.where(ok, p_female, np.nan),
        "label": [LABELS[k] if good else None for k, good in zip(predicted, ok)],
        "confidence": np.where(ok, confidence, np.nan),
        "error": [errors.get(i) for i in range(len(records))],
    })
    _write_parquet(table, PREDICTION_SCHEMA, Path(out_file))
    return len(records)


def speaker_pass(parts: pd.DataFrame, manifest: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """Pool clip predictions per speaker and prefer a speaker's own self-report.

    speaker_p_female = sigmoid(mean logit of the speaker's predicted clips / T). Where the
    speaker reported male or female on other rows (and never disagreed), that is the label, with
    confidence 1 and label_source `speaker`; otherwise the pooled figure gives label and
    confidence, with label_source `model`. Error rows keep a null label.
    """
    final = parts.copy()
    final["clip_p_female"] = final["p_female"]
    pooled = final.dropna(subset=["logit"]).groupby("client_id")["logit"].agg(["mean", "size"])
    final["speaker_n_clips"] = final["client_id"].map(pooled["size"]).fillna(0).astype("int64")
    final["speaker_p_female"] = sigmoid(final["client_id"].map(pooled["mean"]).to_numpy(dtype=float) / temperature)
    genders, _ = speaker_genders(manifest)
    stated = final["client_id"].map(genders[genders.isin(BINARY_GENDERS)])
    ok = final["error"].isna()
    model_label = np.asarray(LABELS)[decide(final["speaker_p_female"])[0]]
    final["label"] = np.where(stated.notna(), stated, np.where(ok, model_label, None))
    final["p_female"] = np.where(stated.notna(), (stated == LABELS[1]).astype(float), final["speaker_p_female"])
    final.loc[~ok & stated.isna(), "p_female"] = np.nan
    final["confidence"] = decide(final["p_female"])[1]
    final["label_source"] = np.where(stated.notna(), "speaker", np.where(ok, "model", None))
    final["label"] = final["label"].astype(object).where(final["label"].notna(), None)
    return final


REFERENCE_SCHEMA = pa.schema(
    [
        ("split", pa.string()),  # dev | test: the run's held-out speakers
        ("path", pa.string()),
        ("client_id", pa.string()),
        ("gender", pa.string()),  # self-reported: male | female
        ("logit", pa.float64()),
        ("p_female", pa.float64()),  # calibrated, clip-level
    ]
)


def write_reference_predictions(rows: pd.DataFrame, temperature: float, path: Path) -> None:
    """Predictions on self-reported held-out rows, for choosing thresholds at a target precision."""
    frame = rows.assign(p_female=sigmoid(rows["logit"].to_numpy(dtype=float) / temperature))
    _write_parquet(frame, REFERENCE_SCHEMA, path)


def read_predictions(out_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """The final predictions and the plan of a finished `cvlabel infer` folder."""
    out_dir = Path(out_dir)
    plan_file, final = out_dir / "plan.json", predictions_path(out_dir)
    if not plan_file.is_file() or not final.is_file():
        raise CvlabelError(f"{out_dir}: not a finished 'cvlabel infer' folder (no plan.json or predictions.parquet)")
    return pq.read_table(final).to_pandas(), json.loads(plan_file.read_text())


def model_temperature(model_file: str) -> float:
    """The checkpoint's calibration temperature; loading it also checks the file (CvlabelError)."""
    return _cached_checkpoint(model_file, os.stat(model_file).st_mtime_ns).temperature


@lru_cache(maxsize=2)
def _cached_checkpoint(model_file: str, mtime_ns: int) -> Checkpoint:
    # each worker process loads the model once, not once per shard
    checkpoint = load_checkpoint(model_file)
    checkpoint.model.fuse_for_inference()
    return checkpoint


def _shard_records(shard: pd.DataFrame, corpus_dir: Path) -> list[dict]:
    folder = clips_dir(corpus_dir)
    return [
        {"path": row.path, "clip": str(folder / row.path), "client_id": row.client_id, "source_tsv": row.source_tsv,
         "duration_s": None if pd.isna(row.duration_s) else float(row.duration_s)}
        for row in shard[["path", "client_id", "source_tsv", "duration_s"]].itertuples(index=False)
    ]


def _plan(corpus_dir: Path, model_file: Path, options: InferOptions, rows: pd.DataFrame) -> dict:
    return {
        "version": PLAN_VERSION,
        "model_sha256": _file_digest(model_file),
        "model": str(model_file.resolve()),
        "corpus": str(corpus_dir.resolve()),
        "selection": options.selection,
        "tsvs": list(options.tsvs),
        "shard_size": options.shard_size,
        "rows": len(rows),
        "rows_sha256": hashlib.sha256("\n".join(rows["path"]).encode()).hexdigest(),
    }


def _prepare_out_dir(out_dir: Path, plan: dict) -> None:
    """Create out_dir or check that it was made for the same plan; drop leftovers of a killed run."""
    plan_file = out_dir / "plan.json"
    writable_folder(out_dir)
    try:
        if plan_file.is_file():
            previous = json.loads(plan_file.read_text())
            different = [k for k in ("version", "model_sha256", "selection", "tsvs", "shard_size", "rows_sha256")
                         if previous.get(k) != plan[k]]
            # a plan with no finished shard holds nothing to lose (say, a run refused a broken model): replace it
            if different and any(out_dir.glob("part-*.parquet")):
                raise CvlabelError(
                    f"{out_dir} holds predictions of another {', '.join(different)} "
                    f"(model {previous.get('model')}, selection {previous.get('selection')}); choose a new --out folder"
                )
        elif any(out_dir.glob("part-*.parquet")):
            raise CvlabelError(f"{out_dir} holds prediction shards without a plan.json; choose a new --out folder")
        for leftover in out_dir.glob("*.tmp*"):
            leftover.unlink()
        write_json(plan_file, plan)
    except OSError as exc:
        raise CvlabelError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None


def _write_parquet(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    write_parquet(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False), path)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    if options.batch_size < 1 or options.shard_size < 1 or options.jobs < 0:
        raise CvlabelError("--batch-size and --shard-size must be at least 1, --jobs at least 0")
