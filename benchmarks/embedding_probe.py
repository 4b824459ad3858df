"""How far a pretrained speaker encoder gets on realcv's held-out speakers: an experiment, not a feature.

Question (issue 23): is the 0.97 balanced clip accuracy on held-out real speakers out of reach of a
CNN trained on ~460 speakers because of the data (a few hundred vocal tracts; answers that do not
match the voice) or because of the recipe? A speaker encoder trained on thousands of speakers is the
strongest representation a PyPI package ships: Resemblyzer's GE2E d-vector (3-layer LSTM, 256-d,
trained on LibriSpeech and VoxCeleb 1/2; its weights ship in the wheel). A logistic regression on its
clip embeddings, trained on the same speakers as heldout.py's committee and scored on the same
blanked speakers (holdouts.py), is a probe of what a much better-read voice gives.

    pip install --no-deps --target /tmp/resemblyzer resemblyzer==0.1.4   # its weights, not its code
    python benchmarks/heldout.py --corpus ../shared/corpora/realcv --out outputs/heldout --seeds 0,1,2
    python benchmarks/embedding_probe.py --corpus ../shared/corpora/realcv \\
        --encoder /tmp/resemblyzer/resemblyzer/pretrained.pt --out outputs/probe --runs outputs/heldout \\
        [--partials-per-second 0.625] [--holdouts speakers,locale]
    python benchmarks/embedding_probe.py --corpus ../shared/corpora/realcv --encoder ... --speed 300
    PYTHONPATH=LIBROSA python benchmarks/embedding_probe.py --corpus ... --encoder ... --check-mel 20

Only the weights file is used: the network (nn.LSTM 40 -> 256 x 3, a linear layer, ReLU, L2 norm) and
its input (40 Slaney mel bands of the 16 kHz power spectrum, 25 ms window, 10 ms hop, 1.6 s partials
at 1.3 a second, their mean) are rebuilt here as Resemblyzer defines them; its librosa/webrtcvad
preprocessing is replaced by cvlabel's silence trim and the same -30 dBFS volume rule. Clips are
decoded with soundfile and resampled to 16 kHz with soxr. With --runs (heldout.py's --out), each seed's committee
is scored on the same clips beside the probe, and so is the sum of the two logits. Prints a table per
holdout; writes OUT/probe.json. The 300 blank speakers are never scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile
import soxr
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from holdouts import held_out_speakers, scored_speakers, seed_folder, stable_rank  # noqa: E402

from cvlabel.audio import AudioError
from cvlabel.cache import AudioCache, cache_root
from cvlabel.certify import certified_thresholds
from cvlabel.checkpoint import load_checkpoint
from cvlabel.config import FeatureConfig
from cvlabel.corpus import read_tsv
from cvlabel.encoder import SpeakerEncoder, fit_logistic
from cvlabel.labels import label_index
from cvlabel.metrics import classification_metrics, fit_temperature
from cvlabel.pooling import reference_speakers, speaker_table
from cvlabel.scoring import clip_logits
from cvlabel.speech import decode_speech, trim_silence

RATE = 16_000  # Hz, the encoder's input rate
PARTIAL_FRAMES = 160  # 10 ms frames a partial utterance (1.6 s, as the encoder was trained; --partial-seconds)
TARGET_DBFS = -30.0  # quiet clips are raised to this level, loud ones left alone (Resemblyzer's rule)
COLUMNS = ["clips", "speakers", "balanced_accuracy", "roc_auc", "recall_female", "speaker_accuracy"]


MEL = torchaudio.transforms.MelSpectrogram(
    sample_rate=RATE, n_fft=400, hop_length=160, n_mels=40, norm="slaney", mel_scale="slaney", pad_mode="constant"
)


def partial_mels(samples: np.ndarray, per_second: float) -> torch.Tensor:
    """(partials, 160, 40) mel power frames of a 16 kHz clip, `per_second` partials a second (Resemblyzer's
    default 1.3; 0.625, the least, is one every 1.6 s), cut as Resemblyzer's compute_partial_slices cuts
    them (the last partial kept if it is at least 75% covered, or if it is the only one). per_second 0:
    one partial, the middle 1.6 s of the clip (the cheapest the encoder can be)."""
    hop = RATE // 100
    frames = int(np.ceil((len(samples) + 1) / hop))
    if per_second <= 0:
        starts = [max(0, (frames - PARTIAL_FRAMES) // 2)]
    else:
        step = int(round(RATE / per_second / hop))
        starts = list(range(0, max(1, frames - PARTIAL_FRAMES + step + 1), step))
        if len(starts) > 1 and (len(samples) - starts[-1] * hop) / (PARTIAL_FRAMES * hop) < 0.75:
            starts.pop()
    needed = (starts[-1] + PARTIAL_FRAMES) * hop
    padded = np.pad(samples, (0, max(0, needed - len(samples))))
    mel = MEL(torch.from_numpy(padded.astype(np.float32))).T  # (frames, 40)
    return torch.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])


def clip_embedding(encoder: torch.nn.Module, path: Path, features: FeatureConfig, per_second: float) -> np.ndarray:
    """The mean of a clip's partial embeddings, L2-normed (Resemblyzer's embed_utterance)."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    samples = soxr.resample(samples.mean(axis=1), rate, RATE)
    trimmed = trim_silence(samples, features)
    samples = trimmed if trimmed.size else samples  # a clip heard as all silence is embedded whole
    level = 10 * np.log10(np.mean(samples**2) + 1e-12)
    if level < TARGET_DBFS:
        samples = samples * 10 ** ((TARGET_DBFS - level) / 20)
    with torch.no_grad():
        partials = encoder(partial_mels(samples, per_second)).mean(dim=0)
    return (partials / torch.linalg.vector_norm(partials)).numpy()


