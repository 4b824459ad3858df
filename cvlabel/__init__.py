"""cvlabel: calibrated pseudo-labels for the blank speaker-gender fields of Common Voice.

In a notebook: `from cvlabel import train, infer, export_parquet, export_tsv`. The stages that need torch
are imported on first use, so `import cvlabel` (and the CLI's --help) stays quick. The stage
modules are named for the stage (cvlabel.training, cvlabel.inference, cvlabel.export), never
like a function exported here, so `cvlabel.infer` is always the function and
`cvlabel.inference` always the module, whatever was imported first.
"""

from importlib import import_module
from typing import Any

from .config import SAMPLE_RATE, Config, ExportOptions, InferOptions, load_config
from .errors import AudioError, ConfigError, CorpusError, CvlabelError
from .version import __version__

_LAZY = {  # public name -> module that defines it (numpy, pandas and torch load on first use)
    "load_audio": "cvlabel.audio",
    "read_release": "cvlabel.corpus",
    "assign_splits": "cvlabel.splits",
    "train": "cvlabel.training",
    "evaluate_run": "cvlabel.evaluate",
    "infer": "cvlabel.inference",
    "export_parquet": "cvlabel.export",
    "export_tsv": "cvlabel.export",
    "export_lhotse": "cvlabel.export",
    "write_run_report": "cvlabel.html_report",
    "load_checkpoint": "cvlabel.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cvlabel' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
    "SAMPLE_RATE",
    "AudioError",
    "Config",
    "ConfigError",
    "CorpusError",
    "CvlabelError",
    "ExportOptions",
    "InferOptions",
    "load_config",
    *_LAZY,
]
