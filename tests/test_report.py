"""report.html of a run, of an export and of `compare --html`: one self-contained page each, its
headline made of the numbers in metrics.json / summary.json; read as a person would (Chromium)."""

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cvlabel.artifacts import ExportFolder, RunFolder
from cvlabel.certify import bound_text
from cvlabel.cli import app
from cvlabel.config import ExportOptions, InferOptions
from cvlabel.export import export_parquet
from cvlabel.html_report import export_headline
from cvlabel.inference import infer
from cvlabel.metrics import equal_count_reliability

runner = CliRunner()
MAX_PAGE_BYTES = 1_000_000
CHROMIUM = Path("/usr/bin/chromium")
IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def figures(page: str) -> list[tuple[str, np.ndarray]]:
    """Every inline figure of a page, decoded: (title, RGBA pixels)."""
    return [(title, matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png"))
            for title, data in IMAGE.findall(page)]  # fmt: skip


def assert_self_contained(page: str, expected_figures: int) -> list[tuple[str, np.ndarray]]:
    assert len(page.encode()) < MAX_PAGE_BYTES
    # nothing fetched: no script, no stylesheet link, no image or frame but inline data
    assert not re.search(r"https?://|<script|<link|<iframe|url\(", page, re.IGNORECASE)
    assert page.count("<img") == expected_figures, "every <img> is an inline PNG"
    pictures = figures(page)
    assert len(pictures) == expected_figures
    for title, pixels in pictures:
        height, width = pixels.shape[:2]
        assert width >= 300 and height >= 250, title
        assert pixels[..., :3].std() > 0.05, f"{title} is blank"
    assert page.count("<figcaption>") == expected_figures, "every figure says what to read from it"
    return pictures


@pytest.fixture(scope="module")
def predictions(synthetic_corpus, trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "pred"
    infer(synthetic_corpus, trained_run, out, InferOptions(jobs=1))
    return out


# The tiny model is near chance: export must be told to use it. Its few reference speakers cannot
# certify much, so the point estimate stands in (marked not certified), as on a small release.
def headline_of(page: str) -> str:
    """The text of a page's headline paragraph (it may span lines)."""
    found = re.search(r'<p class="headline">(.*?)</p>', page, re.DOTALL)
    assert found, "the page has no headline"
    return found.group(1)


WEAK: dict[str, Any] = {"allow_weak_model": True, "accept_uncertified": True, "target_precision": 0.6}


def test_equal_count_bins_hold_as_many_items_each_and_say_how_many():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 1003)
    correct = rng.uniform(size=1003) < confidence
    table = equal_count_reliability(correct, confidence, bins=10, min_count=20)
    assert len(table) == 10 and table["count"].sum() == 1003 and table["count"].max() - table["count"].min() <= 1
    assert (np.diff(table["confidence"]) > 0).all() and (table["low"] <= table["high"]).all()
    # calibrated draws: each bin's accuracy is near its confidence
    assert np.abs(table["accuracy"] - table["confidence"]).max() < 0.12
    # few items: fewer bins, never one of fewer than min_count (unless there are fewer in all)
    assert len(equal_count_reliability(correct[:45], confidence[:45], bins=10, min_count=20)) == 2
    assert len(equal_count_reliability(correct[:5], confidence[:5], bins=10, min_count=20)) == 1
    assert equal_count_reliability(correct[:0], confidence[:0]).empty


def test_a_run_writes_one_self_contained_page_whose_headline_is_its_metrics(trained_run):
    run = RunFolder(trained_run)
    page = run.report.read_text()
    pictures = dict(assert_self_contained(page, expected_figures=6))
    metrics = json.loads(run.metrics.read_text())
    headline = headline_of(page)
    assert f"On {metrics['clips']:,} test clips of {metrics['speakers']} speakers" in headline
    assert f"accuracy {metrics['accuracy']:.3f} (balanced {metrics['balanced_accuracy']:.3f})" in headline
    assert f"T = {metrics['temperature']:.2f}" in headline
    reference = pd.read_parquet(run.reference)
    assert f"Its {reference['client_id'].nunique():,} reference speakers" in headline
    # the run folder's figure files are the page's own figures
    for path, title in (
        (run.reliability_plot, "Reliability, held-out clips"),
        (run.confusion_plot, "Test confusion, clips"),
    ):
        on_disk = matplotlib.image.imread(path)
        assert on_disk.shape == pictures[title].shape and np.allclose(on_disk, pictures[title])
    # the speaker confusion matrix is in metrics.json, and counts every test speaker once
    assert np.sum(metrics["speaker_confusion"]) == metrics["speakers"]
    assert f"<title>cvlabel training run: {run.path.name}</title>" in page  # was "cvlabel run run"
    assert str(run.path.resolve().parent) not in page  # no folder of the user's machine


@pytest.mark.parametrize("layout", ["classifier", "release"])
def test_an_export_page_states_the_summarys_numbers(synthetic_corpus, predictions, tmp_path, layout):
    summary = export_parquet(synthetic_corpus, predictions, tmp_path / "aug", ExportOptions(layout=layout, **WEAK))
    page = ExportFolder(tmp_path / "aug").report.read_text()
    assert_self_contained(page, expected_figures=5)  # coverage, confidence, reliability, two confusions
    headline = headline_of(page)
    # a page is attached to an issue as it is: no folder of the user's machine (summary.json keeps them)
    for path in (summary["model"], summary["corpus"], summary["reference"]):
        assert path is not None and str(Path(path).parent.parent) not in page, path
    blank = summary["blank_rows"]
    labelled = sum(blank["labelled"].values())
    assert headline.startswith(f"{labelled:,} of {blank['rows']:,} blank rows labelled")
    left = sum(blank["left_blank"].values())
    assert labelled + left == blank["rows"]
    if left:
        assert f"{left:,} left blank: " in headline
    for gender, claim in summary["claims"].items():
        if claim["threshold"] is not None and claim["speakers"]:
            assert f"the {claim['speakers']} of {claim['reference_speakers']} reference speakers" in headline
            assert f"<td>{gender}</td><td>{claim['threshold']:.3f}</td>" in page

    if layout == "release":
        # summary.json's counts against the rows themselves: every row is kept in this layout
        rows = pd.concat(pd.read_parquet(ExportFolder(tmp_path / "aug").split(name)) for name in summary["rows"])
        is_blank = rows["gender_raw"].str.strip().eq("")
        assert blank["rows"] == int(is_blank.sum())
        for source in ("pseudo", "speaker"):
            assert blank["labelled"][source] == int((is_blank & rows["gender_source"].eq(source)).sum())
        assert left == int((is_blank & rows["gender"].isna()).sum())


def test_the_export_commands_last_line_is_the_headline(synthetic_corpus, predictions, tmp_path):
    out = tmp_path / "aug"
    result = runner.invoke(
        app,
        ["export", "parquet", str(synthetic_corpus), "--predictions", str(predictions), "--out", str(out),
         "--allow-weak-model", "--accept-uncertified", "--target-precision", "0.6"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    summary = ExportFolder(out).read_summary()
    assert lines[-2] == export_headline(summary)
    blank = summary["blank_rows"]
    assert lines[-2].startswith(f"{sum(blank['labelled'].values())} of {blank['rows']} blank rows labelled")
    assert str(ExportFolder(out).report) in lines[-1]


def test_compare_writes_the_runs_side_by_side(trained_run, tmp_path):
    other = shutil.copytree(trained_run, tmp_path / "run-retrained")
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["balanced_accuracy"] = 0.875  # as if retraining had changed it
    (other / "metrics.json").write_text(json.dumps(metrics))
    page_file = tmp_path / "compare.html"
    result = runner.invoke(app, ["compare", str(trained_run), str(other), "--html", str(page_file)])
    assert result.exit_code == 0, result.output
    page = page_file.read_text()
    assert_self_contained(page, expected_figures=12)  # six per run
    assert "→ 0.875" in headline_of(page)
    assert "0.8750" in page  # the metrics table, as the text command prints it
    speakers = metrics["speakers"]  # the tiny trained run's test speakers: too few to compare runs on
    assert speakers < 30 and f"tested on {speakers} speakers" in result.output and "say nothing" in page
    str(tmp_path) not in page or pytest.fail("the page shows folders of this machine")
    refused = runner.invoke(app, ["compare", str(trained_run), str(other), "--html", str(tmp_path)])
    assert refused.exit_code == 1 and "is a folder" in refused.stderr and "Traceback" not in refused.output
    nowhere = runner.invoke(app, ["compare", str(trained_run), str(other), "--html", str(tmp_path / "no" / "c.html")])
    assert nowhere.exit_code == 1 and "does not exist" in nowhere.stderr and not (tmp_path / "no").exists()
    before = page_file.read_bytes()  # an existing page is never overwritten, as no other output is
    again = runner.invoke(app, ["compare", str(trained_run), str(other), "--html", str(page_file)])
    assert again.exit_code == 1 and "exists; give another file name" in again.stderr
    assert page_file.read_bytes() == before


def screenshot(page: Path, out: Path, tmp_path: Path) -> np.ndarray:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={out}", "--window-size=1200,3000", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return matplotlib.image.imread(out)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium) to render the page")
def test_an_export_page_renders_in_a_browser_with_its_figures(synthetic_corpus, predictions, tmp_path):
    export_parquet(synthetic_corpus, predictions, tmp_path / "aug", ExportOptions(**WEAK))
    pixels = screenshot(ExportFolder(tmp_path / "aug").report, tmp_path / "shot.png", tmp_path)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    white = np.asarray((pixels > 0.97).all(axis=-1))
    assert 0.02 < (~white).mean() < 0.9, "the page is blank (or all ink)"
    # the figures were decoded and drawn: matplotlib's blue (male) lines, and dark text above them
    blue = (np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=-1) < 0.08).sum()
    assert blue > 500
    assert (~white[:150]).mean() > 0.01, "no headline at the top"


def test_an_uncertifiable_gender_names_in_the_headline_the_target_it_can_certify():
    claim = {"threshold": None, "reference_speakers": 154, "best_lower_bound": 0.908,
             "certifiable": {"target": 0.8, "threshold": 0.5, "coverage": 1.0}}  # fmt: skip
    summary: Any = {
        "blank_rows": {"rows": 10, "labelled": {"pseudo": 0, "speaker": 0}, "left_blank": {}},
        "claims": {"female": claim},
        "options": {"target_precision": 0.95},
    }  # the keys the headline reads
    headline = export_headline(summary)
    assert "no female pseudo-labels: precision 0.95 cannot be certified on 154 reference speakers" in headline
    assert "it certifies 0.8, keeping 100% of these speakers' clips: --target-precision 0.8" in headline
    del claim["certifiable"]  # a reference that certifies nothing on the ladder: no hint
    assert "--target-precision" not in export_headline(summary)


def test_a_bound_just_below_the_target_never_reads_as_the_target():
    # 0.94966 failed a 0.95 target; printed to 3 decimals it used to read "best lower bound 0.950"
    claim = {"threshold": None, "reference_speakers": 247, "best_lower_bound": 0.9496606616695799}
    summary: Any = {
        "blank_rows": {"rows": 10, "labelled": {"pseudo": 0, "speaker": 0}, "left_blank": {}},
        "claims": {"female": claim},
        "options": {"target_precision": 0.95},
    }
    assert "(best lower bound 0.949)" in export_headline(summary)
    assert [bound_text(b) for b in (0.95, 0.99, 0.9999, 1.0, 0.0)] == ["0.950", "0.990", "0.999", "1.000", "0.000"]
