import shutil

import numpy as np
import pytest

from cvlabel.audio import load_audio
from cvlabel.config import DemoCorpusOptions
from cvlabel.democorpus import make_demo_corpus
from cvlabel.speech import trim_silence
from cvlabel.synthesis import synthesize_formant_voice


def estimated_f0(samples: np.ndarray, rate: int = 16_000) -> float:
    """Median autocorrelation pitch over 40 ms frames, searched in 60-400 Hz."""
    frame, lo, hi = int(0.04 * rate), rate // 400, rate // 60
    estimates = []
    for start in range(0, samples.shape[0] - frame, frame):
        x = samples[start : start + frame] - samples[start : start + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        ac = np.correlate(x, x, mode="full")[frame - 1 :]
        estimates.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


@pytest.mark.parametrize("pitch", [100.0, 130.0, 190.0, 230.0])
def test_formant_voice_has_the_requested_pitch(pitch):
    samples = synthesize_formant_voice("a e i o u a e", pitch, 1.0, np.random.default_rng(1))
    assert samples.dtype == np.float32 and 0.4 < np.abs(samples).max() <= 0.5
    # intonation glides from 1.1x down to 0.9x of the speaker's pitch
    assert estimated_f0(samples) == pytest.approx(pitch, rel=0.15)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_engine_writes_decodable_clips(tmp_path):
    summary = make_demo_corpus(
        tmp_path / "d", DemoCorpusOptions(speakers_per_gender=1, clips_per_speaker=1, locales=("de",), engine="espeak")
    )
    assert summary["engine"] == "espeak"
    for clip in (tmp_path / "d" / "clips").glob("*.mp3"):
        assert trim_silence(load_audio(clip)).shape[0] > 8000


def test_corpus_is_a_function_of_its_options(tmp_path):
    options = DemoCorpusOptions(speakers_per_gender=2, clips_per_speaker=2, locales=("en",), engine="formant")
    make_demo_corpus(tmp_path / "a", options)
    make_demo_corpus(tmp_path / "b", options)
    assert (tmp_path / "a" / "truth.tsv").read_text() == (tmp_path / "b" / "truth.tsv").read_text()
