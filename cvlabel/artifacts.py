"""Every file cvlabel writes between stages: its name, its schema, its writer and its reader.

Three folders, in the order the data flows:

    run folder (`cvlabel train --out RUN`)
        model.safetensors             weights + the whole resolved config + temperature (checkpoint.py)
        config.yaml                   the same config, for people to read
        metrics.json                  test metrics, dev metrics, split sizes
        train_log.csv                 one row per epoch
        confusion.png, reliability.png test confusion; reliability of the held-out clips (equal-count bins)
        reference_predictions.parquet held-out self-reported rows and their logits (REFERENCE_SCHEMA)
        report.html                   the run in words and figures, one self-contained page (html_report.py)
    predictions folder (`cvlabel infer --out PRED`)
        plan.json                     what was asked: a re-run must match it to resume
        part-NNNNN.parquet            one per shard (PREDICTION_SCHEMA)
        predictions.parquet           every row after pooling per speaker (FINAL_SCHEMA)
    export folder (`cvlabel export parquet --out AUG`, `--layout classifier`, the default)
        train/dev/test/unused.parquet the release's rows with gender, gender_source, ..., p_female
        summary.json                  thresholds, what they promise, counts
        report.html                   the export in words and figures, one self-contained page
    export folder (`cvlabel export parquet --layout release --out AUG`)
        train/dev/test.parquet        the rows of the release's own train/dev/test.tsv, labels added
        validated/other/invalidated.parquet   the other rows, by the TSV they come from
        summary.json, report.html
    lhotse manifests (`cvlabel export lhotse --out AUG`)
        cv_recordings_{lang}_{split}.jsonl.gz, cv_supervisions_{lang}_{split}.jsonl.gz   as lhotse's recipe names them
        summary.json
    augmented release (`cvlabel export tsv --out AUG`)
        *.tsv                         the release's TSVs, blank genders filled, two columns added
        clips                         a symlink to the release's clips folder (or a copy, or none)
        summary.json

No torch here: the parent of parallel inference reads and writes these without it.
"""

from __future__ import annotations

import json
import shutil
import typing
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import Layout
from .corpus import clips_dir
from .errors import CvlabelError
from .files import atomic_path, write_json, write_parquet
from .labels import BINARY_GENDERS, calibrate, label_index
from .summaries import ExportSummary

# ---- the run folder ------------------------------------------------------------------------

MODEL_FILE = "model.safetensors"
REPORT_FILE = "report.html"  # a run's and an export's page (html_report.py writes it)
LEGACY_MODEL_FILE = "model.pt"  # cvlabel 0.1's checkpoint, refused with a message (checkpoint.py)


class RunFolder:
    """The paths of one training run's files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.model = self.path / MODEL_FILE
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.json"
        self.train_log = self.path / "train_log.csv"
        self.confusion_plot = self.path / "confusion.png"
        self.reliability_plot = self.path / "reliability.png"
        self.reference = self.path / "reference_predictions.parquet"
        self.report = self.path / REPORT_FILE

    def member(self, index: int) -> Path:
        """A finished committee member of an unfinished run: what a killed `train` resumes from."""
        return self.path / f"member-{index}.safetensors"

    def member_progress(self, index: int) -> Path:
        """A committee member's last finished epoch, while it trains: what a killed `train` resumes inside it."""
        return self.path / f"member-{index}.epoch.safetensors"

    def embeddings(self, split: str, block: int) -> Path:
        """A block of a split's d-vectors (model.kind encoder), while it trains: what a killed `train` keeps."""
        return self.path / f"embeddings-{split}-{block}.safetensors"

    def embedding_blocks(self) -> list[Path]:
        return sorted(self.path.glob("embeddings-*.safetensors"))

    # what an unfinished run leaves (a finished one is refused by its checkpoint): may be overwritten
    OWN = (
        "member-*.safetensors",
        "embeddings-*.safetensors",
        "config.yaml",
        "metrics.json",
        "train_log.csv",
        "confusion.png",
        "reliability.png",
        "reference_predictions.parquet",
        REPORT_FILE,
    )


BASE_MODEL = "base"  # --model base: the committee shipped inside the package (cvlabel/models/)
BASE_MODEL_FILE = Path(__file__).resolve().parent / "models" / "base.safetensors"


def model_path(path: str | Path) -> Path:
    """A run folder's checkpoint, the checkpoint file itself, or for `base` the packaged base model
    (a folder or file named `base` here too is ambiguous: name it by another path, ./base/.)"""
    if str(path) == BASE_MODEL:
        if Path(path).exists():
            raise CvlabelError(
                f"'{BASE_MODEL}' names the packaged base model and also {Path(path).resolve()}: give that path "
                f"another way (e.g. {Path(path).resolve()}) to use it"
            )
        return BASE_MODEL_FILE
    path = Path(path)
    return RunFolder(path).model if path.is_dir() else path


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    metrics = RunFolder(run_dir).metrics
    if not metrics.is_file():
        raise CvlabelError(f"{run_dir}: no metrics.json; is it a finished 'cvlabel train' run?")
    result: dict[str, Any] = json.loads(metrics.read_text())
    return result


