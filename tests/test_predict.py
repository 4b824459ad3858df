import json

from typer.testing import CliRunner

from cvlabel.cli import app
from cvlabel.predict import predict_files

from conftest import write_voice

runner = CliRunner()


def test_predict_files_one_result_each_and_broken_files_do_not_stop_the_rest(trained_run, tmp_path):
    low = write_voice(tmp_path / "low.mp3", 110, seconds=1.5)
    high = write_voice(tmp_path / "high.wav", 220, seconds=1.5)
    missing = tmp_path / "missing.mp3"
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"\x00not audio" * 100)
    results = predict_files([low, missing, high, garbage], trained_run)
    assert [r["path"] for r in results] == [str(low), str(missing), str(high), str(garbage)]
    for good in (results[0], results[2]):
        assert good["error"] is None and good["label"] in ("male", "female")
        assert 0 <= good["p_female"] <= 1 and good["confidence"] >= 0.5
        assert abs(good["duration_s"] - 2.1) < 0.1  # 1.5 s of voice and 0.3 s of silence each side
    assert results[1]["error"] == "file not found" and results[1]["label"] is None
    assert "cannot decode" in results[3]["error"]


def test_predict_cli_text_json_and_exit_code(trained_run, tmp_path):
    clip = write_voice(tmp_path / "a.mp3", 200, seconds=1.0)
    ok = runner.invoke(app, ["predict", str(clip), "--model", str(trained_run)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"{clip}\t") and "p_female=" in ok.output
    as_json = runner.invoke(app, ["predict", str(clip), str(tmp_path / "nope.mp3"), "--model", str(trained_run),
                                  "--json"])
    assert as_json.exit_code == 1  # one file failed
    lines = [json.loads(line) for line in as_json.output.strip().splitlines()]
    assert lines[0]["error"] is None and lines[1]["error"] == "file not found"
    bad_model = runner.invoke(app, ["predict", str(clip), "--model", str(tmp_path / "no-run")])
    assert bad_model.exit_code == 1 and "no such checkpoint" in bad_model.output
