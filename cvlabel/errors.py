"""Domain errors: a user mistake or bad input, reported by the CLI as one line, never a traceback."""

from __future__ import annotations


class CvlabelError(Exception):
    """Base class of every error cvlabel reports to the user as a plain message."""


class CorpusError(CvlabelError):
    """A Common Voice folder or TSV that cannot be read as a release."""


class ConfigError(CvlabelError):
    """A configuration file or `--set` override that does not fit the typed config."""


class AudioError(CvlabelError):
    """A clip that cannot be decoded into usable audio. Batch code records it and goes on."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
