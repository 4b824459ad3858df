"""The `cvlabel` command: parse, resolve config, call one library function, report errors.

No logic lives here. A user mistake (a CvlabelError) prints one line and exits 1.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable, List, Optional

import typer

from .democorpus import DemoCorpusOptions, make_demo_corpus
from .errors import CvlabelError
from .config import ExportOptions, InferOptions

app = typer.Typer(
    name="cvlabel",
    help="Fill in the blank speaker-gender labels of a Mozilla Common Voice release.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(help="Write the corpus with its pseudo-labels in another format.", no_args_is_help=True)
app.add_typer(export_app, name="export")

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
STDIN_ARG = "-"  # predict's file argument that means: raw PCM from stdin
DEFAULT_PCM_RATE = 16_000  # Hz: predict -'s rate when --sample-rate is not given (the model's usual rate)

DEMO = DemoCorpusOptions()  # the demo corpus options' defaults, shown in --help
INFER = InferOptions()  # infer's defaults, shown in --help
EXPORT = ExportOptions()  # export's defaults, shown in --help

SUMMARY_KEYS = ["clips", "speakers", "accuracy", "balanced_accuracy", "roc_auc", "ece_before_calibration", "ece",
                "speaker_accuracy", "precision_male", "recall_male", "precision_female", "recall_female"]
CONFIG_HELP = "YAML file of config overrides (see configs/default.yaml)."
SET_HELP = "Override one config value, e.g. --set splits.seed=3 (repeatable; wins over --config)."


def _reports_errors(command: Callable) -> Callable:
    """Turn a domain error into one line on stderr and exit code 1, and Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CvlabelError as exc:
            typer.echo(f"cvlabel: error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("cvlabel: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each step, not only warnings.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="cvlabel: %(message)s")


@app.command("demo-corpus")
@_reports_errors
def demo_corpus(
    out_dir: Path = typer.Argument(..., help="Folder to create; it must be new or empty."),
    speakers_per_gender: int = typer.Option(DEMO.speakers_per_gender, help="Speakers of each gender."),
    clips_per_speaker: int = typer.Option(DEMO.clips_per_speaker, help="Clips each speaker records."),
    locales: str = typer.Option(",".join(DEMO.locales), help="Comma-separated locales to spread speakers over."),
    engine: str = typer.Option(
        DEMO.engine,
        help="Voice engine: espeak (Debian's espeak-ng), formant (built-in numpy synthesizer), "
        "or auto (espeak when installed, else formant).",
    ),
    gender_style: str = typer.Option(
        DEMO.gender_style, help="Gender vocabulary of the TSVs: v17 (male_masculine, ...) or v16 (male, female, other)."
    ),
    seed: int = typer.Option(DEMO.seed, help="Seed: the corpus is a function of the options."),
    jobs: int = typer.Option(os.cpu_count() or 1, help="Processes that synthesize clips."),
) -> None:
    """Write a small Common-Voice-shaped corpus with free synthetic voices (no download)."""
    options = DemoCorpusOptions(
        speakers_per_gender=speakers_per_gender,
        clips_per_speaker=clips_per_speaker,
        locales=tuple(x.strip() for x in locales.split(",") if x.strip()),
        engine=engine,
        gender_style=gender_style,
        seed=seed,
    )
    summary = make_demo_corpus(out_dir, options, jobs=jobs)
    typer.echo(
        f"wrote {summary['clips']} clips ({summary['minutes']} min) of {summary['speakers']} speakers "
        f"with the {summary['engine']} engine to {out_dir}; "
        f"{summary['blank_gender_rows']} rows have a blank gender (truth in {out_dir / 'truth.tsv'})"
    )


