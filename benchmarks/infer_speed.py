"""Inference speed and memory: where the time goes, end-to-end vs decode-only, and scale.

    python benchmarks/infer_speed.py [--corpus DIR] [--model RUN_DIR] [--rows 1000,10000,50000]

Without --corpus it builds a demo corpus; without --model it uses an untrained model of the
default shape (inference costs the same whatever the weights). Prints these tables:

1. per-stage cost of one clip (one thread): decode, resample, silence trim, log-mel, CNN;
2. clips/s of `infer` against the floor (soundfile decoding each whole clip at its own rate,
   nothing else) and against cvlabel's own decode (decode_clip with the default features: the
   fastest decoder, the default max_seconds) over the same shards with the same number of
   processes (worker pools warmed up first, so start-up is not counted), per --jobs, on the
   --throughput-rows rows of a scaled corpus (enough shards for every process), once per
   --speaker-clips (rows a speaker: a speaker's first clips get every committee member); the
   three take --repeats turns and each ratio is the median of its turns' ratios;
2b. the same per native sample rate, when the corpus's clips come at more than one (real Common
   Voice: 48 kHz from release 6.1, 32 kHz from 13 on, a few 44.1 kHz): each rate's scaled corpus
   is made of that rate's clips only (rate read from each MP3's first frame), at the largest
   --jobs, once per --speaker-clips;
3. `cvlabel infer --jobs 2` as a user runs it (a fresh process, start-up included) on TSVs of
   N rows pointing at hard links of the corpus clips: wall time, clips/s, peak RSS of the main
   process, of the largest worker, and of the whole process tree, and the tree's peak PSS (RSS
   with shared library pages divided among the processes that share them: the real footprint);
4. the same command with `--backend dask` (a LocalCluster of 2 single-threaded worker processes)
   against the local backend, back to back on the same rows.

On real Common Voice (2b is the table to watch: a current release is 32 kHz):

    nice -n 19 python benchmarks/infer_speed.py --corpus /work/shared/corpora/realcv --out outputs/bench-realcv
    nice -n 19 python benchmarks/infer_speed.py --corpus /work/shared/corpora/realcv --out outputs/bench-realcv \
        --rates-only [--throughput-rows 4000 --repeats 3 --speaker-clips 1,30 --jobs 2]

The second prints table 2b alone (about 10 minutes with the defaults on 2 cores; a smoke test with
`--throughput-rows 300 --repeats 1 --speaker-clips 1`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile
import soxr
import torch
from joblib import Parallel, delayed

from cvlabel import bandmp3, mpg123
from cvlabel.artifacts import RunFolder
from cvlabel.audio import mp3_rate
from cvlabel.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cvlabel.config import Config, Decoder, DemoCorpusOptions, FeatureConfig, InferOptions
from cvlabel.corpus import read_release
from cvlabel.democorpus import make_demo_corpus
from cvlabel.features import log_mel
from cvlabel.inference import infer
from cvlabel.model import Committee
from cvlabel.scoring import batch_logits
from cvlabel.speech import decode_clip, decode_speech, trim_silence

STAGE_CLIPS = 256  # clips timed per stage
BATCH = 32  # clips per batch, as infer's default


def stage_costs(clips: list[Path], checkpoint: Checkpoint) -> dict[str, float]:
    """Milliseconds per clip of each stage, one thread."""
    torch.set_num_threads(1)
    config = checkpoint.config.features
    timings: dict[str, float] = {}

    def timed(name: str, function: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        function(items[0])  # first calls build caches (mel basis, FFT plans): not what a clip costs
        started = time.perf_counter()
        out = [function(item) for item in items]
        timings[name] = 1000 * (time.perf_counter() - started) / len(items)
        return out

    decoded = timed("decode (soundfile)", lambda p: soundfile.read(p, dtype="float32"), clips)
    rate = config.sample_rate
    resampled = timed(f"resample to {rate} Hz (soxr)", lambda d: soxr.resample(d[0], d[1], rate), decoded)
    trimmed = timed("silence trim", lambda x: trim_silence(x, config), resampled)
    timed("log-mel", lambda x: log_mel(x, config), trimmed)
    model = checkpoint.model.fuse_for_inference()
    started = time.perf_counter()
    batch_logits(model, trimmed, config, BATCH)  # as infer: batched by length
    members = len(model.members)
    timings[f"log-mel + CNN ({members} members), batches of 32"] = 1000 * (time.perf_counter() - started) / len(trimmed)
    started = time.perf_counter()
    batch_logits(model.members[0], trimmed, config, BATCH)
    timings["log-mel + CNN (one member)"] = 1000 * (time.perf_counter() - started) / len(trimmed)
    timings["mean clip seconds (after trim)"] = float(np.mean([x.shape[0] for x in trimmed]) / config.sample_rate)
    return timings


def decoder_costs(clips: list[Path], checkpoint: Checkpoint, caps: list[float], repeats: int = 3) -> pd.DataFrame:
    """ms per clip of each decoder, alone and end to end (decode, trim, log-mel, CNN in batches of
    32), and its ratio to the floor (soundfile decoding the whole clip at its own rate; above 1 is
    faster). One thread; the candidates take turns within each repeat (interleaved, so a noisy
    neighbour slows them alike); the median of the repeats is shown."""
    torch.set_num_threads(1)
    base = checkpoint.config.features
    model = checkpoint.model.fuse_for_inference()
    features = {"soundfile + soxr": replace(base, decoder="soundfile", max_seconds=20.0)}
    if mpg123.available():
        features["libmpg123"] = replace(base, decoder="mpg123", max_seconds=20.0)
    if bandmp3.available():
        features["bandmp3"] = replace(base, decoder="bandmp3", max_seconds=20.0)
    fastest: Decoder = "bandmp3" if bandmp3.available() else "mpg123" if mpg123.available() else "soundfile"
    for cap in caps:
        features[f"{fastest}, {cap:g} s past the first sound"] = replace(base, decoder=fastest, max_seconds=cap)
    candidates: dict[str, Any] = {"soundfile, whole clip at its rate (the floor)": None, **features}
    # a large speaker's later clips are scored by one member in turn (InferOptions.committee_clips)
    one_member = f"{fastest}, {base.max_seconds:g} s, one member a clip"
    candidates[one_member] = replace(base, decoder=fastest)
    scorer = {name: model.members[0] if name == one_member else model for name in candidates}

    def decode_only(name: str) -> None:
        if candidates[name] is None:
            for path in clips:
                soundfile.read(path, dtype="float32")
        else:
            for path in clips:
                decode_clip(path, candidates[name])

    def end_to_end(name: str) -> None:
        config = candidates[name]
        batch_logits(scorer[name], [decode_speech(path, config) for path in clips], config, BATCH)

    seconds: dict[tuple[str, str], list[float]] = {}
    for name in candidates:  # warm-up: libraries loaded, FFT plans and mel bases built
        decode_only(name)
    for _ in range(repeats):
        for name in candidates:
            for kind, work in (("decode", decode_only), ("end to end", end_to_end)):
                if (kind == "end to end" and candidates[name] is None) or (kind == "decode" and name == one_member):
                    continue
                started = time.perf_counter()
                work(name)
                seconds.setdefault((name, kind), []).append(time.perf_counter() - started)
    floor = float(np.median(seconds[("soundfile, whole clip at its rate (the floor)", "decode")]))
    rows = {}
    for (name, kind), times in seconds.items():
        median = float(np.median(times))
        rows[f"{kind}: {name}"] = {"ms_per_clip": 1000 * median / len(clips), "ratio_to_floor": floor / median}
    return pd.DataFrame(rows).T


def decode_shard(paths: list[str], kind: str) -> int:
    """Decode a shard's clips: "floor" = soundfile, each whole clip at its own rate, float32;
    "loader" = cvlabel's decode_clip with the default features (what infer decodes)."""
    torch.set_num_threads(1)
    config = FeatureConfig()
    for path in paths:
        if kind == "loader":
            decode_clip(path, config)
        else:
            soundfile.read(path, dtype="float32")
    return len(paths)


