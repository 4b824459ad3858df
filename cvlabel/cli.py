"""The `cvlabel` command: parse, resolve config, call one library function, report errors.

No logic lives here. A user mistake (a CvlabelError) prints one line and exits 1. Each stage is
imported inside its command, so `cvlabel --help` stays quick.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, cast

import typer

from .cli_export import export_app
from .cli_infer import infer
from .cli_options import (
    EXIT_USER_ERROR,
    FLAG,
    ConfigOpt,
    CorpusArg,
    JsonOpt,
    ModelOpt,
    SetOpt,
    on_sigterm,
    quiet_resource_tracker,
    reports_errors,
)
from .config import DemoCorpusOptions, Engine, GenderStyle
from .progress import QUIET_ENV

app = typer.Typer(
    name="cvlabel",
    help="Fill in the blank speaker-gender labels of a Mozilla Common Voice release.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEMO = DemoCorpusOptions()  # demo-corpus's defaults, shown in --help


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
@reports_errors
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
        engine=cast(Engine, engine),  # both checked by democorpus, one line each
        gender_style=cast(GenderStyle, gender_style),
        seed=seed,
    )
    summary = make_demo_corpus(out_dir, options, jobs=jobs)
    typer.echo(
        f"wrote {summary['clips']} clips ({summary['minutes']} min) of {summary['speakers']} speakers "
        f"with the {summary['engine']} engine to {out_dir}; "
        f"{summary['blank_gender_rows']} rows have a blank gender (truth in {out_dir / 'truth.tsv'})"
    )


@app.command()
@reports_errors
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
@reports_errors
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
@reports_errors
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
@reports_errors
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
@reports_errors
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
@reports_errors
def show_config(config: ConfigOpt = None, set_: SetOpt = []) -> None:  # noqa: B006 (Typer)
    """Print the resolved configuration (defaults, then --config, then --set) as YAML."""
    import yaml

    from .config import config_to_dict, load_config

    typer.echo(yaml.safe_dump(config_to_dict(load_config(config, set_)), sort_keys=False).rstrip())


@app.command()
@reports_errors
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
    """Train the gender classifier on the self-reported rows, calibrate it on dev, measure it on test.

    --set model.kind=encoder: heads on a pretrained speaker encoder, not CNNs: more accurate, 3.5x slower (README)."""
    from .artifacts import RunFolder
    from .config import load_config
    from .evaluate import METRIC_KEYS, format_metrics
    from .training import train as run_train

    overrides = [
        *set_,
        *([] if jobs is None else [f"train.jobs={jobs}"]),
        *([] if init is None else [f"train.init={init}"]),
    ]
    metrics = run_train(corpus_dir, out, load_config(config, overrides), augmented=augmented)
    typer.echo(format_metrics(metrics, [*METRIC_KEYS, "parameters", "best_epochs", "train_seconds"]))
    seen = metrics["clips_seen"]
    typer.echo(
        f"each epoch drew {seen['epoch_clips']:,} of a member's {seen['member_train_clips']:,} train clips "
        f"(train.epoch_clips); {seen['crops']:,} crops in all"
    )
    typer.echo(f"run written to {out}: open {RunFolder(out).report}")


@app.command()
@reports_errors
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

    from .evaluate import METRIC_KEYS, evaluate_run, format_metrics

    metrics = evaluate_run(run_dir, corpus_dir, split, jobs=jobs)
    typer.echo(json.dumps(metrics, indent=1) if as_json else format_metrics(metrics, METRIC_KEYS))


app.command()(infer)  # cli_infer.py, cli_export.py: the labelling commands
app.add_typer(export_app, name="export")

GLOBAL_FLAGS = {"-v": "--verbose", "--verbose": "--verbose", "-q": "--quiet", "--quiet": "--quiet"}


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, on_sigterm)  # the command line only: a library user keeps their own handler
    quiet_resource_tracker()
    args = list(sys.argv[1:] if argv is None else argv)
    # -v and -q work after the subcommand too (`cvlabel train CORPUS --out RUN -v`), where people type them
    given = [GLOBAL_FLAGS[arg] for arg in args if arg in GLOBAL_FLAGS]
    if given:  # all of them first, where the app's options are parsed
        args = [*dict.fromkeys(given), *(arg for arg in args if arg not in GLOBAL_FLAGS)]
    app(args=args)