def embed_corpus(
    corpus: Path, truth: pd.DataFrame, weights: Path, out: Path, per_second: float, int8: bool
) -> np.ndarray:
    """Every truth row's clip embedding (cached in OUT/embeddings-RATE.npy); prints the time a clip took."""
    length = "" if PARTIAL_FRAMES == 160 else f"-{PARTIAL_FRAMES}f"  # the cache names of before: 1.6 s partials
    cached = out / f"embeddings-{per_second}{length}{'-int8' if int8 else ''}.npy"
    if cached.is_file():
        return np.load(cached)
    encoder = load_encoder(weights, int8)
    torch.set_num_threads(1)
    features = FeatureConfig(sample_rate=RATE)
    start = time.perf_counter()
    embeddings = np.stack([clip_embedding(encoder, corpus / "clips" / p, features, per_second) for p in truth["path"]])
    seconds = time.perf_counter() - start
    print(f"embedded {len(truth)} clips in {seconds:.0f} s: {1000 * seconds / len(truth):.1f} ms a clip, one thread")
    out.mkdir(parents=True, exist_ok=True)
    np.save(cached, embeddings)
    return embeddings


def load_encoder(weights: Path, int8: bool = False) -> torch.nn.Module:
    """The encoder with Resemblyzer's weights; with int8, its LSTM and linear layer dynamically quantised
    (weights int8, activations quantised on the fly: torch.ao.quantization.quantize_dynamic)."""
    encoder = SpeakerEncoder()
    encoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["model_state"], strict=False)
    encoder.eval()
    if int8:
        return torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
    return encoder


