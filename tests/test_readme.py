"""The README's "use the labels in your training code" snippets, run as written against a real export."""

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from cvlabel.artifacts import ExportFolder
from cvlabel.config import ExportOptions, InferOptions
from cvlabel.corpus import read_tsv
from cvlabel.export import export_parquet, export_tsv
from cvlabel.inference import infer

README = Path(__file__).parent.parent / "README.md"
# the paths the snippets are written with (those of `make demo`), and what stands in for them here
AUG, TSV, CORPUS = "outputs/demo/augmented", "outputs/demo/cv-tsv", "outputs/demo/corpus"
WEAK = ExportOptions(allow_weak_model=True, accept_uncertified=True, target_precision=0.6)  # the tiny model


def snippets() -> list[str]:
    text = README.read_text()
    section = text.split("## Use the labels in your training code", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.fixture(scope="module")
def exports(synthetic_corpus, trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    infer(synthetic_corpus, trained_run, base / "pred", InferOptions(jobs=1))
    export_parquet(synthetic_corpus, base / "pred", base / "aug", WEAK)
    export_tsv(synthetic_corpus, base / "pred", base / "tsv", WEAK)
    return {"aug": base / "aug", "tsv": base / "tsv", "corpus": synthetic_corpus}


def run_snippet(code: str, exports: dict[str, Path]) -> dict:
    for placeholder, key in ((TSV, "tsv"), (AUG, "aug"), (CORPUS, "corpus")):  # the longest first
        code = code.replace(placeholder, str(exports[key]))
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_the_readme_has_the_four_snippets():
    codes = snippets()
    assert len(codes) == 4
    assert [
        next(key for key in ("pd.read_parquet", "load_dataset(", "duckdb.sql", "validated.tsv") if key in code)
        for code in codes
    ] == ["pd.read_parquet", "load_dataset(", "duckdb.sql", "validated.tsv"]


def test_pandas_snippet(exports, capsys):
    found = run_snippet(snippets()[0], exports)
    summary = ExportFolder(exports["aug"]).read_summary()
    assert len(found["train"]) == summary["rows"]["train"]
    sure = found["sure"]
    assert set(sure["gender"]) <= {"male", "female"}
    assert (sure.loc[sure["gender_source"] == "pseudo", "gender_confidence"] >= 0.99).all()
    assert "gender_source" in capsys.readouterr().out


def test_datasets_snippet_offline(exports, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # its caches, not the user's
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = run_snippet(snippets()[1], exports)
    summary = ExportFolder(exports["aug"]).read_summary()
    assert {split: found["ds"][split].num_rows for split in ("train", "dev", "test")} == {
        split: summary["rows"][split] for split in ("train", "dev", "test")
    }
    assert os.path.isfile(found["row"]["audio"]["path"])
    assert found["rate"] > 0 and len(found["samples"]) > 0
    assert found["row"]["gender"] in ("male", "female")


def test_duckdb_snippet(exports):
    counts = run_snippet(snippets()[2], exports)["counts"]
    rows = ExportFolder(exports["aug"]).read_rows()
    binary = rows[rows["gender"].isin(["male", "female"])]
    assert int(counts["clips"].sum()) == len(binary)
    assert set(counts["split"]) == set(binary["split"])


def test_tsv_snippet(exports):
    found = run_snippet(snippets()[3], exports)
    summary = ExportFolder(exports["tsv"]).read_summary()
    assert len(found["validated"]) == len(read_tsv(exports["corpus"] / "validated.tsv"))
    assert len(found["filled"]) == summary["filled"]["validated.tsv"]
    assert isinstance(found["validated"], pd.DataFrame)
