"""cvlabel: calibrated pseudo-labels for the blank speaker-gender fields of Common Voice.

In a notebook: `from cvlabel import train, infer, export_parquet`. The stages that need torch
are imported on first use, so `import cvlabel` (and the CLI's --help) stays quick.
"""
from importlib import import_module

from .audio import SAMPLE_RATE, load_audio
from .config import Config, ExportOptions, InferOptions, load_config
from .corpus import read_release
from .errors import AudioError, ConfigError, CorpusError, CvlabelError
from .splits import assign_splits

__version__ = "0.1.0"

_LAZY = {
    "train": "cvlabel.train",
    "evaluate_run": "cvlabel.evaluate",
    "infer": "cvlabel.infer",
    "export_parquet": "cvlabel.export",
    "load_checkpoint": "cvlabel.checkpoint",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'cvlabel' has no attribute {name!r}")
    # Importing the stages binds their *modules* as cvlabel.train, cvlabel.infer, ...; bind the
    # functions over them, as `from .train import train` would (the modules stay in sys.modules).
    for attribute, module in _LAZY.items():
        globals()[attribute] = getattr(import_module(module), attribute)
    return globals()[name]


__all__ = [
    "SAMPLE_RATE", "AudioError", "Config", "ConfigError", "CorpusError", "CvlabelError", "ExportOptions",
    "InferOptions", "assign_splits", "load_audio", "load_config", "read_release", *_LAZY,
]