def speed(corpus: Path, truth: pd.DataFrame, weights: Path, clips: int, int8: bool) -> None:
    """Milliseconds a clip on one thread, for `clips` random clips: decode to 16 kHz and trim; the mel
    partials; the encoder a clip at a time and 64 partials at a time, at 1.3 and 0.625 partials a second."""
    torch.set_num_threads(1)
    encoder, features = load_encoder(weights, int8), FeatureConfig(sample_rate=RATE)
    paths = [corpus / "clips" / p for p in truth["path"].sample(clips, random_state=0)]
    start = time.perf_counter()
    speech = []
    for path in paths:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        samples = soxr.resample(samples.mean(axis=1), rate, RATE)
        trimmed = trim_silence(samples, features)
        speech.append(trimmed if trimmed.size else samples)
    rows = {"decode, 16 kHz, trim": {"ms a clip": 1000 * (time.perf_counter() - start) / clips}}
    for per_second in (1.3, 0.625, 0.0):
        start = time.perf_counter()
        mels = [partial_mels(samples, per_second) for samples in speech]
        rows[f"mel partials ({per_second}/s)"] = {"ms a clip": 1000 * (time.perf_counter() - start) / clips}
        with torch.no_grad():
            start = time.perf_counter()
            for mel in mels:
                encoder(mel)
            rows[f"encoder, a clip at a time ({per_second}/s)"] = {
                "ms a clip": 1000 * (time.perf_counter() - start) / clips
            }
            start = time.perf_counter()
            stacked = torch.cat(mels)
            for first in range(0, len(stacked), 64):
                encoder(stacked[first : first + 64])
            rows[f"encoder, 64 partials a batch ({per_second}/s)"] = {
                "ms a clip": 1000 * (time.perf_counter() - start) / clips
            }
        rows[f"encoder, 64 partials a batch ({per_second}/s)"]["partials a clip"] = len(stacked) / clips
    # the whole path of a clip as infer would run it, one partial a clip, against the soundfile floor
    start = time.perf_counter()
    for path in paths:
        soundfile.read(path, dtype="float32")
    rows["the floor: soundfile decodes the clip"] = {"ms a clip": 1000 * (time.perf_counter() - start) / clips}
    at_16k = FeatureConfig(sample_rate=RATE, min_decode_rate=RATE)  # cvlabel's decoder, 4 s past the onset
    start = time.perf_counter()
    heard = []
    for path in paths:
        try:
            clip = decode_speech(path, at_16k)
        except AudioError:
            continue
        heard.append(clip.samples if clip.rate == RATE else soxr.resample(clip.samples, clip.rate, RATE))
    with torch.no_grad():
        one = torch.cat([partial_mels(samples, 0.0) for samples in heard])
        for first in range(0, len(one), 64):
            encoder(one[first : first + 64])
    path_ms = 1000 * (time.perf_counter() - start) / clips
    rows["cvlabel decode (16 kHz or native / k, soxr), 1 partial, encoder"] = {"ms a clip": path_ms}
    floor_ms = rows["the floor: soundfile decodes the clip"]["ms a clip"]
    print(f"{clips} clips, mean {np.mean([len(s) for s in speech]) / RATE:.2f} s of speech, one thread")
    print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"one partial a clip, decode to embedding: {floor_ms / path_ms:.2f}x the soundfile floor's speed")


def check_mel(corpus: Path, truth: pd.DataFrame, clips: int) -> None:
    """The rebuilt mel front end (MEL) against librosa's melspectrogram called as Resemblyzer calls it,
    on `clips` random clips: the largest difference relative to the clip's largest band power."""
    import librosa  # only for this check (pip install --target DIR librosa; PYTHONPATH=DIR)

    worst = []
    for path in truth["path"].sample(clips, random_state=1):
        samples, rate = soundfile.read(corpus / "clips" / path, dtype="float32", always_2d=True)
        samples = soxr.resample(samples.mean(axis=1), rate, RATE)
        theirs = librosa.feature.melspectrogram(y=samples, sr=RATE, n_fft=400, hop_length=160, n_mels=40).T
        ours = MEL(torch.from_numpy(samples)).T.numpy()
        frames = min(len(theirs), len(ours))
        worst.append(float(np.abs(theirs[:frames] - ours[:frames]).max() / theirs[:frames].max()))
    print(f"librosa {librosa.__version__}, {clips} clips: max |ours - librosa| / max power {max(worst):.1e}")


def committee_logits(run: Path, clips: list[str]) -> np.ndarray:
    """The run's committee on `clips`: its calibrated logit (mean over members / temperature); NaN
    where a clip does not decode (the same clips heldout.py leaves out)."""
    checkpoint = load_checkpoint(run)
    features = checkpoint.config.features
    cache = AudioCache(cache_root(checkpoint.config.train.cache_dir), features)
    errors = cache.fill(clips, jobs=2)
    usable = [c for c in clips if c not in errors]
    audio = [cache.load(c) for c in usable]
    logits = clip_logits(checkpoint.model, features, audio.__getitem__, len(audio)).mean(axis=1)
    by_clip = dict(zip(usable, logits / checkpoint.temperature, strict=True))
    return np.array([by_clip.get(c, np.nan) for c in clips])


