"""The `cvlabel` command: parse, resolve config, call one library function, report errors.

No logic lives here. A user mistake (a CvlabelError) prints one line and exits 1. Each stage is
imported inside its command, so `cvlabel --help` stays quick.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import DemoCorpusOptions, ExportOptions, InferOptions
from .errors import CvlabelError
from .progress import QUIET_ENV

app = typer.Typer(
    name="cvlabel",
    help="Fill in the blank speaker-gender labels of a Mozilla Common Voice release.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(help="Write the corpus with its pseudo-labels in another format.", no_args_is_help=True)
app.add_typer(export_app, name="export")

FLAG = ""  # the metavar of on/off options: shown as flags, not as options taking a <bool> value
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `timeout`, `kill`), raised where Ctrl-C would be, so that it is handled
    as Ctrl-C is: workers stopped, finished shards and members kept for a re-run."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


DEMO = DemoCorpusOptions()  # demo-corpus's defaults, shown in --help
INFER = InferOptions()  # infer's defaults, shown in --help
EXPORT = ExportOptions()  # export's defaults, shown in --help

SUMMARY_KEYS = [
    "clips",
    "speakers",
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "ece_before_calibration",
    "ece",
    "speaker_accuracy",
    "precision_male",
    "recall_male",
    "precision_female",
    "recall_female",
]

# Arguments and options that several commands share: one definition each.
CorpusArg = Annotated[Path, typer.Argument(help="A Common Voice locale folder (clips/ and the TSVs).")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML file of config overrides (see configs/default.yaml).")
]
SetOpt = Annotated[
    list[str],
    typer.Option("--set", help="Override one config value, e.g. --set splits.seed=3 (repeatable; wins over --config)."),
]
ModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        help="Run folder written by 'cvlabel train' (or its model.safetensors), or 'base': the committee shipped "
        "with cvlabel, trained on real Common Voice speakers (cvlabel/models/README.md), for a release too small "
        "to train on.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", metavar=FLAG, help="Print JSON instead of text.")]


def _reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a domain error into one line on stderr and exit code 1, and Ctrl-C into exit 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CvlabelError as exc:
            typer.echo(f"cvlabel: error: {exc}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Terminated:
            typer.echo("cvlabel: terminated (SIGTERM); finished work is kept: the same command resumes", err=True)
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            typer.echo("cvlabel: interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _print_version(asked: bool) -> None:
    if asked:
        from .version import __version__

        typer.echo(f"cvlabel {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", metavar=FLAG, help="Log each step, not only warnings.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", metavar=FLAG, help="No progress bars (into a file or pipe they are a line every 30 s)."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, metavar=FLAG, help="Print cvlabel's version and exit."
        ),
    ] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="cvlabel: %(message)s")
    if quiet:  # in the environment, so that worker processes hear it too
        os.environ[QUIET_ENV] = "1"


@app.command("demo-corpus")
@_reports_errors
def demo_corpus(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create; it must be new or empty.")],
    speakers_per_gender: Annotated[int, typer.Option(help="Speakers of each gender.")] = DEMO.speakers_per_gender,
    clips_per_speaker: Annotated[int, typer.Option(help="Clips each speaker records.")] = DEMO.clips_per_speaker,
    locales: Annotated[str, typer.Option(help="Comma-separated locales to spread speakers over.")] = ",".join(
        DEMO.locales
    ),
    engine: Annotated[
        str,
        typer.Option(
            help="Voice engine: espeak (Debian's espeak-ng), formant (built-in numpy "
            "synthesizer), or auto (espeak when installed, else formant)."
        ),
    ] = DEMO.engine,
    gender_style: Annotated[
        str, typer.Option(help="Gender vocabulary of the TSVs: v17 (male_masculine, ...) or v16 (male, female, other).")
    ] = DEMO.gender_style,
    seed: Annotated[int, typer.Option(help="Seed: the corpus is a function of the options.")] = DEMO.seed,
    jobs: Annotated[int, typer.Option(help="Processes that synthesize clips; 0 means one per core.")] = 0,
) -> None:
    """Write a small Common-Voice-shaped corpus with free synthetic voices (no download)."""
    from .democorpus import make_demo_corpus

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
def inspect(corpus_dir: CorpusArg, config: ConfigOpt = None, set_: SetOpt = []) -> None:  # noqa: B006 (Typer)
    """Summarise a release from its TSVs alone: rows per TSV and gender, unlabeled speakers, planned splits."""
    from .config import load_config
    from .report import describe_release

    typer.echo(describe_release(corpus_dir, load_config(config, set_)))


# rich keeps a docstring's line breaks, so predict's long help is built of one-line paragraphs
PREDICT_HELP = "\n\n".join(
    [
        "Print the calibrated gender of single clips, or a running estimate of a PCM stream read from stdin (-).",
        "Files: one line each; a broken file gets its own error line and the others still run.",
        "-: reads raw 16-bit signed little-endian mono PCM (e.g. sox IN -t raw -r 16000 -e signed -b 16 -c 1 -, "
        "or ffmpeg -i IN -f s16le -ac 1 -ar 16000 -) and prints an estimate about once a second of audio, pooled "
        "over the 4 s windows that hold speech so far, then a 'final' verdict at end of input. Memory stays bounded "
        "however long the stream. (A file named - is ./-.)",
        "Exit code 1 if any file failed, or if the stream held no speech.",
    ]
)


@app.command(help=PREDICT_HELP)
@_reports_errors
def predict(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Audio files (MP3, WAV, FLAC, ...) to classify, or - alone "
            "to read raw 16-bit signed little-endian mono PCM from stdin."
        ),
    ],
    model: ModelOpt,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            metavar=FLAG,
            help="Print one JSON object per file (or per update of a stream) instead of a line of text.",
        ),
    ] = False,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            "--sample-rate",
            show_default=False,
            help="Rate in Hz of the PCM read by -: 16000 unless given, 8000-192000, resampled to the model's. Only "
            "for -: files carry their own rate, so giving it with files is an error.",
        ),
    ] = None,
) -> None:
    import json

    from .predict import failed, result_line
    from .predict import predict as run_predict

    any_failed = False
    for result in run_predict(files, model, sample_rate, typer.get_binary_stream("stdin")):
        typer.echo(json.dumps(result) if as_json else result_line(result))  # echo flushes: pipes see it live
        any_failed = any_failed or failed(result)
    if any_failed:
        raise typer.Exit(EXIT_USER_ERROR)


@app.command()
@_reports_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders written by 'cvlabel train'.")],
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the comparison with each run's figures as one self-contained page."),
    ] = None,
) -> None:
    """Print the test metrics of training runs side by side (e.g. before and after retraining on pseudo-labels)."""
    from .report import compare_runs

    typer.echo(compare_runs(run_dirs, html_file))


@app.command("check-truth")
@_reports_errors
def check_truth(
    aug_dir: Annotated[Path, typer.Argument(help="Folder written by 'cvlabel export parquet'.")],
    truth: Annotated[
        Path,
        typer.Option(
            "--truth", help="TSV with columns path and true_gender (a demo or development corpus's truth.tsv)."
        ),
    ],
) -> None:
    """Score an export's pseudo-labels against known true genders: precision and coverage, per clip and speaker."""
    from .report import check_truth as run_check

    typer.echo(run_check(aug_dir, truth))