REFERENCE_SCHEMA = pa.schema(
    [
        ("split", pa.string()),  # train (predicted out of fold) | dev | test
        ("member", pa.int64()),  # the member that never heard the speaker (train), or -1: the committee (dev, test)
        ("path", pa.string()),
        ("client_id", pa.string()),
        ("gender", pa.string()),  # self-reported: male | female
        ("logit", pa.float64()),  # the member's logit (train), or the committee's mean logit (dev, test)
        ("member_logits", pa.list_(pa.float64())),  # every predicting member's logit
        ("p_female", pa.float64()),  # calibrated, clip-level
    ]
)


def write_reference(rows: pd.DataFrame, temperature: float, path: Path) -> None:
    """Predictions on self-reported held-out rows, for choosing thresholds at a target precision."""
    frame = rows.assign(p_female=calibrate(rows["logit"].to_numpy(dtype=float), temperature))
    write_frame(frame, REFERENCE_SCHEMA, path)


def read_reference(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


# ---- the predictions folder ----------------------------------------------------------------

PLAN_VERSION = 1
PREDICTION_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # as in the TSV, relative to clips/
        ("client_id", pa.string()),
        ("source_tsv", pa.string()),  # validated | other | invalidated
        ("duration_s", pa.float64()),  # from clip_durations.tsv, else null
        ("logit", pa.float64()),  # the committee's logit: the mean of the members that scored it; null on error
        ("member_logits", pa.list_(pa.float64())),  # each member's logit, NaN if it did not score the clip
        # (infer's committee_clips); null on error
        ("p_female", pa.float64()),  # calibrated: sigmoid(logit / temperature); null on error
        ("label", pa.string()),  # male | female; null on error
        ("confidence", pa.float64()),  # max(p_female, 1 - p_female); null on error
        ("error", pa.string()),  # null, or why the clip gave no prediction
        ("decoder", pa.string()),  # bandmp3 | mpg123 (straight to native_hz / k) | soundfile (resampled); null on error
        ("native_hz", pa.int64()),  # the clip's own sample rate; null on error
    ]
)
FINAL_SCHEMA = pa.schema(
    list(PREDICTION_SCHEMA)
    + [
        ("clip_p_female", pa.float64()),  # the clip's own calibrated p_female, before pooling
        ("speaker_p_female", pa.float64()),  # sigmoid(mean logit of the speaker's predicted clips / T)
        ("speaker_n_clips", pa.int64()),  # clips pooled into speaker_p_female
        ("speaker_member_agreement", pa.float64()),  # share of members whose pooled decision is the committee's
        ("speaker_clip_agreement", pa.float64()),  # share of the speaker's clips decided as the speaker is
        ("speaker_disputed", pa.bool_()),  # members or clips disagree: never pseudo-labelled (pooling.py)
        ("label_source", pa.string()),  # speaker: self-reported on the speaker's other rows; model: pooled prediction
    ]
)


class PredictionsFolder:
    """The paths of one `cvlabel infer` output folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.plan = self.path / "plan.json"
        self.predictions = self.path / "predictions.parquet"

    OWN = ("plan.json", "part-*.parquet", "predictions.parquet", ".lock")  # a resumable run's files

    def part(self, index: int) -> Path:
        """The file of shard `index`."""
        return self.path / f"part-{index:05d}.parquet"

    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def read_plan(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = json.loads(self.plan.read_text()) if self.plan.is_file() else None
        return result

    def write_plan(self, plan: dict[str, Any]) -> None:
        write_json(self.plan, plan)

    def read_parts(self, count: int) -> pd.DataFrame:
        if count == 0:
            return PREDICTION_SCHEMA.empty_table().to_pandas()
        # one conversion to pandas for all the parts: per part it cost more than reading them; a
        # ParquetFile reads a part in 60% of read_table's time (no dataset layer)
        return pa.concat_tables([_read_part(self.part(k)) for k in range(count)]).to_pandas()


def _read_part(path: Path) -> pa.Table:
    with pq.ParquetFile(path) as part:
        return part.read()


def read_predictions(out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The final predictions and the plan of a finished `cvlabel infer` folder."""
    folder = PredictionsFolder(out_dir)
    plan = folder.read_plan()
    if plan is None or not folder.predictions.is_file():
        raise CvlabelError(f"{out_dir}: not a finished 'cvlabel infer' folder (no plan.json or predictions.parquet)")
    return pq.read_table(folder.predictions).to_pandas(), plan