def probe(
    corpus: Path, truth: pd.DataFrame, embeddings: np.ndarray, holdout: str, seed: int, l2: float, runs: Path | None
) -> dict[str, dict[str, float]]:
    """Train on the self-reported male/female speakers the seed keeps, score its blanked speakers: the
    d-vector probe, and with `runs` (heldout.py's --out) the seed's committee and the sum of the two
    logits (a product of experts: fixed beforehand, nothing fitted on the blanked speakers)."""
    known = scored_speakers(truth)
    held = held_out_speakers(truth, holdout, seed)
    rows = truth["client_id"].isin(known.index).to_numpy()
    test = rows & truth["client_id"].isin(held).to_numpy()
    train = rows & ~test
    labels = label_index(truth["true_gender"].where(rows, "male"))
    w, b = fit_logistic(embeddings[train], labels[train], l2)
    scores = {"d-vector probe": embeddings[test] @ w + b}
    run = seed_folder(runs, holdout, seed) / "run" if runs else None
    if run is not None and run.is_dir():
        cnn = committee_logits(run, [str(corpus / "clips" / p) for p in truth.loc[test, "path"]])
        decoded = ~np.isnan(cnn)
        test = np.flatnonzero(test)[decoded]
        scores = {
            "committee": cnn[decoded],
            "d-vector probe": scores["d-vector probe"][decoded],
            "sum of the two": cnn[decoded] + scores["d-vector probe"][decoded],
        }
    speakers = truth["client_id"].to_numpy()[test]
    return {
        name: {
            c: float(v) for c, v in classification_metrics(labels[test], logits, 1.0, speakers).items() if c in COLUMNS
        }
        for name, logits in scores.items()
    }


def cross_fitted_heads(
    embeddings: np.ndarray, labels: np.ndarray, clients: np.ndarray, train: np.ndarray, seed: int, l2: float, folds: int
) -> tuple[list[tuple[np.ndarray, float]], np.ndarray]:
    """`folds` logistic heads over the speakers of the `train` rows (dealt into folds in a seeded order), and
    each train row's out-of-fold logit (from the head that never saw its speaker; NaN off `train`)."""
    kept = sorted(set(clients[train]), key=lambda cid: stable_rank(seed, cid))
    fold_of = {cid: k % folds for k, cid in enumerate(kept)}
    fold = np.array([fold_of.get(cid, -1) for cid in clients])
    heads = [fit_logistic(embeddings[train & (fold != k)], labels[train & (fold != k)], l2) for k in range(folds)]
    oof = np.full(len(clients), np.nan)
    for k, (w, b) in enumerate(heads):
        oof[train & (fold == k)] = embeddings[train & (fold == k)] @ w + b
    return heads, oof