@app.command()
@_reports_errors
def cache(
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006 (Typer)
    clear: Annotated[
        bool,
        typer.Option("--clear", metavar=FLAG, help="Delete the decoded audio (it is decoded again when next needed)."),
    ] = False,
) -> None:
    """Show where the decoded-audio cache is (train.cache_dir) and what it holds; --clear empties it."""
    from .cache import cache_root, clear_cache, describe_cache
    from .config import load_config

    root = cache_root(load_config(config, set_).train.cache_dir)
    held = describe_cache(root)
    typer.echo(
        f"{held.path}: {held.clips} decoded clips, {held.failed_clips} failed, {held.bytes / 1e6:.1f} MB "
        f"in {held.settings_folders} settings folders"
    )
    if clear:
        typer.echo(f"cleared {clear_cache(root) / 1e6:.1f} MB")


@app.command("show-config")
@_reports_errors
def show_config(config: ConfigOpt = None, set_: SetOpt = []) -> None:  # noqa: B006 (Typer)
    """Print the resolved configuration (defaults, then --config, then --set) as YAML."""
    import yaml

    from .config import config_to_dict, load_config

    typer.echo(yaml.safe_dump(config_to_dict(load_config(config, set_)), sort_keys=False).rstrip())


@app.command()
@_reports_errors
def train(
    corpus_dir: CorpusArg,
    out: Annotated[Path, typer.Option("--out", help="New run folder for the model, metrics, plots and logs.")],
    augmented: Annotated[
        Path | None,
        typer.Option(
            "--augmented",
            help="Train on the train/dev/test.parquet of a 'cvlabel export parquet' folder "
            "(pseudo-labels included) instead.",
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = [],  # noqa: B006 (Typer)
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            show_default=False,
            help="Processes that decode clips into the cache; 0 means one per core. The config key train.jobs "
            "(default 0): --jobs N is --set train.jobs=N and wins over --config and --set.",
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            show_default=False,
            help="Fine-tune: start every member from this model's weights: 'base' (the model shipped with "
            "cvlabel), a run folder or a model file. The config key train.init (default: random weights); "
            "--init X is --set train.init=X and wins over --config and --set.",
        ),
    ] = None,
) -> None:
    """Train the gender classifier on the self-reported rows, calibrate it on dev, measure it on test."""
    from .artifacts import RunFolder
    from .config import load_config
    from .evaluate import format_metrics
    from .training import train as run_train

    overrides = [
        *set_,
        *([] if jobs is None else [f"train.jobs={jobs}"]),
        *([] if init is None else [f"train.init={init}"]),
    ]
    metrics = run_train(corpus_dir, out, load_config(config, overrides), augmented=augmented)
    typer.echo(format_metrics(metrics, SUMMARY_KEYS + ["parameters", "best_epochs", "train_seconds"]))
    typer.echo(f"run written to {out}: open {RunFolder(out).report}")


