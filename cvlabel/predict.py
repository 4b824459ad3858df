"""`cvlabel predict`: the calibrated gender of single clips (one result per file), or of a raw
PCM stream (a running estimate about once a second and a final verdict)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import soxr

from .audio import require_decoder
from .errors import AudioError, CvlabelError
from .labels import LABELS, calibrate, decide
from .scoring import InferenceModel, inference_model
from .speech import Speech, decode_clip, speech_only

STDIN_ARG = "-"  # the file argument that means: raw PCM from stdin

STREAM_WINDOW_S = 4.0  # seconds the model hears per estimate: as long as a typical Common Voice clip
STREAM_HOP_S = 1.0  # seconds of new audio between estimates; windows overlap, so each update hears the newest second
# A window votes only with this much speech left after trimming: a word cut at the window's edge
# says little, and the next window hears it whole.
STREAM_MIN_SPEECH_S = 0.5  # seconds
STREAM_BLOCK_S = 1.0  # seconds of PCM read from the stream at a time
STREAM_MIN_RATE = 8_000  # Hz: below it the voice band up to the model's f_max (4 kHz) is lost
STREAM_MAX_RATE = 192_000  # Hz: the highest rate of real audio hardware; more is a typo
STREAM_DEFAULT_RATE = 16_000  # Hz of raw PCM on stdin unless --sample-rate says otherwise
PCM_BYTES_PER_SAMPLE = 2  # 16-bit signed little-endian mono
PCM_FULL_SCALE = 32768.0  # soundfile's scale for 16-bit PCM, so piped audio equals the same audio decoded from a WAV
STREAM_NAME = "<stdin>"  # the source speech_only names in its (caught) errors


def predict(
    sources: Sequence[str | Path], model_dir: str | Path, sample_rate: int | None, stdin: BinaryIO
) -> Iterator[dict[str, Any]]:
    """`cvlabel predict`: one result per file, or the updates of the PCM stream on stdin when
    `sources` is just "-". Arguments are checked (CvlabelError) before anything is read."""
    if STDIN_ARG in (str(source) for source in sources):
        if len(sources) > 1:
            raise CvlabelError("'-' (stdin) cannot be mixed with files; predict them in separate commands")
        return predict_stream(stdin, model_dir, sample_rate or STREAM_DEFAULT_RATE)
    if sample_rate is not None:
        raise CvlabelError("--sample-rate applies only to - (stdin PCM); files carry their own rate")
    return iter(predict_files(sources, model_dir))


def failed(result: dict[str, Any]) -> bool:
    """Whether a result makes the command fail: a file's error, or a stream's final one."""
    return bool(result["error"]) and result.get("final", True)


def result_line(result: dict[str, Any]) -> str:
    """A file's result, or a stream update, as one line of text."""
    if "final" not in result:
        if result["error"]:
            return f"{result['path']}\terror: {result['error']}"
        # duration_s is what the model heard: at most features.max_seconds from the first sound, not the file's length
        heard = f"{result['duration_s']:.2f} s heard"
        return f"{result['path']}\t{result['label']}\tp_female={result['p_female']:.4f}\t{heard}"
    if result["error"]:
        estimate = f"error: {result['error']}" if result["final"] else result["error"]
    else:
        windows = result["windows"]
        estimate = (
            f"{result['label']}\tp_female={result['p_female']:.4f}\t({windows} window{'' if windows == 1 else 's'})"
        )
    line = f"{result['seconds']:.1f} s\t{estimate}"
    return f"final\t{line}" if result["final"] else line


def verdict(model: InferenceModel, logit: float) -> dict[str, Any]:
    """label, calibrated p_female and confidence of one logit or of a pooled (mean) logit."""
    p_female = float(calibrate(logit, model.temperature))
    predicted, confidence = decide(p_female)
    return {"label": LABELS[int(predicted)], "p_female": round(p_female, 4), "confidence": round(float(confidence), 4)}


