"""`cvlabel infer`: its options, over inference.infer (registered on the app by cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from .cli_options import FLAG, CorpusArg, ModelOpt, reports_errors
from .config import Backend, InferOptions, Selection
from .errors import CvlabelError

INFER = InferOptions()  # infer's defaults, shown in --help


@reports_errors
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
        # checked by inference (one line for a value outside the Literal), as for a library caller
        selection=cast(Selection, "unlabeled" if unlabeled else str(split)),
        tsvs=tuple(t.strip() for t in tsv.split(",") if t.strip()),
        jobs=jobs,
        batch_size=batch_size,
        shard_size=shard_size,
        committee_clips=committee_clips,
        max_missing_share=max_missing_share,
        backend=cast(Backend, backend),
        scheduler=scheduler,
    )
    summary = run_infer(corpus_dir, model, out, options)
    # imported after the run: report loads html_report and matplotlib, which the parent of the workers does
    # without (loaded first, 3 of 13 SIGTERM tests ended with loky warning of a leaked semaphore; 0 of 7 after)
    from .report import describe_infer

    typer.echo(describe_infer(summary, out))