@app.command()
@_reports_errors
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by 'cvlabel train'.")],
    corpus_dir: CorpusArg,
    split: Annotated[
        str,
        typer.Option(
            help="Which self-reported rows: train, dev, test (the split settings "
            "inside the run's checkpoint decide them), or all."
        ),
    ] = "test",
    as_json: JsonOpt = False,
    jobs: Annotated[int, typer.Option(help="Processes that decode clips not yet cached; 0 means one per core.")] = 0,
) -> None:
    """Measure a trained run on the self-reported rows of any corpus."""
    import json

    from .evaluate import evaluate_run, format_metrics

    metrics = evaluate_run(run_dir, corpus_dir, split, jobs=jobs)
    typer.echo(json.dumps(metrics, indent=1) if as_json else format_metrics(metrics, SUMMARY_KEYS))


@app.command()
@_reports_errors
def infer(
    corpus_dir: CorpusArg,
    model: ModelOpt,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for the prediction shards and predictions.parquet; "
            "running the same command again resumes an interrupted run.",
        ),
    ],
    unlabeled: Annotated[
        bool,
        typer.Option(
            "--unlabeled",
            metavar=FLAG,
            help="Predict the rows whose gender is blank (never "
            "rows of speakers who answered other or do_not_wish_to_say).",
        ),
    ] = False,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="Instead of --unlabeled, predict the self-reported rows of the run's dev or test split, "
            "to check precision at any threshold; 'all': every self-reported row, the reference export "
            "certifies on with --model base (which never heard the release).",
        ),
    ] = None,
    tsv: Annotated[
        str,
        typer.Option("--tsv", help="Comma-separated clip TSVs to select rows from (validated, other, invalidated)."),
    ] = ",".join(INFER.tsvs),
    jobs: Annotated[
        int,
        typer.Option(
            help="Worker processes; 0 means one per core, or in-process for fewer than "
            "1,000 rows, where starting workers costs more than it saves."
        ),
    ] = INFER.jobs,
    batch_size: Annotated[int, typer.Option(help="Clips per forward pass of the model.")] = INFER.batch_size,
    shard_size: Annotated[int, typer.Option(help="Rows per shard file: the most a kill can lose.")] = INFER.shard_size,
    committee_clips: Annotated[
        int,
        typer.Option(
            help="Each speaker's first N clips are scored by every committee member, so that the members can "
            "dispute the speaker; later clips by one member in turn (one CNN a clip instead of all). "
            "A number above any speaker's clip count scores every clip by every member."
        ),
    ] = INFER.committee_clips,
    max_missing_share: Annotated[
        float,
        typer.Option(
            help="Stop before any work when more than this share of the selected rows' clips are not on disk "
            "(an incomplete clips folder); below it, each missing clip is an error row."
        ),
    ] = INFER.max_missing_share,
    backend: Annotated[
        str,
        typer.Option(
            help="local: worker processes on this machine; dask: one Dask task per shard (needs the dask extra: pip "
            "install 'cvlabel\\[dask]'; workers must see the corpus, the model and --out at the same paths)."
        ),
    ] = INFER.backend,
    scheduler: Annotated[
        str,
        typer.Option(
            help="With --backend dask: address of a running scheduler, e.g. tcp://host:8786; without it a "
            "LocalCluster of --jobs workers starts here."
        ),
    ] = INFER.scheduler,
) -> None:
    """Predict speaker gender for the blank-gender rows, in parallel resumable shards, pooled per speaker."""
    from .inference import infer as run_infer

    if unlabeled == (split is not None):
        raise CvlabelError("choose what to predict: --unlabeled, or --split dev|test|all")
    options = InferOptions(
        selection="unlabeled" if unlabeled else str(split),
        tsvs=tuple(t.strip() for t in tsv.split(",") if t.strip()),
        jobs=jobs,
        batch_size=batch_size,
        shard_size=shard_size,
        committee_clips=committee_clips,
        max_missing_share=max_missing_share,
        backend=backend,
        scheduler=scheduler,
    )
    summary = run_infer(corpus_dir, model, out, options)
    typer.echo(
        f"{summary['rows']} rows of {summary['speakers']} speakers: {summary['labels']['male']} male, "
        f"{summary['labels']['female']} female, {summary['errors']} errors ({summary['missing_clips']} clips "
        "missing) "
        f"({summary['label_source'].get('speaker', 0)} from the speaker's own answer on other rows; "
        f"{summary['disputed_rows']} of disputed speakers, never pseudo-labelled); "
        f"{summary['skipped_opted_out_rows']} blank rows skipped (speaker opted out or answered other) and "
        f"{summary['blank_rows_not_read']} in TSVs not given to --tsv; "
        f"{summary['seconds']} s. Predictions: {out / 'predictions.parquet'}"
    )
    if summary["clip_balanced_accuracy"] is not None:
        typer.echo(
            f"balanced clip accuracy on these self-reported rows: {summary['clip_balanced_accuracy']:.4f} (each "
            "clip's own decision against its speaker's answer)"
        )
    if summary["unheard_locales"]:
        typer.echo(
            f"the model never heard {len(summary['unheard_locales'])} of these rows' locales "
            f"({', '.join(summary['unheard_locales'])}): its claims rest on this release's own self-reported "
            "speakers (export --reference), not on what it was trained on"
        )
    if summary["slow_decodes"]:
        rates = ", ".join(f"{count} at {rate} Hz" for rate, count in sorted(summary["slow_decodes"].items()))
        typer.echo(
            f"{sum(summary['slow_decodes'].values())} clips decoded the slow way (soundfile + soxr: no "
            f"decimation of their rate serves the model): {rates}"
        )


