import io
import itertools
import json
import re
import tracemalloc
from typing import BinaryIO, cast

import numpy as np
import pytest
import soundfile
import soxr
from typer.testing import CliRunner

from cvlabel.cli import app
from cvlabel.config import FeatureConfig
from cvlabel.errors import CvlabelError
from cvlabel.labels import LABELS
from cvlabel.predict import (
    STREAM_DEFAULT_RATE,
    STREAM_WINDOW_S,
    pcm_blocks,
    predict_files,
    predict_stream,
    resample_blocks,
    verdict,
)
from cvlabel.scoring import InferenceModel, inference_model
from cvlabel.speech import Speech, speech_only
from cvlabel.synthesis import synthesize_formant_voice
from cvlabel.testing import write_voice

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
    as_json = runner.invoke(
        app, ["predict", str(clip), str(tmp_path / "nope.mp3"), "--model", str(trained_run), "--json"]
    )
    assert as_json.exit_code == 1  # one file failed
    lines = [json.loads(line) for line in as_json.output.strip().splitlines()]
    assert lines[0]["error"] is None and lines[1]["error"] == "file not found"
    bad_model = runner.invoke(app, ["predict", str(clip), "--model", str(tmp_path / "no-run")])
    assert bad_model.exit_code == 1 and "no-run: no such run folder or model file" in bad_model.output


# --- streaming PCM from stdin (`cvlabel predict -`) ---------------------------------------------

RATE = FeatureConfig().sample_rate  # Hz: the test models' rate (so the stream is not resampled)


def voice(seconds: float, pitch_hz: float = 210, sample_rate: float = RATE, silence_s: float = 0.0) -> np.ndarray:
    """Synthetic voice (after `silence_s` of silence), float32 at `sample_rate`."""
    rng = np.random.default_rng(0)
    voiced = synthesize_formant_voice(
        "a e i o u " * max(1, int(seconds * 3)),
        pitch_hz,
        1.0 if pitch_hz < 160 else 1.17,
        rng,
        sample_rate=int(sample_rate),
    )
    samples = np.concatenate([np.zeros(int(silence_s * sample_rate), np.float32), voiced])
    return samples[: int(seconds * sample_rate)]


def pcm(samples: np.ndarray) -> bytes:
    return (samples * 32767).astype("<i2").tobytes()


def as_wav(path, samples: np.ndarray, sample_rate: float = RATE):
    """The same 16-bit samples a PCM stream carries, as a WAV file for predict_files."""
    soundfile.write(path, (samples * 32767).astype("<i2"), sample_rate, subtype="PCM_16")
    return path


def test_predict_stream_estimates_each_second_then_a_final_verdict_with_the_tail(trained_run):
    updates = list(predict_stream(io.BytesIO(pcm(voice(5.5))), trained_run, RATE))
    assert [u["seconds"] for u in updates] == [1.0, 2.0, 3.0, 4.0, 5.0, 5.5]
    assert [u["final"] for u in updates] == [False] * 5 + [True]
    # growing windows stand alone until the first full 4 s window; then full windows are pooled
    assert [u["windows"] for u in updates] == [1, 1, 1, 1, 2, 3]  # the final's third is the 0.5 s tail's window
    assert [u["buffered_s"] for u in updates] == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    final = updates[-1]
    assert final["label"] in LABELS and 0 <= final["p_female"] <= 1 and final["confidence"] >= 0.5
    assert final["error"] is None


@pytest.fixture
def speech_seconds_logit(monkeypatch):
    """The model's logit replaced by the seconds of speech it is given, minus 2, so which samples each
    window heard after trimming shows in p_female (the tiny test model says about 0.5 to any audio)."""
    monkeypatch.setattr(
        InferenceModel,
        "logits",
        lambda self, speech, batch_size=32: np.array(
            [s.samples.shape[0] / s.rate - 2.0 if isinstance(s, Speech) else s.shape[0] / RATE - 2.0 for s in speech]
        ),
    )


def test_full_windows_of_trimmed_speech_are_pooled_by_mean_logit(trained_run, speech_seconds_logit):
    stream = pcm(voice(5.5, silence_s=0.4))
    updates = list(predict_stream(io.BytesIO(stream), trained_run, RATE))
    model = inference_model(trained_run)
    samples = np.frombuffer(stream, "<i2").astype(np.float32) / 32768

    def window_logit(start_s: float, end_s: float) -> float:
        return float(
            model.logits([speech_only(samples[int(start_s * RATE) : int(end_s * RATE)], model.features, "w")])[0]
        )

    growing = [window_logit(0, end) for end in (1, 2, 3)]  # each alone, until the window first fills
    full = [window_logit(0, 4), window_logit(1, 5), window_logit(1.5, 5.5)]  # the last: the tail's window
    expected = [
        verdict(model, logit)["p_female"]
        for logit in growing + [full[0], float(np.mean(full[:2])), float(np.mean(full))]
    ]
    assert len(set(expected)) == 6  # the figures tell the windows apart
    assert [u["p_female"] for u in updates] == pytest.approx(expected, abs=1e-4)