def warm_worker() -> int:
    import cvlabel.scoring  # noqa: F401  (torch and what a shard needs; cvlabel.inference alone imports no torch)

    return os.getpid()


def throughput(corpus: Path, model_file: Path, jobs: int, work: Path, repeats: int = 3) -> dict[str, Any]:
    """clips/s of infer and of a decode-only pass over the same shards, pools warmed up.

    The three take turns `repeats` times (floor, loader, infer, floor, ...): this machine's speed
    drifts by 10-15% over seconds, so each ratio is taken within one turn and the median of the
    turns is reported (as are the median rates)."""
    options = InferOptions(jobs=jobs)
    manifest = read_release(corpus)
    blank = manifest[manifest["gender"].isna() & manifest["source_tsv"].isin(options.tsvs)]
    paths = [str(corpus / "clips" / p) for p in blank["path"]]
    shards = [paths[i : i + options.shard_size] for i in range(0, len(paths), options.shard_size)]
    if jobs > 1:
        Parallel(n_jobs=jobs)(delayed(warm_worker)() for _ in range(4 * jobs))
    turns: list[dict[str, float]] = []
    for turn in range(repeats):
        rates = {}
        for kind in ("floor", "loader"):
            started = time.perf_counter()
            if jobs == 1:
                for shard in shards:
                    decode_shard(shard, kind)
            else:
                Parallel(n_jobs=jobs)(delayed(decode_shard)(s, kind) for s in shards)
            rates[kind] = len(paths) / (time.perf_counter() - started)
        started = time.perf_counter()
        infer(corpus, model_file, work / f"pred-jobs{jobs}-{turn}", options)
        rates["infer"] = len(paths) / (time.perf_counter() - started)
        turns.append(rates)
    median = {key: float(np.median([t[key] for t in turns])) for key in turns[0]}
    return {
        "clips": len(paths),
        "floor_clips_per_s": median["floor"],
        "loader_clips_per_s": median["loader"],
        "infer_clips_per_s": median["infer"],
        "infer/floor": float(np.median([t["infer"] / t["floor"] for t in turns])),
        "infer/floor, each turn": " ".join(f"{t['infer'] / t['floor']:.2f}" for t in turns),
        "infer/loader": float(np.median([t["infer"] / t["loader"] for t in turns])),
    }