# The options that `export parquet` and `export tsv` share: one definition each.
PredictionsOpt = Annotated[Path, typer.Option("--predictions", help="Folder written by 'cvlabel infer --unlabeled'.")]
MinConfidenceOpt = Annotated[
    float | None,
    typer.Option(
        "--min-confidence",
        help="One confidence threshold for both genders, in (0.5, 1]; replaces --target-precision.",
    ),
]
TargetPrecisionOpt = Annotated[
    float,
    typer.Option(
        "--target-precision",
        help="Per gender, the lowest confidence whose precision on the reference speakers (self-reported "
        "speakers predicted by models that never heard them) reaches this as a one-sided lower bound.",
    ),
]
CertaintyOpt = Annotated[float, typer.Option("--certainty", help="Confidence level of that lower bound, in (0.5, 1).")]
AcceptUncertifiedOpt = Annotated[
    bool,
    typer.Option(
        "--accept-uncertified",
        metavar=FLAG,
        help="Where too few reference speakers stand behind a gender to certify --target-precision, use the "
        "point estimate instead; summary.json then marks that threshold as not certified.",
    ),
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="A 'cvlabel infer --split test' folder to choose thresholds on (default: the model run's "
        "reference: its train speakers predicted out of fold, and its dev and test speakers); with --model "
        "base, a 'cvlabel infer --split all --model base' folder.",
    ),
]
AllowWeakModelOpt = Annotated[
    bool,
    typer.Option(
        "--allow-weak-model",
        metavar=FLAG,
        help="Pseudo-label even with a model near chance on its dev speakers (refused otherwise).",
    ),
]


