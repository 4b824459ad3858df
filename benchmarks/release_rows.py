"""A release of a million rows through every stage: infer (local and Dask), the exports, their reports.

    python benchmarks/release_rows.py --corpus ../shared/corpora/realcv --model outputs/realcv-model \
        --rows 100000,1000000 --out outputs/release-rows

MODEL is a run folder of `cvlabel train` (e.g. `cvlabel train ../shared/corpora/realcv --out
outputs/realcv-model`). For each --rows N this builds a release of N rows out of the corpus's TSV rows
(copy k of speaker S is `S-copyK`, its clips hard links `copyK_NAME.mp3`, so nothing is copied on
disk); --blank-share of the self-reported speakers of the copies get a blank gender (on top of the
corpus's own blank speakers), as a release's blank rows are what infer scores. Then it runs, each in a
fresh process as a user would (`--jobs 2`, start-up included), on the same release:

    cvlabel inspect REL
    cvlabel infer REL --unlabeled --model MODEL --out PRED                 (local processes)
    cvlabel infer REL --unlabeled --model MODEL --out PRED-dask --backend dask
    cvlabel export parquet REL --predictions PRED --out X [--layout release]   (each writes report.html)
    cvlabel export tsv / export lhotse ...

and prints, per stage and N: wall seconds, peak RSS of the main process and of the largest worker (every
0.2 s, infer_speed.run_and_watch), the disk its output takes; then each stage's time ratio between the
largest and the smallest N beside the rows' ratio (linear: the two are equal). It also checks that
nothing was lost: infer predicted or reported every blank row, the Dask predictions equal the local
ones, export parquet --layout release and export tsv hold every row of the release, lhotse's manifests
every row of the TSVs infer read.

The copies share their voices, so the labels here mean nothing: this measures time, memory and disk.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_speed import run_and_watch  # noqa: E402  (a benchmark helper beside this file)

from cvlabel.corpus import CLIP_TSVS, read_release, read_tsv  # noqa: E402

# The model's reference speakers are not the copies' (another release), so no claim would cover their locales:
# a threshold given by hand labels the rows, which is the work that grows with them
EXPORT_ARGS = ["--min-confidence", "0.9"]


def scaled_release(corpus: Path, rows: int, blank_share: float, target: Path, seed: int = 0) -> Path:
    """About `rows` rows of the corpus's clip TSVs copied under new speakers; `blank_share` of the copies'
    self-reported speakers blanked (seeded)."""
    if (target / "validated.tsv").exists():
        return target
    tables = {name: read_tsv(corpus / f"{name}.tsv") for name in CLIP_TSVS if (corpus / f"{name}.tsv").exists()}
    per_copy = sum(len(table) for table in tables.values())
    copies = max(1, math.ceil(rows / per_copy))
    rng = np.random.default_rng(seed)
    (target / "clips").mkdir(parents=True)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in tables}
    for copy in range(copies):
        for name, table in tables.items():
            part = table.assign(client_id=table["client_id"] + f"-copy{copy}", path=f"copy{copy:04d}_" + table["path"])
            speakers = part["client_id"].unique()
            blanked = set(speakers[rng.random(len(speakers)) < blank_share])
            part.loc[part["client_id"].isin(blanked), "gender"] = ""
            for source, linked in zip(table["path"], part["path"], strict=True):
                os.link(corpus / "clips" / source, target / "clips" / linked)
            parts[name].append(part)
    left = rows
    for name, chunks in parts.items():
        whole = pd.concat(chunks).head(left) if chunks else pd.DataFrame()
        left -= len(whole)
        whole.to_csv(target / f"{name}.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return target


def disk_mb(folder: Path) -> float:
    """Bytes the folder's files take (symlinks not followed), in MB."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def stage_commands(release: Path, model: Path, work: Path) -> dict[str, tuple[list[str], Path | None]]:
    """Stage name -> (cvlabel arguments, the folder it writes)."""
    pred = work / "pred"
    exports = {
        "export parquet (classifier)": ["parquet"],
        "export parquet --layout release": ["parquet", "--layout", "release"],
        "export tsv": ["tsv"],
        "export lhotse": ["lhotse"],
    }

    def infer(out: Path, *backend: str) -> tuple[list[str], Path]:
        return ["infer", str(release), "--unlabeled", "--model", str(model), "--out", str(out), "--jobs", "2",
                *backend], out  # fmt: skip

    stages: dict[str, tuple[list[str], Path | None]] = {
        "inspect": (["inspect", str(release)], None),
        "infer (local)": infer(pred),
        "infer (dask)": infer(work / "pred-dask", "--backend", "dask"),
    }
    for index, (stage, verb) in enumerate(exports.items()):
        out = work / f"export{index}"
        stages[stage] = (
            ["export", *verb, str(release), "--predictions", str(pred), "--out", str(out), *EXPORT_ARGS],
            out,
        )
    return stages


