"""cvlabel: calibrated pseudo-labels for the blank speaker-gender fields of Common Voice."""
from .audio import SAMPLE_RATE, load_audio
from .corpus import read_release
from .errors import AudioError, ConfigError, CorpusError, CvlabelError
from .splits import SplitConfig, assign_splits

__version__ = "0.1.0"

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "ConfigError",
    "CorpusError",
    "CvlabelError",
    "SplitConfig",
    "assign_splits",
    "load_audio",
    "read_release",
]
