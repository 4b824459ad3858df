"""What the `cvlabel` commands share: the exit codes, the one error handler, and the arguments and
options several commands take (one definition each, Typer's `Annotated` form)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import CvlabelError

FLAG = ""  # the metavar of on/off options: shown as flags, not as options taking a <bool> value


def _help_shown_as_a_flag() -> None:
    """Typer 0.2x (its own copy of click) shows the --help it adds as `--help <bool>`; our flags set an empty
    metavar (FLAG), so --help gets one too. A Typer without that copy is left as it is."""
    try:
        from typer._click.core import Command
    except ImportError:
        return
    shown = Command.get_help_option

    def get_help_option(self: Any, ctx: Any) -> Any:
        option = shown(self, ctx)
        if option is not None and option.metavar is None:
            option.metavar = FLAG
        return option

    Command.get_help_option = get_help_option  # type: ignore[method-assign]


_help_shown_as_a_flag()

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `timeout`, `kill`), raised where Ctrl-C would be, so that it is handled
    as Ctrl-C is: workers stopped, finished shards and members kept for a re-run."""


def on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


# After Ctrl-C or SIGTERM, loky's resource tracker (a process of its own, started with this process's -W
# options) may warn of "leaked semlock objects" that the stopped workers had unlinked already (its next
# warning is that they are not found): noise after the command's last line, which a test holds last.
QUIET_RESOURCE_TRACKER = "ignore::UserWarning:joblib.externals.loky.backend.resource_tracker"


def quiet_resource_tracker() -> None:
    """The command line only: the tracker's leak warnings off (a library user keeps their warnings)."""
    if QUIET_RESOURCE_TRACKER not in sys.warnoptions:
        sys.warnoptions.append(QUIET_RESOURCE_TRACKER)


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


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
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