@export_app.command("parquet")
@_reports_errors
def export_parquet(
    corpus_dir: CorpusArg,
    predictions: PredictionsOpt,
    out: Annotated[Path, typer.Option("--out", help="New (or empty) folder for the Parquet files and summary.json.")],
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="classifier: train/dev/test/unused.parquet for training a gender classifier (the run's "
            "dev/test speakers, capped and rebalanced train); release: every row, in the release's own "
            "train/dev/test.tsv split (other rows in validated/other/invalidated.parquet), cap and rebalance "
            "as a sample_weight column, for ASR/TTS users of the release.",
        ),
    ] = EXPORT.layout,
    min_confidence: MinConfidenceOpt = EXPORT.min_confidence,
    target_precision: TargetPrecisionOpt = EXPORT.target_precision,
    certainty: CertaintyOpt = EXPORT.certainty,
    accept_uncertified: AcceptUncertifiedOpt = EXPORT.accept_uncertified,
    reference: ReferenceOpt = None,
    allow_weak_model: AllowWeakModelOpt = EXPORT.allow_weak_model,
    rebalance: Annotated[
        bool,
        typer.Option(
            "--rebalance/--no-rebalance",
            metavar=FLAG,
            help="Bring train to --female-share, adding the minority gender's pseudo-labels first (release "
            "layout: by sample_weight, no row dropped).",
        ),
    ] = EXPORT.rebalance,
    female_share: Annotated[
        float, typer.Option("--female-share", help="Target share of female rows in train.")
    ] = EXPORT.female_share,
) -> None:
    """Write the release with self-reported and pseudo labels as Parquet: a classifier's splits, or the release's."""
    from .artifacts import ExportFolder
    from .export import export_parquet as run_export

    options = _export_options(
        min_confidence, target_precision, certainty, accept_uncertified, allow_weak_model,
        rebalance=rebalance, female_share=female_share, layout=layout,
    )  # fmt: skip
    summary = run_export(corpus_dir, predictions, out, options, reference=reference)
    _say_exported(summary, out, ExportFolder(out).report)


