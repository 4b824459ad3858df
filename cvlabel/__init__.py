"""cvlabel: calibrated pseudo-labels for the blank speaker-gender fields of Common Voice.

In a notebook: `from cvlabel import train, infer, export_parquet, export_tsv`. The stages that need torch
are imported on first use, so `import cvlabel` (and the CLI's --help) stays quick. The stage
modules are named for the stage (cvlabel.training, cvlabel.inference, cvlabel.export), never
like a function exported here, so `cvlabel.infer` is always the function and
`cvlabel.inference` always the module, whatever was imported first.
"""

from importlib import import_module
from typing import Any

from .audio import load_audio
from .config import SAMPLE_RATE, Config, ExportOptions, InferOptions, load_config
from .corpus import read_release
from .errors import AudioError, ConfigError, CorpusError, CvlabelError
from .splits import assign_splits
from .version import __version__

_LAZY = {  # public name -> module that defines it
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
    "assign_splits",
    "load_audio",
    "load_config",
    "read_release",
    *_LAZY,
]
