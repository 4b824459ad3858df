"""Progress bars for long work (decoding, training, predicting, synthesizing), in one place.

On a terminal: tqdm's live bar. Into a file or a pipe (a log, a CI job, `2> run.log`): one plain line
every PLAIN_INTERVAL_S seconds, not tqdm's carriage-return redraw ten times a second (megabytes of it
in a day's log). None at all with `cvlabel --quiet` (QUIET_ENV, which worker processes inherit).
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from tqdm import tqdm

PLAIN_INTERVAL_S = 30.0  # seconds between the lines a bar writes where no terminal shows it
QUIET_ENV = "CVLABEL_QUIET"  # "1": no progress bars (set by `cvlabel --quiet`)


class _Lines:
    """A stream that turns tqdm's redraws into whole lines."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(**options: Any) -> tqdm:
    """A tqdm bar (total, desc, unit, initial, ... as tqdm takes them) suited to where stderr goes."""
    if os.environ.get(QUIET_ENV) == "1":
        return tqdm(disable=True, **options)
    stream = sys.stderr
    if stream is None:  # pythonw, or a closed stderr: nowhere to show progress
        return tqdm(disable=True, **options)
    if not stream.isatty():
        return tqdm(file=_Lines(stream), mininterval=PLAIN_INTERVAL_S, ascii=True, **options)
    return tqdm(file=stream, **options)