def scaled_corpus(corpus: Path, rows: int, target: Path, speaker_clips: int, sources: list[Path] | None = None) -> Path:
    """A corpus of `rows` blank rows pointing at hard links of the corpus clips (or of `sources`, in
    turn), `speaker_clips` rows a speaker (infer scores a speaker's first clips by every committee
    member, later ones by one)."""
    target = target.with_name(f"{target.name}-{speaker_clips}perspeaker")
    if (target / "validated.tsv").exists():
        return target
    sources = sources or sorted((corpus / "clips").glob("*.mp3"))
    (target / "clips").mkdir(parents=True)
    names = []
    for index in range(rows):
        name = f"row{index:06d}.mp3"
        os.link(sources[index % len(sources)], target / "clips" / name)
        names.append(name)
    table = pd.DataFrame(
        {
            "client_id": [f"speaker{i // speaker_clips:06d}" for i in range(rows)],
            "path": names,
            "sentence": "x",
            "gender": "",
        }
    )
    table.to_csv(target / "validated.tsv", sep="\t", index=False)
    return target


def clips_by_rate(corpus: Path) -> dict[int, list[Path]]:
    """The corpus's clips by the sample rate of their first MP3 frame (what the release published them
    at; 0 for a clip whose rate cannot be read), highest rate first."""
    groups: dict[int, list[Path]] = {}
    for clip in sorted((corpus / "clips").glob("*.mp3")):
        groups.setdefault(mp3_rate(clip) or 0, []).append(clip)
    return dict(sorted(groups.items(), reverse=True))