def test_a_stream_shorter_than_a_window_is_judged_like_the_same_audio_as_a_file(
    trained_run, tmp_path, speech_seconds_logit
):
    """Same silence trimming as files: the first estimate and a short stream's verdict equal
    predict_files on the same samples."""
    samples = voice(2.5, silence_s=0.4)  # leading silence, so trimming matters
    updates = list(predict_stream(io.BytesIO(pcm(samples)), trained_run, RATE))
    first_second, whole = predict_files(
        [as_wav(tmp_path / "first.wav", samples[:RATE]), as_wav(tmp_path / "whole.wav", samples)], trained_run
    )
    assert first_second["p_female"] != whole["p_female"]
    assert updates[0]["p_female"] == first_second["p_female"]
    assert updates[-1]["final"] and updates[-1]["seconds"] == 2.5 and updates[-1]["windows"] == 1
    assert updates[-1]["p_female"] == whole["p_female"]


def test_predict_stream_memory_stays_bounded_over_ten_minutes(trained_run):
    """Blocks are produced lazily and consumed as they come; the buffer never holds more than a window,
    and memory peaks far below the 38 MB the 10 minutes of float32 samples would take."""
    produced_s = 0.0
    tone = (0.3 * np.sin(2 * np.pi * 180 * np.arange(RATE) / RATE)).astype(np.float32)

    def endless_blocks():  # 10 minutes in blocks of 1.3 s and 0.7 s: block edges fall anywhere
        nonlocal produced_s
        sizes = itertools.cycle([int(1.3 * RATE), int(0.7 * RATE)])
        while produced_s < 600:
            size = next(sizes)
            produced_s += size / RATE
            yield np.resize(tone, size) * np.float32(1 + 0.1 * np.sin(produced_s))

    updates = 0
    tracemalloc.start()
    try:
        for update in predict_stream(endless_blocks(), trained_run, RATE):
            assert update["buffered_s"] <= STREAM_WINDOW_S
            assert produced_s - update["seconds"] <= 1.3  # never read ahead more than a block
            updates += 1
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 5e6
    assert updates == 601 and update["final"] and update["seconds"] == 600.0
    assert update["windows"] == 597  # the full windows ending at 4 s, 5 s, ..., 600 s
    assert update["label"] in LABELS


def test_a_silent_stream_has_no_verdict_and_the_command_exits_1(trained_run):
    silence = pcm(np.zeros(int(2.5 * STREAM_DEFAULT_RATE), np.float32))  # the CLI's rate unless told
    updates = list(predict_stream(io.BytesIO(silence), trained_run, STREAM_DEFAULT_RATE))
    assert [u["error"] for u in updates] == ["no speech yet", "no speech yet", "no speech found"]
    assert updates[-1]["final"] and updates[-1]["label"] is None and updates[-1]["windows"] == 0
    result = runner.invoke(app, ["predict", "-", "--model", str(trained_run)], input=silence)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "1.0 s\tno speech yet",
        "2.0 s\tno speech yet",
        "final\t2.5 s\terror: no speech found",
    ]
    empty = runner.invoke(app, ["predict", "-", "--model", str(trained_run)], input=b"")
    assert empty.exit_code == 1 and empty.output == "final\t0.0 s\terror: no speech found\n"


def test_predict_cli_reads_stdin_at_48_khz_as_text_and_json(trained_run):
    stream = pcm(voice(5.0, pitch_hz=110, sample_rate=48_000))
    text = runner.invoke(app, ["predict", "-", "--model", str(trained_run), "--sample-rate", "48000"], input=stream)
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert len(lines) == 6
    assert re.fullmatch(r"1\.0 s\t(male|female)\tp_female=[01]\.\d{4}\t\(1 window\)", lines[0])
    assert re.fullmatch(r"final\t5\.0 s\t(male|female)\tp_female=[01]\.\d{4}\t\(2 windows\)", lines[-1])
    as_json = runner.invoke(
        app, ["predict", "-", "--model", str(trained_run), "--sample-rate", "48000", "--json"], input=stream
    )
    assert as_json.exit_code == 0, as_json.output
    updates = [json.loads(line) for line in as_json.output.splitlines()]
    assert [u["final"] for u in updates] == [False] * 5 + [True]
    assert abs(updates[-1]["seconds"] - 5.0) < 0.01  # resampled 3:1, the resampler's delay flushed at the end