def predict_files(paths: Iterable[str | Path], model_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per file: path, label, p_female (calibrated), confidence, duration_s, error.

    A file that cannot be decoded, or holds no speech, gets its error and null figures; the
    others are still predicted.
    """
    model = inference_model(model_dir)
    config = model.features
    require_decoder(config.decoder)
    results = []
    for path in paths:
        result: dict[str, Any] = {
            "path": str(path),
            "label": None,
            "p_female": None,
            "confidence": None,
            "duration_s": None,
            "error": None,
        }
        try:
            clip = decode_clip(path, config)
            result["duration_s"] = round(clip.samples.shape[0] / clip.rate, 3)
            speech = speech_only(clip.samples, config.at_rate(clip.rate), path)
            logit = float(model.logits([Speech(speech, clip.rate)])[0])
        except AudioError as exc:
            result["error"] = exc.reason
            results.append(result)
            continue
        result.update(verdict(model, logit))
        results.append(result)
    return results


def predict_stream(
    source: BinaryIO | Iterable[np.ndarray], model_dir: str | Path, sample_rate: float
) -> Iterator[dict[str, Any]]:
    """A running estimate of a stream's speaker gender, one dict per STREAM_HOP_S of audio, then a final one.

    source: a binary file of raw 16-bit signed little-endian mono PCM (e.g. stdin), or float32
    mono blocks of any length, at `sample_rate` Hz (resampled seamlessly to the model's rate).
    Every STREAM_HOP_S the window of the last STREAM_WINDOW_S seconds is silence-trimmed like a
    file; full windows with speech vote, pooled like a speaker's clips: p_female = sigmoid(mean
    window logit / T). Until a full window votes, the growing window's estimate stands, so a
    stream shorter than a window is judged on all of it. Only the window and running sums are
    kept, so memory is bounded for endless input.

    Each dict: final, seconds (audio heard), label, p_female, confidence, windows (behind the estimate),
    buffered_s (audio held), error ("no speech yet"; "no speech found" in a final without speech).
    The checks and the model load happen at the call, before any input is read.
    """
    if not STREAM_MIN_RATE <= sample_rate <= STREAM_MAX_RATE:
        raise CvlabelError(f"--sample-rate {sample_rate} Hz is outside {STREAM_MIN_RATE}-{STREAM_MAX_RATE} Hz")
    blocks: Iterable[np.ndarray]
    if hasattr(source, "read"):
        stream = cast(BinaryIO, source)
        if stream.isatty():  # nothing piped in: reading would wait on the keyboard forever
            raise CvlabelError("stdin is a terminal; pipe raw 16-bit PCM into 'cvlabel predict -' (see --help)")
        blocks = pcm_blocks(stream, sample_rate)
    else:
        blocks = source
    model = inference_model(model_dir)
    return _stream_updates(resample_blocks(blocks, sample_rate, model.features.sample_rate), model)


def pcm_blocks(stream: BinaryIO, sample_rate: float, block_s: float = STREAM_BLOCK_S) -> Iterator[np.ndarray]:
    """float32 blocks of about block_s seconds of raw 16-bit signed little-endian mono PCM.

    A byte left over by a short read is kept for the next one; a last odd byte (a torn sample)
    is dropped. Ctrl-C while waiting for input ends the stream as end of input does.
    """
    block_bytes = PCM_BYTES_PER_SAMPLE * max(1, int(block_s * sample_rate))
    carry = b""
    first = True
    while data := _read_until_interrupted(stream, block_bytes):
        if first:
            _refuse_audio_files(data)
            first = False
        data = carry + data
        whole = len(data) - len(data) % PCM_BYTES_PER_SAMPLE
        carry = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / PCM_FULL_SCALE


def _read_until_interrupted(stream: BinaryIO, size: int) -> bytes:
    """The next bytes of the stream; none after Ctrl-C, which ends the stream like end of input, so
    the final verdict on what was heard is still printed."""
    try:
        return stream.read(size)
    except KeyboardInterrupt:
        return b""


# The first bytes of audio files that people pipe into `predict -` by mistake: read as PCM, their
# headers and compressed frames would be judged as noise, with a confident-looking answer.
FILE_SIGNATURES = {b"RIFF": "WAV", b"ID3": "MP3", b"fLaC": "FLAC", b"OggS": "Ogg", b"FORM": "AIFF"}


def _refuse_audio_files(head: bytes) -> None:
    kind = next((name for magic, name in FILE_SIGNATURES.items() if head.startswith(magic)), None)
    if kind is None and _mpeg_frame_header(head):
        kind = "MP3"
    if kind:
        raise CvlabelError(
            f"stdin holds a {kind} file, not raw PCM: pass the file as an argument (cvlabel predict FILE), or "
            "decode it to raw PCM first (e.g. ffmpeg -i FILE -f s16le -ac 1 -ar 16000 - | cvlabel predict -)"
        )


def _mpeg_frame_header(head: bytes) -> bool:
    """An MPEG audio frame header without an ID3 tag: 11 sync bits, a defined layer, a valid bitrate
    and sample-rate index (a PCM stream starting with these 3 bytes is a -0.2 full-scale click)."""
    return (
        len(head) >= 3
        and head[0] == 0xFF
        and head[1] & 0xE0 == 0xE0
        and head[1] & 0x06 != 0
        and head[2] >> 4 not in (0, 0xF)
        and (head[2] >> 2) & 0x3 != 0x3
    )


def resample_blocks(blocks: Iterable[np.ndarray], in_rate: float, out_rate: float) -> Iterator[np.ndarray]:
    """The blocks at out_rate; one streaming resampler, so block edges leave no seams."""
    resampler = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32") if in_rate != out_rate else None
    for block in blocks:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 1:
            raise CvlabelError(f"stream blocks must be mono (samples,), not of shape {block.shape}")
        yield resampler.resample_chunk(block) if resampler else block
    if resampler:
        yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)  # the resampler's delay


def _stream_updates(samples: Iterable[np.ndarray], model: InferenceModel) -> Iterator[dict[str, Any]]:
    rate = model.features.sample_rate
    window, hop = int(STREAM_WINDOW_S * rate), int(STREAM_HOP_S * rate)
    buffer = np.zeros(0, dtype=np.float32)  # the last `window` samples, no more
    heard = unscored = 0  # samples in all, and since the last estimate
    logit_sum, windows = 0.0, 0  # the full windows with speech: all the stream's past that is kept
    # Until the buffer first fills, the growing window alone is the estimate; it is not pooled, as the
    # model misjudges 1-3 s far more often than 4 s (measured: a run's 1 s window flipped a 5 s voice).
    partial_logit: float | None = None

    def score() -> None:
        nonlocal logit_sum, windows, partial_logit
        logit = _window_logit(buffer, model)
        if buffer.shape[0] < window:
            partial_logit = logit
        elif logit is not None:
            logit_sum, windows = logit_sum + logit, windows + 1

    def update(final: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "final": final,
            "seconds": round(heard / rate, 3),
            "label": None,
            "p_female": None,
            "confidence": None,
            "windows": windows,
            "buffered_s": round(buffer.shape[0] / rate, 3),
            "error": None,
        }
        if windows:
            result.update(verdict(model, logit_sum / windows))
        elif partial_logit is not None:
            result.update(verdict(model, partial_logit), windows=1)
        else:
            result["error"] = "no speech found" if final else "no speech yet"
        return result

    for block in samples:
        while block.shape[0]:
            # cut blocks at hop boundaries, so estimates fall every STREAM_HOP_S whatever the block sizes
            piece, block = block[: hop - unscored], block[hop - unscored :]
            buffer = np.concatenate([buffer, piece])[-window:]
            heard += piece.shape[0]
            unscored += piece.shape[0]
            if unscored == hop:
                score()
                unscored = 0
                yield update(final=False)
    if unscored:  # the tail since the last estimate votes too, in the last window (or all of a short stream)
        score()
    yield update(final=True)


def _window_logit(window: np.ndarray, model: InferenceModel) -> float | None:
    """The logit of a window's speech, trimmed as a file's would be; None if too little speech is left."""
    try:
        speech = speech_only(window, model.features, STREAM_NAME)
    except AudioError:  # silent window: it does not vote
        return None
    if speech.shape[0] < STREAM_MIN_SPEECH_S * model.features.sample_rate:
        return None
    return float(model.logits([speech])[0])
