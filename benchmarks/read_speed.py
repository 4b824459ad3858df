"""How long reading a large release takes: a synthetic validated.tsv of `--rows` rows (the v17
column set, 128-hex client_ids, ~80-character sentences, a third of the genders blank), read by
`corpus.read_tsv` and by `corpus.read_release`. Prints the best of `--repeat` wall and CPU times.

    python benchmarks/read_speed.py /tmp/read-speed [--rows 1000000] [--repeat 3]

The folder is reused if it already holds a release of that many rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cvlabel.corpus import TSV_HEADER_V17, read_release, read_tsv

GENDERS = ["male_masculine", "female_feminine", "", "", "male_masculine", "do_not_wish_to_say"]
WORDS = ["Kiedy", "studiowałem", "prawo", "europejskie,", 'zakres "uprawnień', "w", "zakresie", "był", "dziś"]


def write_release(folder: Path, rows: int, seed: int = 0) -> Path:
    """A locale folder (an empty clips/) whose validated.tsv has `rows` rows."""
    tsv = folder / "validated.tsv"
    if tsv.is_file() and sum(1 for _ in tsv.open("rb")) == rows + 1:
        return folder
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    speakers = [rng.bytes(64).hex() for _ in range(max(1, rows // 20))]
    with open(tsv, "w", encoding="utf-8") as out:
        out.write("\t".join(TSV_HEADER_V17) + "\n")
        for i in range(rows):
            speaker = int(rng.integers(len(speakers)))
            sentence = " ".join(rng.choice(WORDS, size=12))
            gender = GENDERS[speaker % len(GENDERS)]
            fields = [speakers[speaker], f"common_voice_pl_{i}.mp3", rng.bytes(32).hex(), sentence, "", "2", "0",
                      "thirties" if gender else "", gender, "", "", "pl", ""]  # fmt: skip
            out.write("\t".join(fields) + "\n")
    return folder


def best_of(repeat: int, work: Callable[[], object]) -> str:
    """The best wall time and the best CPU time of this process (steadier on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return f"{min(wall):6.2f} s wall {min(cpu):6.2f} s CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where the synthetic release is written")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of validated.tsv")
    parser.add_argument("--repeat", type=int, default=3, help="timed reads of each; the best is printed")
    args = parser.parse_args()

    folder = write_release(args.folder, args.rows)
    size_mb = (folder / "validated.tsv").stat().st_size / 1e6
    print(f"{folder / 'validated.tsv'}: {args.rows} rows, {size_mb:.0f} MB")
    print(f"read_tsv      {best_of(args.repeat, lambda: read_tsv(folder / 'validated.tsv'))}")
    print(f"read_release  {best_of(args.repeat, lambda: read_release(folder))}")


if __name__ == "__main__":
    main()