def test_resample_blocks_leaves_no_seams_at_block_edges():
    recording = voice(3.0, sample_rate=44_100)
    blocks = [recording[i : i + 30_000] for i in range(0, recording.shape[0], 30_000)]  # edges mid-syllable
    streamed = np.concatenate(list(resample_blocks(blocks, 44_100, RATE)))
    np.testing.assert_allclose(streamed, soxr.resample(recording, 44_100, RATE), atol=1e-6)


class TrickleReader(io.RawIOBase):
    """A pipe that hands over at most 3 bytes per read, so samples are torn between reads."""

    def __init__(self, data: bytes):
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk, self.data = self.data[:3], self.data[3:]
        return chunk


def test_pcm_blocks_keeps_torn_samples_and_drops_an_odd_last_byte():
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype="<i2")
    expected = samples.astype(np.float32) / 32768
    decoded = np.concatenate(list(pcm_blocks(cast(BinaryIO, TrickleReader(samples.tobytes() + b"\x7f")), RATE)))
    np.testing.assert_array_equal(decoded, expected)
    blocks = list(pcm_blocks(io.BytesIO(samples.tobytes() + b"\x7f"), sample_rate=8_000, block_s=0.0005))
    assert [b.shape[0] for b in blocks] == [4, 2]  # 0.5 ms at 8 kHz is 4 samples; the odd byte dropped
    np.testing.assert_array_equal(np.concatenate(blocks), expected)


def test_predict_stream_rejects_bad_rates_mixed_arguments_and_a_terminal(trained_run, tmp_path):
    odd = runner.invoke(
        app,
        ["predict", "-", "--model", str(trained_run)],
        input=pcm(voice(1.5, sample_rate=STREAM_DEFAULT_RATE)) + b"\x01",
    )
    assert odd.exit_code == 0 and odd.output.startswith("1.0 s\t") and "final\t1.5 s\t" in odd.output
    for rate in ("7999", "192001"):
        bad = runner.invoke(app, ["predict", "-", "--model", str(trained_run), "--sample-rate", rate], input=b"")
        assert (
            bad.exit_code == 1 and bad.output == f"cvlabel: error: --sample-rate {rate} Hz is outside 8000-192000 Hz\n"
        )
    clip = as_wav(tmp_path / "a.wav", voice(1.0))
    mixed = runner.invoke(app, ["predict", "-", str(clip), "--model", str(trained_run)], input=b"")
    assert mixed.exit_code == 1 and "cannot be mixed with files" in mixed.output
    rate_with_files = runner.invoke(app, ["predict", str(clip), "--model", str(trained_run), "--sample-rate", "8000"])
    assert rate_with_files.exit_code == 1 and "--sample-rate applies only to -" in rate_with_files.output

    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(CvlabelError, match="stdin is a terminal"):
        predict_stream(Terminal(), trained_run, RATE)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac"])
def test_an_audio_file_piped_into_stdin_is_refused_not_judged(trained_run, tmp_path, suffix):
    clip = write_voice(tmp_path / f"voice{suffix}", 220, seconds=1.0)
    result = runner.invoke(app, ["predict", "-", "--model", str(trained_run)], input=clip.read_bytes())
    assert result.exit_code == 1 and "not raw PCM" in result.output and "p_female" not in result.output


def test_raw_pcm_is_not_mistaken_for_a_file(trained_run):
    stream = pcm(voice(2.0, silence_s=0.2))
    result = runner.invoke(app, ["predict", "-", "--model", str(trained_run)], input=stream)
    assert result.exit_code == 0 and "final" in result.output


def test_ctrl_c_ends_a_stream_with_its_final_verdict(trained_run):
    class Interrupted(io.BytesIO):
        """Two seconds of speech, then the user presses Ctrl-C while the next read waits."""

        def read(self, size=-1):
            data = super().read(size)
            if not data:
                raise KeyboardInterrupt
            return data

    updates = list(predict_stream(Interrupted(pcm(voice(2.0))), trained_run, RATE))
    assert updates[-1]["final"] and updates[-1]["seconds"] == 2.0 and updates[-1]["label"] in LABELS


def test_a_long_files_line_says_how_much_the_model_heard_not_its_length(tmp_path):
    from cvlabel.predict import result_line

    line = result_line({"path": "long.wav", "label": "male", "p_female": 0.1, "duration_s": 4.66, "error": None})
    assert line.endswith("\t4.66 s heard")  # the first max_seconds after the first sound, of an hour's file
