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

DEMO = DemoCorpusOptions()  # the demo corpus options' defaults, shown in --help

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
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Train the gender classifier on the self-reported rows, calibrate it on dev, measure it on test."""
    from .config import load_config
    from .evaluate import format_metrics
    from .train import train as train_run

    metrics = train_run(corpus_dir, out, load_config(config, set_))
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
    model: Path = typer.Option(..., "--model", help="Run folder written by 'cvlabel train'."),
    out: Path = typer.Option(..., "--out", help="Folder for the prediction shards."),
) -> None:
    """Predict the gender of the rows whose gender is blank (not available yet in this version)."""
    raise CvlabelError("'cvlabel infer' is not available yet in this version")


@export_app.command("parquet")
@_reports_errors
def export_parquet(
    corpus_dir: Path = typer.Argument(..., help="A Common Voice locale folder (clips/ and the TSVs)."),
    predictions: Path = typer.Option(..., "--predictions", help="Folder written by 'cvlabel infer'."),
    out: Path = typer.Option(..., "--out", help="Folder for train/dev/test Parquet files."),
) -> None:
    """Write train/dev/test Parquet with self-reported and pseudo labels (not available yet in this version)."""
    raise CvlabelError("'cvlabel export parquet' is not available yet in this version")


def main() -> None:
    app()