def claims(
    truth: pd.DataFrame, embeddings: np.ndarray, seed: int, l2: float, target: float, folds: int = 3
) -> dict[str, float]:
    """The release protocol of trust.py with a committee of `folds` logistic heads in place of the CNNs:
    heads cross-fitted over the kept self-reported speakers (each speaker's reference logit from the head
    that never saw it, the temperature fitted on those), export's claims (certify.certified_thresholds at
    `target`, 95%) on the reference pooled as blank speakers are (pooling.reference_speakers: each scored
    on as many clips as a blank speaker of the release has), then the blanked speakers labelled by the
    committee's pooled, undisputed decision and scored against their own answers."""
    known = scored_speakers(truth)
    held = held_out_speakers(truth, "speakers", seed)
    clients = truth["client_id"].to_numpy()
    rows = truth["client_id"].isin(known.index).to_numpy()
    test = rows & np.isin(clients, list(held))
    train = rows & ~test
    labels = label_index(truth["true_gender"].where(rows, "male"))
    heads, oof = cross_fitted_heads(embeddings, labels, clients, train, seed, l2, folds)
    temperature = fit_temperature(labels[train], oof[train])
    blank = truth["true_gender"].fillna("").eq("").to_numpy() | test  # the rows a release would predict
    blank_clips = pd.Series(clients[blank]).value_counts().to_numpy()
    reference = pd.DataFrame({"client_id": clients[train], "gender": truth["true_gender"].to_numpy()[train],
                              "logit": oof[train], "member_logits": [[v] for v in oof[train]]})  # fmt: skip
    chosen = certified_thresholds(reference_speakers(reference, temperature, blank_clips), target, 0.95)
    member_logits = np.stack([embeddings[test] @ w + b for w, b in heads], axis=1)
    held_clips = pd.DataFrame({"client_id": clients[test], "logit": member_logits.mean(axis=1),
                               "member_logits": list(member_logits)})  # fmt: skip
    table = speaker_table(held_clips, temperature)
    truth_of = pd.Series(labels[test], index=clients[test]).groupby(level=0).first()
    result = {"temperature": temperature}
    labelled_clips = 0
    for index, gender in enumerate(("male", "female")):
        threshold = chosen[gender]["threshold"]
        result[f"{gender} certified"] = float(threshold is not None)
        result[f"{gender} best bound"] = float(chosen[gender]["best_lower_bound"] or 0.0)
        if threshold is None:
            continue
        picked = table[(table["predicted"] == index) & ~table["disputed"] & (table["confidence"] >= threshold)]
        right = (truth_of.reindex(picked.index) == index).to_numpy()
        clips = picked["clips"].to_numpy()
        result[f"{gender} delivered"] = float((right * clips).sum() / max(clips.sum(), 1))
        labelled_clips += int(clips.sum())
    result["coverage"] = labelled_clips / int(test.sum())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpus", type=Path, required=True, help="realcv: a Common-Voice-shaped folder with truth.tsv"
    )
    parser.add_argument("--encoder", type=Path, required=True, help="Resemblyzer's pretrained.pt")
    parser.add_argument("--out", type=Path, default=Path("outputs/probe"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--l2", type=float, default=1e-3, help="the logistic regression's weight penalty")
    parser.add_argument("--runs", type=Path, help="heldout.py's --out: its committees are scored beside the probe")
    parser.add_argument("--holdouts", default="speakers,locale")
    parser.add_argument(
        "--partials-per-second", type=float, default=1.3, help="1.3 as Resemblyzer; at least 0.625; 0: one partial"
    )
    parser.add_argument("--partial-seconds", type=float, default=1.6, help="a partial's length (1.6: as trained)")
    parser.add_argument("--speed", type=int, default=0, help="time the encoder on this many clips, then stop")
    parser.add_argument("--check-mel", type=int, default=0, help="compare the mel input with librosa's on N clips")
    parser.add_argument("--int8", action="store_true", help="the encoder dynamically quantised to int8")
    parser.add_argument("--target-precision", type=float, default=0.0, help="also the release protocol's claims")
    args = parser.parse_args()
    global PARTIAL_FRAMES
    PARTIAL_FRAMES = round(args.partial_seconds * 100)
    truth = read_tsv(args.corpus / "truth.tsv")
    if args.speed:
        return speed(args.corpus, truth, args.encoder, args.speed, args.int8)
    if args.check_mel:
        return check_mel(args.corpus, truth, args.check_mel)
    embeddings = embed_corpus(args.corpus, truth, args.encoder, args.out, args.partials_per_second, args.int8)
    report: dict[str, Any] = {}
    for holdout in args.holdouts.split(","):
        seeds = [int(s) for s in args.seeds.split(",")]
        report[holdout] = {s: probe(args.corpus, truth, embeddings, holdout, s, args.l2, args.runs) for s in seeds}
        rows = {(name, seed): scores for seed, by_name in report[holdout].items() for name, scores in by_name.items()}
        table = pd.DataFrame(rows).T
        for name in table.index.get_level_values(0).unique():
            table.loc[(name, "mean"), :] = table.loc[name].mean()
        print(f"holdout {holdout}: logistic regression on d-vectors (l2 {args.l2})")
        print(table.sort_index()[COLUMNS].to_string(float_format=lambda v: f"{v:.4f}"))
    if args.target_precision:
        seeds = [int(s) for s in args.seeds.split(",")]
        protocol = {s: claims(truth, embeddings, s, args.l2, args.target_precision) for s in seeds}
        print(f"the release protocol, speakers held out, a committee of 3 heads, target {args.target_precision}")
        print(pd.DataFrame(protocol).T.to_string(float_format=lambda v: f"{v:.3f}"))
        report["claims"] = protocol
    (args.out / "probe.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