# ---- the export folder ---------------------------------------------------------------------

EXPORT_LAYOUTS: tuple[str, ...] = typing.get_args(Layout)  # of `export parquet`; `export tsv` writes the layout "tsv"
EXPORT_SPLITS = ("train", "dev", "test", "unused")  # the classifier layout's files
TRAINING_SPLITS = ("train", "dev", "test")
# The release layout's files: a row is in the file of its release split (train/dev/test.tsv), else of its TSV.
RELEASE_LAYOUT_FILES = ("train", "dev", "test", "validated", "other", "invalidated")
# What every export adds to a release row (both layouts; the TSV export adds the provenance columns only):
EXPORT_LABEL_COLUMNS = (
    "gender",  # male | female | other | declined | null; in the classifier layout's train/dev/test only male | female
    "gender_source",  # self_reported | speaker (the speaker's own answer on other rows) | pseudo | null
    "gender_confidence",  # 1.0 for self_reported and speaker, the pooled calibrated confidence for pseudo
    "p_female",  # the clip's own calibrated p(female), kept below the threshold too; null where not predicted
    "speaker_p_female",  # the speaker's pooled calibrated p(female); null where not predicted
)
TSV_PROVENANCE_COLUMNS = ("gender_source", "gender_confidence")  # appended to an augmented release's TSVs