@export_app.command("tsv")
@_reports_errors
def export_tsv(
    corpus_dir: CorpusArg,
    predictions: PredictionsOpt,
    out: Annotated[
        Path, typer.Option("--out", help="New (or empty) folder for the augmented release: its TSVs and clips.")
    ],
    clips: Annotated[
        str,
        typer.Option(
            "--clips",
            help="link: OUT/clips is a symlink to the release's clips folder; copy: copies every clip; none: no "
            "clips folder (point your loader at the original one).",
        ),
    ] = "link",
    min_confidence: MinConfidenceOpt = EXPORT.min_confidence,
    target_precision: TargetPrecisionOpt = EXPORT.target_precision,
    certainty: CertaintyOpt = EXPORT.certainty,
    accept_uncertified: AcceptUncertifiedOpt = EXPORT.accept_uncertified,
    reference: ReferenceOpt = None,
    allow_weak_model: AllowWeakModelOpt = EXPORT.allow_weak_model,
) -> None:
    """Write the release's own TSVs with the blank genders filled in its vocabulary, for Common Voice loaders."""
    from .artifacts import ExportFolder
    from .export import export_tsv as run_export

    options = _export_options(min_confidence, target_precision, certainty, accept_uncertified, allow_weak_model)
    summary = run_export(corpus_dir, predictions, out, options, reference=reference, clips=clips)
    _say_exported(summary, out, ExportFolder(out).report)


@export_app.command("lhotse")
@_reports_errors
def export_lhotse(
    corpus_dir: CorpusArg,
    predictions: PredictionsOpt,
    out: Annotated[Path, typer.Option("--out", help="New (or empty) folder for the lhotse manifests.")],
    min_confidence: MinConfidenceOpt = EXPORT.min_confidence,
    target_precision: TargetPrecisionOpt = EXPORT.target_precision,
    certainty: CertaintyOpt = EXPORT.certainty,
    accept_uncertified: AcceptUncertifiedOpt = EXPORT.accept_uncertified,
    reference: ReferenceOpt = None,
    allow_weak_model: AllowWeakModelOpt = EXPORT.allow_weak_model,
) -> None:
    """Write lhotse recordings and supervisions manifests as lhotse's Common Voice recipe does, labels included
    (needs the lhotse extra)."""
    from .artifacts import ExportFolder
    from .export import export_lhotse as run_export

    options = _export_options(min_confidence, target_precision, certainty, accept_uncertified, allow_weak_model)
    summary = run_export(corpus_dir, predictions, out, options, reference=reference)
    _say_exported(summary, out, ExportFolder(out).report)


def _export_options(
    min_confidence: float | None,
    target_precision: float,
    certainty: float,
    accept_uncertified: bool,
    allow_weak_model: bool,
    **layout: Any,
) -> ExportOptions:
    """The options every export shares (how labels are chosen), plus those of a layout (export parquet)."""
    return ExportOptions(
        min_confidence=min_confidence,
        target_precision=target_precision,
        certainty=certainty,
        accept_uncertified=accept_uncertified,
        allow_weak_model=allow_weak_model,
        **layout,
    )


def _say_exported(summary: dict[str, Any], out: Path, report: Path | None = None) -> None:
    """An export's last lines: its headline, and where it went."""
    from .report import describe_export

    typer.echo(describe_export(summary))
    opened = f": open {report}" if report else ""
    typer.echo(f"written to {out}{opened} (summary.json has the details)")


GLOBAL_FLAGS = {"-v": "--verbose", "--verbose": "--verbose", "-q": "--quiet", "--quiet": "--quiet"}


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)  # the command line only: a library user keeps their own handler
    args = list(sys.argv[1:] if argv is None else argv)
    # -v and -q work after the subcommand too (`cvlabel train CORPUS --out RUN -v`), where people type them
    given = [GLOBAL_FLAGS[arg] for arg in args if arg in GLOBAL_FLAGS]
    if given:  # all of them first, where the app's options are parsed
        args = [*dict.fromkeys(given), *(arg for arg in args if arg not in GLOBAL_FLAGS)]
    app(args=args)