def run_stage(arguments: list[str], out: Path | None) -> dict[str, float]:
    if out is not None and out.exists():
        shutil.rmtree(out)
    watched = run_and_watch([sys.executable, "-m", "cvlabel", "-q", *arguments])
    watched["disk_mb"] = disk_mb(out) if out is not None else 0.0
    return watched


def lost_rows(release: Path, work: Path) -> dict[str, Any]:
    """What each output holds against the release: the counts a check of 'nothing lost' compares."""
    manifest = read_release(release)  # as infer reads it: a blank gender is null
    read = json.loads((work / "pred" / "plan.json").read_text())["tsvs"]
    blank_paths = set(manifest.loc[manifest["gender"].isna() & manifest["source_tsv"].isin(read), "path"])
    local = pd.read_parquet(work / "pred" / "predictions.parquet")
    dask = pd.read_parquet(work / "pred-dask" / "predictions.parquet")
    merged = local.merge(dask, on="path", suffixes=("", "_dask"))
    layout_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in (work / "export1").glob("*.parquet"))
    tsv_rows = sum(len(read_tsv(f)) for f in (work / "export2").glob("*.tsv") if f.stem in CLIP_TSVS)
    summary = json.loads((work / "export0" / "summary.json").read_text())
    lhotse = json.loads((work / "export3" / "summary.json").read_text())
    return {
        "release rows": len(manifest),
        "blank rows of the TSVs infer read": len(blank_paths),
        "rows infer predicted (local)": len(local),
        "blank rows infer did not predict": len(blank_paths - set(local["path"])),
        "Dask predictions equal local (p_female within 1e-5)": bool(
            len(merged) == len(local) == len(dask)
            and np.allclose(merged["p_female"], merged["p_female_dask"], atol=1e-5, equal_nan=True)
        ),
        "rows of export parquet --layout release": layout_rows,
        "rows of export tsv's clip TSVs": tsv_rows,
        "pseudo-labelled rows (export parquet)": sum(summary["pseudo_labels"].values()),
        "rows of the TSVs infer read": int(manifest["source_tsv"].isin(read).sum()),
        "clips in the lhotse manifests": sum(lhotse["manifests"].values()) + lhotse["missing_clips"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora/realcv"))
    parser.add_argument("--model", type=Path, required=True, help="a run folder of 'cvlabel train'")
    parser.add_argument("--rows", default="100000,1000000", help="comma-separated release sizes")
    parser.add_argument("--blank-share", type=float, default=0.25, help="self-reported speakers blanked")
    parser.add_argument("--stages", default="", help="comma-separated stage names to run [default: all]")
    parser.add_argument("--out", type=Path, default=Path("outputs/release-rows"))
    args = parser.parse_args()

    sizes = [int(r) for r in args.rows.split(",")]
    results: dict[str, dict[int, dict[str, float]]] = {}
    checks = {}
    for rows in sizes:
        release = scaled_release(args.corpus, rows, args.blank_share, args.out / f"release-{rows}")
        work = args.out / f"work-{rows}"
        for stage, (arguments, out) in stage_commands(release, args.model.resolve(), work).items():
            if args.stages and stage not in args.stages.split(","):
                continue
            results.setdefault(stage, {})[rows] = watched = run_stage(arguments, out)
            print(f"{rows:>9,} rows  {stage:<32} {watched['seconds']:8.1f} s", flush=True)
        if not args.stages:
            checks[rows] = lost_rows(release, work)
    for rows in sizes:
        print(
            f"\n{rows:,} rows, {args.blank_share} of the copies' self-reported speakers blanked, {os.cpu_count()} cores"
        )
        table = pd.DataFrame({stage: by_rows[rows] for stage, by_rows in results.items() if rows in by_rows}).T
        print(
            table[["seconds", "peak_rss_main_mb", "peak_rss_worker_mb", "disk_mb"]].to_string(
                float_format=lambda v: f"{v:.1f}"
            )
        )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\ntime ratio {large:,} / {small:,} rows (rows ratio {large / small:.1f})")
        ratios = {stage: by_rows[large]["seconds"] / by_rows[small]["seconds"] for stage, by_rows in results.items()}
        print(pd.Series(ratios).to_string(float_format=lambda v: f"{v:.2f}"))
    if checks:
        print("\nnothing lost")
        print(pd.DataFrame(checks).to_string())
    (args.out / "release_rows.json").write_text(
        json.dumps({"results": results, "checks": checks}, indent=1, default=str)
    )


if __name__ == "__main__":
    main()
