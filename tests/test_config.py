from pathlib import Path

import pytest

from cvlabel.config import Config, config_to_dict, from_dict, load_config, save_config
from cvlabel.errors import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_defaults():
    assert load_config() == Config()


def test_precedence_default_then_yaml_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("splits:\n  seed: 5\n  dev_fraction: 0.2\nfeatures:\n  n_mels: 40\n")
    config = load_config(path, ["splits.seed=9", "features.f_max=5000"])
    assert config.splits.seed == 9  # --set wins over the file
    assert config.splits.dev_fraction == 0.2  # the file wins over the default
    assert config.features.n_mels == 40
    assert config.features.f_max == 5000.0 and isinstance(config.features.f_max, float)
    assert config.splits.test_fraction == Config().splits.test_fraction


def test_lists_become_tuples():
    config = load_config(None, ["splits.source_tsvs=[validated, other]"])
    assert config.splits.source_tsvs == ("validated", "other")


@pytest.mark.parametrize(
    "override,message",
    [
        ("splits.bogus=1", "unknown config key 'splits.bogus'"),
        ("nosection.x=1", "unknown config key 'nosection'"),
        ("splits.seed=abc", "'splits.seed': expected int"),
        ("features.trim_silence=3", "'features.trim_silence': expected true or false"),
        ("splits.source_tsvs=validated", "'splits.source_tsvs': expected a list"),
        ("splits=3", "splits: expected a mapping"),
        ("noequals", "expected section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("splits: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_round_trip_through_yaml_and_dict(tmp_path):
    config = load_config(None, ["splits.seed=4", "features.n_mels=48"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert from_dict(Config, config_to_dict(config)) == config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=-1", "train.epochs"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.crop_seconds=0", "train.crop_seconds"),
        ("train.folds=1", "train.folds"),
        ("model.channels=[]", "model.channels"),
        ("model.dropout=1.0", "model.dropout"),
        ("augment.noise_prob=1.5", "augment.noise_prob"),
        ("features.f_max=9000", "features.f_max"),
        ("features.hop_ms=64", "features.hop_ms"),
        ("features.decoder=ffmpeg", "features.decoder"),
        ("train.epoch_clips=10", "train.epoch_clips"),  # less than a batch (32)
        ("train.dev_clips=-1", "train.dev_clips"),
    ],
)
def test_values_out_of_range_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override])


def test_a_budget_of_a_batch_or_none_is_fine():
    assert load_config(None, ["train.epoch_clips=32"]).train.epoch_clips == 32
    assert load_config(None, ["train.epoch_clips=0", "train.batch_size=64"]).train.epoch_clips == 0


def test_every_range_rule_names_a_real_key():
    from cvlabel.config import RANGES

    for key in RANGES:
        section, name = key.split(".")
        assert hasattr(getattr(Config(), section), name), key


def test_exponent_notation_is_a_float():
    assert load_config(None, ["train.learning_rate=1e-3"]).train.learning_rate == 0.001
