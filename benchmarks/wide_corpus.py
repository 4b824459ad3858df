"""The development corpus with 10 (or, with --wider, 20) more MBROLA vocal tracts: the instrument of
docs/experiments.md ("More vocal tracts: the limit is the corpus, not the recipe").

The shared generator (../shared/corpora/make_dev_corpus.py) knows 17 MBROLA voices, too few to tell
whether a model generalises to a new vocal tract. This runs that generator unchanged, with its voice
table extended by Debian `mbrola-XX` voices and their gender from the package description (the
female ones come from other languages: English, German, French and Spanish have no more female
voices). Needs the generator's own setup (`bash ../shared/corpora/make_dev_corpus.sh` once) and,
as root, the extra voices:

    apt-get install mbrola-de8 mbrola-fr3 mbrola-fr6 mbrola-es4 mbrola-mx1 \\
        mbrola-it4 mbrola-nl3 mbrola-pt1 mbrola-pl1 mbrola-br4
    # --wider also (37 voices; Swedish, Czech and Turkish sentences come from the generator's gettext catalogs):
    apt-get install mbrola-it2 mbrola-br2 mbrola-sw2 mbrola-cz1 mbrola-tr2 \\
        mbrola-it3 mbrola-nl2 mbrola-br3 mbrola-cz2 mbrola-sw1
    python3 benchmarks/wide_corpus.py /tmp/devcorpus-wide [--wider] [generator options ...]
    python benchmarks/trust.py /tmp/devcorpus-wide --out outputs/trust-wide --target-precision 0.6

Use the python3 the generator was set up with (it needs lameenc, soundfile and soxr, not cvlabel).
"""

from __future__ import annotations

import sys
from pathlib import Path

GENERATOR = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "make_dev_corpus.py"

# voice -> (gender, Common Voice locale, sentence language), as the generator's own MBROLA table
MORE_VOICES = {
    "de8": ("male", "de", "de"),
    "fr3": ("male", "fr", "fr"),
    "fr6": ("male", "fr", "fr"),
    "es4": ("male", "es", "es"),
    "mx1": ("male", "es", "es"),
    "it4": ("female", "it", "it"),
    "nl3": ("female", "nl", "nl"),
    "pt1": ("female", "pt", "pt"),
    "pl1": ("female", "pl", "pl"),
    "br4": ("female", "pt", "pt"),
}
WIDER_VOICES = {  # --wider
    "it2": ("female", "it", "it"),
    "br2": ("female", "pt", "pt"),
    "sw2": ("female", "sv-SE", "sv"),
    "cz1": ("female", "cs", "cs"),
    "tr2": ("female", "tr", "tr"),
    "it3": ("male", "it", "it"),
    "nl2": ("male", "nl", "nl"),
    "br3": ("male", "pt", "pt"),
    "cz2": ("male", "cs", "cs"),
    "sw1": ("male", "sv-SE", "sv"),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR [options of {GENERATOR.name}]")
    if not GENERATOR.is_file():
        sys.exit(f"{GENERATOR}: the shared corpus generator is not there")
    voices_to_add = dict(MORE_VOICES)
    if "--wider" in sys.argv:
        sys.argv.remove("--wider")
        voices_to_add.update(WIDER_VOICES)
    sys.path.insert(0, str(GENERATOR.parent))  # imported by name: its worker processes pickle its functions
    import make_dev_corpus as generator

    missing = [v for v in voices_to_add if not (Path(generator.MBROLA_DIR) / v / v).exists()]
    if missing:
        packages = " ".join(f"mbrola-{v}" for v in missing)
        sys.exit(f"MBROLA voices not installed: {' '.join(missing)} (as root: apt-get install {packages})")
    generator.MBROLA.update(voices_to_add)
    voices = ",".join(generator.MBROLA)
    sys.argv = [str(GENERATOR), "--out", sys.argv[1], "--mbrola-voices", voices, *sys.argv[2:]]
    generator.main()


if __name__ == "__main__":
    main()
