import pytest
import typer.main
from typer.testing import CliRunner

from cvlabel.cli import app
from cvlabel.corpus import read_release, read_tsv

runner = CliRunner()


def all_commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a sub-group such as `export`
            yield from all_commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


COMMANDS = list(all_commands(typer.main.get_command(app)))


def test_top_level_help_lists_the_verbs():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("train", "infer", "export", "demo-corpus", "inspect"):
        assert verb in result.output


@pytest.mark.parametrize("path,command", COMMANDS, ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_verb_has_help_and_every_option_is_explained(path, command):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help
    for param in command.params:
        assert getattr(param, "help", None), f"{' '.join(path)}: {param.name} has no help text"


def test_user_mistake_is_one_line_without_traceback(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"cvlabel: error: {tmp_path / 'nowhere'}: no such folder"]


def test_bad_set_is_a_clean_error(tiny_release):
    result = runner.invoke(app, ["inspect", str(tiny_release), "--set", "splits.nope=1"])
    assert result.exit_code == 1
    assert "unknown config key 'splits.nope'" in result.output and "Traceback" not in result.output


def test_inspect_summarises_a_release(tiny_release):
    result = runner.invoke(app, ["inspect", str(tiny_release)])
    assert result.exit_code == 0, result.output
    assert "16 clips, 8 speakers" in result.output
    assert "unlabeled (blank gender): 2 rows" in result.output


def test_show_config_applies_overrides():
    result = runner.invoke(app, ["show-config", "--set", "splits.seed=7"])
    assert result.exit_code == 0
    assert "seed: 7" in result.output


@pytest.mark.slow
def test_demo_corpus_is_a_readable_release(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(
        app,
        [
            "demo-corpus",
            str(out),
            "--engine",
            "formant",
            "--speakers-per-gender",
            "8",
            "--clips-per-speaker",
            "3",
            "--locales",
            "en,de",
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = read_release(out)
    truth = read_tsv(out / "truth.tsv")
    assert len(manifest) == len(truth) == 48
    assert set(truth["true_gender"]) == {"male", "female"}
    assert truth.groupby("true_gender")["client_id"].nunique().min() >= 8
    assert set(manifest["locale"]) == {"en", "de"}
    assert manifest["gender"].isna().sum() > 0  # some rows are unlabeled
    assert {"declined", "other"} <= set(manifest["gender"].dropna())
    # the hidden genders are the speakers' true ones
    joined = manifest.merge(truth, on="path")
    stated = joined[joined["gender"].isin(["male", "female"])]
    assert (stated["gender"] == stated["true_gender"]).all()
    assert all((out / "clips" / p).is_file() for p in manifest["path"])
    # a second run refuses to overwrite
    again = runner.invoke(app, ["demo-corpus", str(out), "--engine", "formant"])
    assert again.exit_code == 1 and "not empty" in again.output


def test_demo_corpus_rejects_bad_options(tmp_path):
    result = runner.invoke(app, ["demo-corpus", str(tmp_path / "d"), "--locales", "xx"])
    assert result.exit_code == 1 and "unknown locale 'xx'" in result.output
    result = runner.invoke(app, ["demo-corpus", str(tmp_path / "d"), "--engine", "nope"])
    assert result.exit_code == 1 and "unknown engine" in result.output


def test_infer_needs_a_selection(tiny_release, tmp_path):
    result = runner.invoke(app, ["infer", str(tiny_release), "--model", str(tmp_path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "choose what to predict" in result.output


def test_public_api_is_importable_without_loading_torch_first():
    import subprocess
    import sys

    code = (
        "import sys, cvlabel; assert 'torch' not in sys.modules; "
        "from cvlabel import train, infer, export_parquet, evaluate_run, load_checkpoint; "
        "assert callable(train) and callable(infer) and callable(export_parquet)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("first", ["function", "module"])
def test_public_functions_never_shadow_the_stage_modules(first):
    """`cvlabel.infer` is the function and `cvlabel.inference` the module, in either import order."""
    import subprocess
    import sys

    steps = {
        "function": "import cvlabel; f = cvlabel.infer; assert callable(f) and not isinstance(f, types.ModuleType)",
        "module": "import cvlabel.inference as m; assert isinstance(m, types.ModuleType)",
    }
    order = [steps[first], steps["module" if first == "function" else "function"]]
    checks = (
        "import cvlabel.inference as m, cvlabel.training as t; from cvlabel import infer, train; "
        "assert isinstance(m, types.ModuleType) and isinstance(t, types.ModuleType); "
        "assert infer is m.infer and train is t.train and cvlabel.infer is m.infer"
    )
    subprocess.run([sys.executable, "-c", "; ".join(["import types", *order, checks])], check=True)


def test_version():
    import cvlabel

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"cvlabel {cvlabel.__version__}"


def test_verbose_after_the_subcommand(tiny_release):
    import subprocess
    import sys

    late = subprocess.run([sys.executable, "-m", "cvlabel", "inspect", str(tiny_release), "-v"],
                          capture_output=True, text=True)  # fmt: skip
    assert late.returncode == 0 and "rows by TSV and gender" in late.stdout, late.stderr


@pytest.mark.parametrize("command", [[], ["predict"], ["train"], ["infer"], ["export"], ["export", "parquet"]])
def test_flags_are_shown_as_flags(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    # on/off flags (--json, and --help itself), not options that take a value
    assert "<bool>" not in result.output and "--help" in result.output


def test_cache_shows_and_clears(tmp_path):

    from cvlabel.cache import AudioCache
    from cvlabel.config import FeatureConfig
    from cvlabel.testing import write_voice

    root = tmp_path / "cache"
    clip = write_voice(tmp_path / "v.mp3", 150)
    AudioCache(root, FeatureConfig()).fill([clip, tmp_path / "missing.mp3"])
    (root / "keep.txt").write_text("not the cache's")
    shown = runner.invoke(app, ["cache", "--set", f"train.cache_dir={root}"])
    assert shown.exit_code == 0 and "1 decoded clips, 1 failed" in shown.output
    cleared = runner.invoke(app, ["cache", "--set", f"train.cache_dir={root}", "--clear"])
    assert cleared.exit_code == 0 and "cleared" in cleared.output
    assert not list(root.glob("audio-*")) and (root / "keep.txt").exists()


def test_progress_into_a_log_is_plain_lines_and_quiet_is_none(tmp_path):
    """tqdm redraws a bar ten times a second with carriage returns: into a file that is megabytes a
    day. There it writes a plain line now and then; --quiet (before or after the subcommand) none."""
    import subprocess
    import sys

    log = tmp_path / "stderr.log"
    corpus = ["--speakers-per-gender", "8", "--clips-per-speaker", "2", "--engine", "formant"]
    with open(log, "w") as stderr:
        subprocess.run([sys.executable, "-m", "cvlabel", "demo-corpus", str(tmp_path / "c1"), *corpus], stderr=stderr,
                       check=True)  # fmt: skip
    text = log.read_text()
    assert "synthesizing clips" in text and "\r" not in text
    assert len([line for line in text.splitlines() if "synthesizing clips" in line]) <= 3  # first, last, a few
    quiet = subprocess.run([sys.executable, "-m", "cvlabel", "demo-corpus", str(tmp_path / "c2"), *corpus, "-q"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert "synthesizing clips" not in quiet.stderr