def rate_throughput(
    corpus: Path, by_rate: dict[int, list[Path]], model_file: Path, jobs: int, args: argparse.Namespace
) -> pd.DataFrame:
    """Table 2b: throughput() on a scaled corpus of each native rate's clips, per --speaker-clips."""
    rows = {}
    for rate, sources in by_rate.items():
        seconds = float(np.mean([soundfile.info(str(p)).duration for p in sources]))
        for per_speaker in [int(n) for n in args.speaker_clips.split(",")]:
            target = args.out / f"scale-{args.throughput_rows}-{rate}Hz"
            rows_corpus = scaled_corpus(corpus, args.throughput_rows, target, per_speaker, sources)
            with tempfile.TemporaryDirectory(dir=args.out) as work:
                result = throughput(rows_corpus, model_file, jobs, Path(work), args.repeats)
            rows[f"{rate} Hz, {per_speaker} clips/speaker"] = {
                "source_clips": len(sources),
                "clip_seconds": seconds,
                **result,
            }
    return pd.DataFrame(rows).T


def run_and_watch(command: list[str]) -> dict[str, float]:
    """Run a command; sample the RSS of it and its descendants every 0.2 s. A failure ends the benchmark
    with the end of what the command wrote to stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        peak_main = peak_worker = peak_tree = peak_pss = 0.0
        while process.poll() is None:
            tree = _descendants(process.pid)
            sizes = {pid: _memory_mb(pid, "VmRSS:", "status") for pid in tree}
            peak_main = max(peak_main, sizes.get(process.pid, 0))
            peak_worker = max([peak_worker] + [v for k, v in sizes.items() if k != process.pid])
            peak_tree = max(peak_tree, sum(sizes.values()))
            # RSS counts the shared torch libraries once per process; PSS splits them among the sharers
            peak_pss = max(peak_pss, sum(_memory_mb(pid, "Pss:", "smaps_rollup") for pid in tree))
            time.sleep(0.2)
        if process.returncode != 0:
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 3000))
            said = stderr.read().decode(errors="replace")
            raise SystemExit(
                f"{' '.join(command)} failed with exit code {process.returncode}; its stderr ends:\n{said}"
            )
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_main_mb": peak_main,
        "peak_rss_worker_mb": peak_worker,
        "peak_rss_tree_mb": peak_tree,
        "peak_pss_tree_mb": peak_pss,
    }


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _memory_mb(pid: int, key: str, source: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a Common Voice folder [default: a demo corpus built here]")
    parser.add_argument("--model", type=Path, help="a run folder [default: an untrained model of the default shape]")
    parser.add_argument("--rows", default="1000,10000,50000", help="row counts of the scale table")
    parser.add_argument("--jobs", default="1,2", help="process counts of the throughput table")
    parser.add_argument(
        "--backend-rows",
        type=int,
        default=10000,
        help="rows of the local-vs-Dask table (needs cvlabel[dask]; 0 skips it)",
    )
    parser.add_argument("--throughput-rows", type=int, default=4000, help="rows of table 2")
    parser.add_argument(
        "--repeats", type=int, default=3, help="turns of table 2 (floor, loader, infer each): medians are shown"
    )
    parser.add_argument(
        "--speaker-clips",
        default="1,30",
        help="rows per speaker of table 2 (one row each); tables 3 and 4 use the last",
    )
    parser.add_argument("--stage-clips", type=int, default=STAGE_CLIPS, help="clips of tables 1 and 1b")
    parser.add_argument("--caps", default="6,4,3", help="features.max_seconds values of the decoder table")
    parser.add_argument("--stages-only", action="store_true", help="print tables 1 and 1b only")
    parser.add_argument("--rates-only", action="store_true", help="print table 2b only (per native sample rate)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    corpus = args.corpus
    if corpus is None:
        corpus = args.out / "corpus"
        if not (corpus / "validated.tsv").exists():
            make_demo_corpus(corpus, DemoCorpusOptions(), jobs=os.cpu_count() or 1)
    model_file = RunFolder(args.out).model
    if args.model:
        model_file = RunFolder(args.model).model
    elif not model_file.exists():
        torch.manual_seed(0)
        config = Config()
        committee = Committee.empty(config.model, config.features.n_mels, config.train.folds).eval()
        save_checkpoint(committee, config, 1.0, model_file)
    report: dict = {}
    speaker_clips = [int(n) for n in args.speaker_clips.split(",")]
    by_rate = clips_by_rate(corpus)
    if args.rates_only:
        rate_table(report, corpus, by_rate, model_file, args)
        return
    clips = sorted((corpus / "clips").glob("*.mp3"))[: args.stage_clips]
    report["stages_ms_per_clip"] = stage_costs(clips, load_checkpoint(model_file))
    print(f"1. per clip, one thread ({len(clips)} clips of {corpus})")
    for name, value in report["stages_ms_per_clip"].items():
        print(f"   {name:<32} {value:8.2f}")
    decoders = decoder_costs(clips, load_checkpoint(model_file), [float(c) for c in args.caps.split(",") if c])
    report["decoders"] = decoders.to_dict(orient="index")
    print(f"\n1b. decoders alone and end to end, one thread, interleaved, median of 3 ({len(clips)} clips)")
    print(decoders.to_string(float_format=lambda v: f"{v:.2f}"))

    if args.stages_only:
        return
    report["throughput"] = {}
    for per_speaker in speaker_clips:
        rows_corpus = scaled_corpus(
            corpus, args.throughput_rows, args.out / f"scale-{args.throughput_rows}", per_speaker
        )
        for jobs in [int(j) for j in args.jobs.split(",")]:
            with tempfile.TemporaryDirectory(dir=args.out) as work:
                result = throughput(rows_corpus, model_file, jobs, Path(work), args.repeats)
            report["throughput"][f"jobs {jobs}, {per_speaker} clips/speaker"] = result
    print("\n2. infer vs the floor (soundfile, whole clips) and vs cvlabel's decode, same shards and processes")
    print(pd.DataFrame(report["throughput"]).T.to_string(float_format=lambda v: f"{v:.2f}"))
    if len(by_rate) > 1:
        rate_table(report, corpus, by_rate, model_file, args)

    def timed_infer(rows: int, *extra: str) -> dict[str, float]:
        scaled = scaled_corpus(corpus, rows, args.out / f"scale-{rows}", speaker_clips[-1])
        pred = args.out / f"scale-{rows}-pred"
        shutil.rmtree(pred, ignore_errors=True)
        watched = run_and_watch(
            [
                sys.executable,
                "-m",
                "cvlabel",
                "infer",
                str(scaled),
                "--unlabeled",
                "--model",
                str(model_file),
                "--out",
                str(pred),
                "--jobs",
                "2",
                *extra,
            ]
        )
        watched["clips_per_s"] = rows / watched["seconds"]
        return watched

    report["scale"] = {rows: timed_infer(rows) for rows in [int(r) for r in args.rows.split(",")]}
    print(
        f"\n3. cvlabel infer --jobs 2 from a fresh process, rows pointing at hard links of the clips, "
        f"{speaker_clips[-1]} a speaker"
    )
    print(pd.DataFrame(report["scale"]).T.to_string(float_format=lambda v: f"{v:.1f}"))

    if args.backend_rows:
        report["backends"] = {
            "local": timed_infer(args.backend_rows),
            "dask": timed_infer(args.backend_rows, "--backend", "dask"),
        }
        print(f"\n4. cvlabel infer --jobs 2 on {args.backend_rows} rows: local processes vs a Dask LocalCluster")
        print(pd.DataFrame(report["backends"]).T.to_string(float_format=lambda v: f"{v:.1f}"))
    (args.out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")


def rate_table(
    report: dict, corpus: Path, by_rate: dict[int, list[Path]], model_file: Path, args: argparse.Namespace
) -> None:
    """Print table 2b and put it in `report` (and in OUT/bench-rates.json: a --rates-only run keeps
    the other tables' bench.json)."""
    jobs = max(int(j) for j in args.jobs.split(","))
    rates = rate_throughput(corpus, by_rate, model_file, jobs, args)
    report["throughput_by_rate"] = rates.to_dict(orient="index")
    print(
        f"\n2b. infer --jobs {jobs} vs the floor (soundfile, whole clips at their own rate) per native sample rate: "
        f"{args.throughput_rows} rows of one rate's clips each, median of {args.repeats} turns"
    )
    print(rates.to_string(float_format=lambda v: f"{v:.2f}"))
    (args.out / "bench-rates.json").write_text(json.dumps(report["throughput_by_rate"], indent=1) + "\n")


if __name__ == "__main__":
    main()