@app.command()
@_reports_errors
def inspect(
    corpus_dir: Path = typer.Argument(..., help="A Common Voice locale folder (clips/ and the TSVs)."),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Summarise a release: rows per TSV and gender, unlabeled speakers, and the splits training would use."""
    from .config import load_config
    from .report import describe_release

    typer.echo(describe_release(corpus_dir, load_config(config, set_)))


# rich keeps a docstring's line breaks, so predict's long help is built of one-line paragraphs
PREDICT_HELP = "\n\n".join([
    "Print the calibrated gender of single clips, or a running estimate of a PCM stream read from stdin (-).",
    "Files: one line each; a broken file gets its own error line and the others still run.",
    "-: reads raw 16-bit signed little-endian mono PCM (e.g. sox IN -t raw -r 16000 -e signed -b 16 -c 1 -, "
    "or ffmpeg -i IN -f s16le -ac 1 -ar 16000 -) and prints an estimate about once a second of audio, pooled "
    "over the 4 s windows that hold speech so far, then a 'final' verdict at end of input. Memory stays bounded "
    "however long the stream. (A file named - is ./-.)",
    "Exit code 1 if any file failed, or if the stream held no speech.",
])


@app.command(help=PREDICT_HELP)
@_reports_errors
def predict(
    files: List[Path] = typer.Argument(..., help="Audio files (MP3, WAV, FLAC, ...) to classify, or - alone "
                                       "to read raw 16-bit signed little-endian mono PCM from stdin."),
    model: Path = typer.Option(..., "--model", help="Run folder written by 'cvlabel train' (or its model.pt)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file (or per update of a "
                                 "stream) instead of a line of text."),
    sample_rate: Optional[int] = typer.Option(
        None, "--sample-rate", show_default=False,
        help=f"Rate in Hz of the PCM read by -: {DEFAULT_PCM_RATE} unless given, 8000-192000, resampled to the "
        "model's. Only for -: files carry their own rate, so giving it with files is an error."),
) -> None:
    import json

    from .predict import predict_files, predict_stream

    if STDIN_ARG in (str(f) for f in files):
        if len(files) > 1:
            raise CvlabelError("'-' (stdin) cannot be mixed with files; predict them in separate commands")
        updates = predict_stream(typer.get_binary_stream("stdin"), model, sample_rate or DEFAULT_PCM_RATE)
        for update in updates:
            typer.echo(json.dumps(update) if as_json else _stream_line(update))  # echo flushes: pipes see it live
        if update["error"]:
            raise typer.Exit(EXIT_USER_ERROR)
        return
    if sample_rate is not None:
        raise CvlabelError("--sample-rate applies only to - (stdin PCM); files carry their own rate")
    results = predict_files(files, model)
    for result in results:
        if as_json:
            typer.echo(json.dumps(result))
        elif result["error"]:
            typer.echo(f"{result['path']}\terror: {result['error']}")
        else:
            typer.echo(f"{result['path']}\t{result['label']}\tp_female={result['p_female']:.4f}\t"
                       f"{result['duration_s']:.2f} s")
    if any(result["error"] for result in results):
        raise typer.Exit(EXIT_USER_ERROR)


def _stream_line(update: dict) -> str:
    """A stream update as text: seconds heard, then the estimate or why there is none yet."""
    if update["error"]:
        estimate = f"error: {update['error']}" if update["final"] else update["error"]
    else:
        windows = update["windows"]
        estimate = (f"{update['label']}\tp_female={update['p_female']:.4f}\t"
                    f"({windows} window{'' if windows == 1 else 's'})")
    line = f"{update['seconds']:.1f} s\t{estimate}"
    return f"final\t{line}" if update["final"] else line


@app.command()
@_reports_errors
def compare(
    run_dirs: List[Path] = typer.Argument(..., help="Two or more run folders written by 'cvlabel train'."),
) -> None:
    """Print the test metrics of training runs side by side (e.g. before and after retraining on pseudo-labels)."""
    from .report import compare_runs

    typer.echo(compare_runs(run_dirs))


@app.command("check-truth")
@_reports_errors
def check_truth(
    aug_dir: Path = typer.Argument(..., help="Folder written by 'cvlabel export parquet'."),
    truth: Path = typer.Option(..., "--truth", help="TSV with columns path and true_gender (a demo or "
                               "development corpus's truth.tsv)."),
) -> None:
    """Score an export's pseudo-labels against known true genders: precision and coverage, per clip and speaker."""
    from .report import check_truth as run_check

    typer.echo(run_check(aug_dir, truth))


@app.command("show-config")
@_reports_errors
def show_config(
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Print the resolved configuration (defaults, then --config, then --set) as YAML."""
    import yaml

    from .config import config_to_dict, load_config

    typer.echo(yaml.safe_dump(config_to_dict(load_config(config, set_)), sort_keys=False).rstrip())


@app.command()
@_reports_errors
def train(
    corpus_dir: Path = typer.Argument(..., help="A Common Voice locale folder (clips/ and the TSVs)."),
    out: Path = typer.Option(..., "--out", help="New run folder for model.pt, metrics.json, plots and logs."),
    augmented: Optional[Path] = typer.Option(None, "--augmented", help="Train on the train/dev/test.parquet of a "
                                             "'cvlabel export parquet' folder (pseudo-labels included) instead."),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Train the gender classifier on the self-reported rows, calibrate it on dev, measure it on test."""
    from .config import load_config
    from .evaluate import format_metrics
    from .train import train as train_run

    metrics = train_run(corpus_dir, out, load_config(config, set_), augmented=augmented)
    typer.echo(format_metrics(metrics, SUMMARY_KEYS + ["parameters", "best_epoch", "train_seconds"]))
    typer.echo(f"run written to {out}")


@app.command()
@_reports_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run folder written by 'cvlabel train'."),
    corpus_dir: Path = typer.Argument(..., help="A Common Voice locale folder (clips/ and the TSVs)."),
    split: str = typer.Option("test", help="Which self-reported rows: train, dev, test (the run's own split "
                              "settings decide them), or all."),
    as_json: bool = typer.Option(False, "--json", help="Print every metric as JSON."),
    jobs: int = typer.Option(os.cpu_count() or 1, help="Processes that decode clips not yet cached."),
) -> None:
    """Measure a trained run on the self-reported rows of any corpus."""
    import json

    from .evaluate import evaluate_run, format_metrics

    metrics = evaluate_run(run_dir, corpus_dir, split, jobs=jobs)
    typer.echo(json.dumps(metrics, indent=1) if as_json else format_metrics(metrics, SUMMARY_KEYS))


@app.command()
@_reports_errors
def infer(
    corpus_dir: Path = typer.Argument(..., help="A Common Voice locale folder (clips/ and the TSVs)."),
    model: Path = typer.Option(..., "--model", help="Run folder written by 'cvlabel train' (or its model.pt)."),
    out: Path = typer.Option(..., "--out", help="Folder for the prediction shards and predictions.parquet; "
                             "running the same command again resumes an interrupted run."),
    unlabeled: bool = typer.Option(False, "--unlabeled", help="Predict the rows whose gender is blank "
                                   "(never rows of speakers who answered other or do_not_wish_to_say)."),
    split: Optional[str] = typer.Option(None, "--split", help="Instead of --unlabeled, predict the self-reported "
                                        "rows of the run's dev or test split, to check precision at any threshold."),
    tsv: str = typer.Option(",".join(INFER.tsvs), "--tsv", help="Comma-separated clip TSVs to select rows from "
                            "(validated, other, invalidated)."),
    jobs: int = typer.Option(INFER.jobs, help="Worker processes; 0 means one per core, or in-process for "
                             "fewer than 1,000 rows, where starting workers costs more than it saves."),
    batch_size: int = typer.Option(INFER.batch_size, help="Clips per forward pass of the model."),
    shard_size: int = typer.Option(INFER.shard_size, help="Rows per shard file: the most a kill can lose."),
    backend: str = typer.Option(INFER.backend, help="local: worker processes on this machine; dask: one Dask "
                                "task per shard (needs the dask extra: pip install 'cvlabel\\[dask]'; workers must see "
                                "the corpus, the model and --out at the same paths)."),
    scheduler: str = typer.Option(INFER.scheduler, help="With --backend dask: address of a running scheduler, "
                                  "e.g. tcp://host:8786; without it a LocalCluster of --jobs workers starts here."),
) -> None:
    """Predict speaker gender for the blank-gender rows, in parallel resumable shards, pooled per speaker."""
    from .infer import infer as run_infer

    if unlabeled == (split is not None):
        raise CvlabelError("choose what to predict: --unlabeled, or --split dev|test")
    options = InferOptions(selection="unlabeled" if unlabeled else split,
                           tsvs=tuple(t.strip() for t in tsv.split(",") if t.strip()),
                           jobs=jobs, batch_size=batch_size, shard_size=shard_size, backend=backend,
                           scheduler=scheduler)
    summary = run_infer(corpus_dir, model, out, options)
    typer.echo(
        f"{summary['rows']} rows of {summary['speakers']} speakers: {summary['labels']['male']} male, "
        f"{summary['labels']['female']} female, {summary['errors']} errors "
        f"({summary['label_source'].get('speaker', 0)} from the speaker's own answer on other rows); "
        f"{summary['skipped_opted_out_rows']} blank rows skipped (speaker opted out or answered other); "
        f"{summary['seconds']} s. Predictions: {out / 'predictions.parquet'}"
    )


@export_app.command("parquet")
@_reports_errors
def export_parquet(
    corpus_dir: Path = typer.Argument(..., help="A Common Voice locale folder (clips/ and the TSVs)."),
    predictions: Path = typer.Option(..., "--predictions", help="Folder written by 'cvlabel infer --unlabeled'."),
    out: Path = typer.Option(..., "--out", help="Folder for train/dev/test/unused.parquet and summary.json."),
    min_confidence: Optional[float] = typer.Option(None, "--min-confidence", help="One confidence threshold for "
                                                   "both genders, in (0.5, 1]; replaces --target-precision."),
    target_precision: float = typer.Option(EXPORT.target_precision, "--target-precision", help="Per-gender "
                                           "thresholds reaching this precision on self-reported held-out rows."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="A 'cvlabel infer --split test' folder to "
                                             "choose thresholds on (default: the model run's own dev/test predictions)."),
    rebalance: bool = typer.Option(EXPORT.rebalance, "--rebalance/--no-rebalance", help="Bring train to "
                                   "--female-share, adding the minority gender's pseudo-labels first."),
    female_share: float = typer.Option(EXPORT.female_share, "--female-share", help="Target share of female rows in train."),
) -> None:
    """Write the release with self-reported and pseudo labels as train/dev/test Parquet files."""
    from .export import export_parquet as run_export

    options = ExportOptions(min_confidence=min_confidence, target_precision=target_precision, rebalance=rebalance,
                            female_share=female_share)
    summary = run_export(corpus_dir, predictions, out, options, reference=reference)
    thresholds = ", ".join(f"{g} {'none' if t is None else f'{t:.3f}'}" for g, t in summary["thresholds"].items())
    typer.echo(f"thresholds: {thresholds}; pseudo-labels: {summary['pseudo_labels']}; rows: {summary['rows']}")
    typer.echo(f"train before: {summary['train_before_cap_and_rebalance']}")
    typer.echo(f"train after:  {summary['train_after']}")
    typer.echo(f"written to {out} (summary.json has the details)")


def main() -> None:
    app()
