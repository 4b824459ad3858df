"""`cvlabel export parquet|tsv|lhotse`: the export commands (a sub-app of `cvlabel`), over export.py's formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_options import FLAG, CorpusArg, reports_errors
from .config import ExportOptions
from .summaries import ExportSummary

export_app = typer.Typer(help="Write the corpus with its pseudo-labels in another format.", no_args_is_help=True)
EXPORT = ExportOptions()  # export's defaults, shown in --help

# The options every export command shares: one definition each.
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
@reports_errors
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
@reports_errors
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
@reports_errors
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


def _say_exported(summary: ExportSummary, out: Path, report: Path | None = None) -> None:
    """An export's last lines: its headline, and where it went."""
    from .report import describe_export

    typer.echo(describe_export(summary))
    opened = f": open {report}" if report else ""
    typer.echo(f"written to {out}{opened} (summary.json has the details)")