class ExportFolder:
    """The paths of one `cvlabel export parquet` output folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.summary = self.path / "summary.json"
        self.report = self.path / REPORT_FILE  # the Parquet layouts only

    # An export is quick: it is written whole into a temp folder and renamed (files.atomic_folder), so
    # an export folder is complete or absent, and never written over.

    def split(self, name: str) -> Path:
        return self.path / f"{name}.parquet"

    def read_summary(self) -> ExportSummary:
        """summary.json as written (one of an older cvlabel may lack keys: summaries.py)."""
        if not self.summary.is_file():
            raise CvlabelError(f"{self.path}: not a 'cvlabel export parquet' folder (no summary.json)")
        result: ExportSummary = json.loads(self.summary.read_text())
        return result

    def read_rows(self, splits: tuple[str, ...] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
        """The rows of the named Parquet files (default: every one the export wrote), with a `split` column."""
        summary = self.read_summary()
        if "rows" not in summary:
            raise CvlabelError(f"{self.path}: a 'cvlabel export tsv' folder holds TSVs, not Parquet files")
        names = tuple(summary["rows"]) if splits is None else splits
        parts = [pq.read_table(self.split(name), columns=columns).to_pandas().assign(split=name) for name in names]
        return pd.concat(parts, ignore_index=True)


def lhotse_manifest(folder: Path, kind: str, language: str, split: str) -> Path:
    """A lhotse manifest of `cvlabel export lhotse`: kind is recordings or supervisions. The name is the
    one lhotse's Common Voice recipe looks for (cv_{kind}_{lang}_{split}.jsonl.gz), so
    `prepare_commonvoice(..., output_dir=AUG)` reads these instead of preparing its own."""
    return folder / f"cv_{kind}_{language}_{split}.jsonl.gz"


LHOTSE_CUSTOM_COLUMNS = ("age", "accents", "variant")  # the release's columns lhotse's recipe keeps in `custom`
# and ours: `gender_label` is the export's male/female (as in Parquet's `gender`), `gender` stays the release's string
LHOTSE_LABEL_COLUMNS = ("gender_label", "gender_source", "gender_confidence", "p_female", "speaker_p_female")


# Columns of a release whose values are counts; every other release column is text, null when blank.
EXPORT_COUNT_COLUMNS = ("up_votes", "down_votes")
EXPORT_VERBATIM_COLUMNS = ("path", "client_id", "gender_raw")  # kept exactly as the TSV has them


def export_table(rows: pd.DataFrame) -> pa.Table:
    """All rows of an export in the one schema its four files share: counts as integers, blank text
    as null (but path, client_id and gender_raw verbatim). write_export_splits splits it into files."""
    frame = rows.reset_index(drop=True).copy()
    for column in frame.columns:
        if column in EXPORT_COUNT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column].replace("", None), errors="coerce").astype("Int64")
        elif frame[column].dtype == object and column not in EXPORT_VERBATIM_COLUMNS:
            frame[column] = frame[column].where(frame[column].ne("") & frame[column].notna(), None)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # a text column blank in every row (age, accents, segment... in many releases) is still text, so two
    # releases' exports share a schema and read as one table
    typed = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
    return table.cast(pa.schema(typed, metadata=table.schema.metadata))


EXPORT_BLOCK_ROWS = 250_000  # rows of the export's table split into its files at a time (a row group a block)


def write_export_splits(
    table: pa.Table, split: np.ndarray, paths: Mapping[str, Path], metadata: Mapping[str, Any]
) -> None:
    """Each file's rows of `table` (row i goes to paths[split[i]]), with the export's metadata (model,
    thresholds, options) in every Parquet footer. A block of rows at a time: a file's rows filtered out
    of the whole table at once were a second copy of most of it (0.4 GB of a 10^6-row release layout)."""
    schema = table.schema.with_metadata({**(table.schema.metadata or {}), b"cvlabel": json.dumps(metadata).encode()})
    with ExitStack() as stack:
        # entered in this order, closed in the reverse: each writer finishes its file before it is renamed
        writers = {
            name: stack.enter_context(pq.ParquetWriter(stack.enter_context(atomic_path(path)), schema))
            for name, path in paths.items()
        }
        first = 0
        for block in table.to_batches(max_chunksize=EXPORT_BLOCK_ROWS):
            names = split[first : first + block.num_rows]
            first += block.num_rows
            for name, writer in writers.items():
                chosen = names == name
                if chosen.any():
                    writer.write_batch(block if chosen.all() else block.filter(pa.array(chosen)))


def read_augmented_splits(aug_dir: str | Path, corpus_dir: str | Path) -> pd.DataFrame:
    """The male/female rows of an export's train/dev/test files, with `split`, `clip`, `label` and
    `self_reported` (False for the export's pseudo-labelled and speaker-inherited rows)."""
    folder, corpus_dir = ExportFolder(aug_dir), Path(corpus_dir)
    summary = folder.read_summary()
    if summary.get("corpus") != str(corpus_dir.resolve()):
        raise CvlabelError(f"{aug_dir} was exported from {summary.get('corpus')}, not {corpus_dir.resolve()}")
    if summary.get("layout", "classifier") != "classifier":
        raise CvlabelError(
            f"{aug_dir} is a '{summary['layout']}' export: training needs the classifier layout "
            "('cvlabel export parquet' without --layout), whose dev/test are the run's evaluation rows"
        )
    rows = folder.read_rows(TRAINING_SPLITS, columns=["path", "client_id", "gender", "gender_source"])
    rows = rows[rows["gender"].isin(BINARY_GENDERS)].reset_index(drop=True)
    clips = clips_dir(corpus_dir)
    rows["clip"] = [str(clips / p) for p in rows["path"]]
    rows["label"] = label_index(rows["gender"])
    # only a speaker's own answer vouches for a model: pseudo-labelled and inherited rows train, never measure
    rows["self_reported"] = rows["gender_source"] == "self_reported"
    return rows


def write_augmented_tsv(
    source: Path, target: Path, fills: dict[str, str], provenance: dict[str, tuple[str, str]]
) -> int | None:
    """A release TSV with blank genders filled and TSV_PROVENANCE_COLUMNS appended; the number of rows filled.

    Works on the bytes, line by line, so an existing Common Voice loader reads the result as it read
    the release: a row keeps its exact bytes (quoting, spacing, odd encodings) and only gains the two
    columns at its end; a filled row differs in its gender field alone. A row is filled only where its
    own gender field is blank and `fills` names its path; `provenance` maps a path to its two values.
    A TSV without `path` and `gender` columns (clip_durations.tsv, reported.tsv...) is copied as it is
    (returns None).
    """
    with open(source, "rb") as reader, atomic_path(target) as tmp, open(tmp, "wb") as writer:
        header = reader.readline()  # lines end at b"\n" only, as Common Voice writes them
        columns = header.rstrip(b"\r\n").decode("utf-8", "replace").split("\t")
        if not {"path", "gender"} <= set(columns):
            writer.write(header)
            shutil.copyfileobj(reader, writer)
            return None
        path_at, gender_at, filled = columns.index("path"), columns.index("gender"), 0
        names = header.rstrip(b"\r\n")
        writer.write(b"\t".join([names, *(c.encode() for c in TSV_PROVENANCE_COLUMNS)]) + header[len(names) :])
        for line in reader:
            text = line.rstrip(b"\r\n")
            if not text:
                writer.write(line)
                continue
            fields = text.split(b"\t")
            fields += [b""] * (len(columns) - len(fields))  # reading refuses short rows; padded all the same
            path = fields[path_at].decode("utf-8", "replace")
            if path in fills and not fields[gender_at].strip():
                fields[gender_at] = fills[path].encode()
                filled += 1
            added = [value.encode() for value in provenance.get(path, ("", ""))]
            writer.write(b"\t".join([*fields, *added]) + line[len(text) :])
    return filled


def write_frame(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    """A DataFrame as Parquet with exactly `schema`'s columns and types (atomically)."""
    write_parquet(pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False), path)
