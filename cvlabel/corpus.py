"""Read one locale folder of a Common Voice release into a manifest DataFrame.

The manifest has one row per clip with the release's own columns kept as strings, plus:

    source_tsv  which TSV the row came from (`validated`, `other`, `invalidated`)
    cv_split    `train`/`dev`/`test` when the release's own split TSVs list the clip, else ""
    gender      normalised: `male`, `female`, `other`, `declined`, or None (blank: unlabeled)
    gender_raw  the gender string exactly as the TSV has it
    duration_s  from `clip_durations.tsv` when present, else NaN

Releases 7 to 23 are read by header, so renamed and added columns (`accent`/`accents`,
`variant`, `sentence_id`, `sentence_domain`) need no special case. A row with more or fewer fields
than its header is refused, naming its line: read as it stands, it would shift or blank the fields
after the break (a missing gender would read as blank, and be pseudo-labelled).
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CorpusError
from .files import file_sha256

log = logging.getLogger(__name__)

# Self-reported gender strings of releases up to v16 and from v17 on, mapped to the one
# vocabulary cvlabel uses. Blank is the only "unlabeled" value.
GENDER_TABLE: dict[str, str | None] = {
    "male": "male",
    "male_masculine": "male",
    "female": "female",
    "female_feminine": "female",
    "other": "other",
    "intersex": "other",
    "transgender": "other",
    "non-binary": "other",
    "do_not_wish_to_say": "declined",  # an explicit opt-out: never pseudo-labeled
    "": None,
}
# Values only releases from v17 on write, and how each vocabulary writes a binary label: an export in
# a release's own vocabulary writes `male_masculine` into a v17 release and `male` into a v16 one.
V17_ONLY_GENDERS = frozenset({"male_masculine", "female_feminine", "intersex", "transgender", "non-binary",
                              "do_not_wish_to_say"})  # fmt: skip
V16_ONLY_GENDERS = frozenset({"male", "female", "other"})
BINARY_GENDER_NAMES = {
    "v16": {"male": "male", "female": "female"},
    "v17": {"male": "male_masculine", "female": "female_feminine"},
}
CLIP_TSVS = ("validated", "other", "invalidated")  # disjoint sets of clips in a release
SPLIT_TSVS = ("train", "dev", "test")  # subsets of validated, speaker-disjoint
DURATIONS_TSV = (
    "clip_durations.tsv"  # each clip's length (newer releases); reported.tsv and the sentence TSVs list no clips
)
# Every TSV a Common Voice release ships (export tsv writes these, and no other .tsv of the folder)
RELEASE_TSVS = (*CLIP_TSVS, *SPLIT_TSVS, "reported", "clip_durations", "validated_sentences", "unvalidated_sentences")
REQUIRED_COLUMNS = ("client_id", "path", "gender")
# The clip TSV headers as releases write them (reading goes by header; these are for writing
# releases: the demo corpus and the tests).
TSV_HEADER_V16 = [
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accent",
    "locale",
    "segment",
]
TSV_HEADER_V17 = [
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
]
MANIFEST_COLUMNS = ("path", "client_id", "source_tsv", "cv_split", "gender", "gender_raw", "duration_s")
TSV_CHUNK_ROWS = 100_000  # rows of a TSV parsed at once (read_tsv)
FIELD_COUNT_BLOCK_BYTES = 2**20  # bytes of a TSV whose tabs and newlines are counted at once (16 MiB: ~1.5x slower)

# A row's `path` must name a file inside clips/: no absolute path, drive letter or `..` part.
_UNSAFE_PATH = re.compile(r"^(?:[/\\]|[A-Za-z]:)|(?:^|[/\\])\.\.(?:[/\\]|$)")


def clips_dir(corpus_dir: str | Path) -> Path:
    """The folder that every row's `path` is relative to."""
    return Path(corpus_dir) / "clips"


def read_tsv(tsv_path: str | Path) -> pd.DataFrame:
    """Read one Common Voice TSV by its header, every value a string, blanks as "".

    Quoting is off: sentences contain unbalanced `"` that a CSV quote parser would use to swallow
    the tabs and newlines of the rows after them. Lines end at "\n" alone, as Common Voice writes
    them and `export tsv` rewrites them: a stray "\r" in a sentence would otherwise split its row in
    two. A row whose field count differs from the header's is refused (check_field_counts).
    """
    tsv_path = Path(tsv_path)
    if tsv_path.stat().st_size == 0:
        return _no_rows(tsv_path)
    check_field_counts(tsv_path)
    settings = dict(
        sep="\t",
        lineterminator="\n",
        quoting=csv.QUOTE_NONE,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding="utf-8",
        encoding_errors="replace",  # a stray non-UTF-8 byte in a sentence must not stop a run
    )
    try:
        # parsed a block of rows at a time: the parser's buffers are several times the text it holds
        shared: dict[str, str] = {}
        chunks = pd.read_csv(tsv_path, chunksize=TSV_CHUNK_ROWS, **settings)
        parts = [_shared_strings(chunk, shared) for chunk in chunks]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.read_csv(tsv_path, nrows=0, **settings)
    except pd.errors.EmptyDataError:  # blank lines alone
        return _no_rows(tsv_path)
    except pd.errors.ParserError as exc:
        raise CorpusError(f"{tsv_path}: not a readable tab-separated file ({_first_line(exc)})") from None
    last = frame.columns[-1]
    if isinstance(last, str) and last.endswith("\r"):  # Windows line ends: "\r" closes each line's last field
        frame = frame.rename(columns={last: last[:-1]})
        frame[last[:-1]] = frame[last[:-1]].str.removesuffix("\r")
    return frame.astype(object)


def _shared_strings(chunk: pd.DataFrame, shared: dict[str, str]) -> pd.DataFrame:
    """The chunk's columns as object arrays in which equal strings are one object: a release repeats its
    speakers, ages, locales and blanks on every row, and a string object a cell cost a million-row
    release ~1 GB. Columns mostly of distinct values (paths, sentences) are left as they are read."""
    columns = {}
    for name in chunk.columns:
        codes, uniques = pd.factorize(chunk[name])
        values = np.asarray(uniques, dtype=object)
        if len(values) <= len(chunk) // 2:  # worth sharing across the chunks too
            values = np.array([shared.setdefault(value, value) for value in values], dtype=object)
        # dtype object said outright: pandas 3 would store an array of strings as its own string type
        columns[name] = pd.Series(values[codes] if len(values) else [], index=chunk.index, dtype=object)
    return pd.DataFrame(columns)


def _no_rows(tsv_path: Path) -> pd.DataFrame:
    log.warning("%s is empty (no header); reading it as no rows", tsv_path)
    return pd.DataFrame(columns=list(REQUIRED_COLUMNS), dtype=object)


def check_field_counts(tsv_path: str | Path) -> None:
    """Refuse a TSV holding a row with more or fewer fields than its header, naming the first one.

    pandas pads a short row with blanks (a truncated row's gender reads as blank) and takes the extra
    field of a long first row as an index, shifting every column. So the tabs of each line are
    counted first, on the bytes, a block at a time (no Python loop over rows). Blank lines are
    skipped, as the reader skips them.
    """
    tabs_before, line_ends, tabs_seen, size, last_byte = [], [], 0, 0, b"\n"
    with open(tsv_path, "rb") as reader:
        while block := reader.read(FIELD_COUNT_BLOCK_BYTES):
            data = np.frombuffer(block, dtype=np.uint8)
            newlines = np.flatnonzero(data == ord("\n"))
            tabs = np.flatnonzero(data == ord("\t"))
            tabs_before.append(np.searchsorted(tabs, newlines) + tabs_seen)
            line_ends.append(newlines + size)
            tabs_seen, size, last_byte = tabs_seen + len(tabs), size + len(block), block[-1:]
    if last_byte != b"\n":  # a last line without its newline
        tabs_before.append(np.array([tabs_seen]))
        line_ends.append(np.array([size]))
    fields = np.diff(np.concatenate(tabs_before), prepend=0) + 1
    blank = np.diff(np.concatenate(line_ends), prepend=-1) == 1  # nothing between two newlines
    if blank.all():
        return
    header = int(np.argmax(~blank))
    broken = np.flatnonzero((fields != fields[header]) & ~blank)
    if len(broken):
        first = int(broken[0])
        more = f"; {len(broken)} such rows" if len(broken) > 1 else ""
        raise CorpusError(
            f"{tsv_path}, line {first + 1}: {_fields(fields[first])}, the header has {fields[header]} "
            f"(a truncated or broken row{more})"
        )


def tsv_line(tsv_path: str | Path, position: int) -> int:
    """The line (from 1, the header's) of a TSV's data row `position` (from 0), as an editor numbers it:
    the blank lines the reader skips count. For error messages (reads the file); position + 2 when
    `tsv_path` cannot be read."""
    try:
        with open(tsv_path, "rb") as lines:
            rows = -2  # the header is line 1, before row 0
            for number, line in enumerate(lines, start=1):
                rows += line != b"\n"
                if rows == position:
                    return number
    except OSError:
        pass
    return position + 2


def normalise_gender(raw: pd.Series, source: str | Path) -> pd.Series:
    """Map self-reported gender strings to `male|female|other|declined|None`.

    An unknown value is an error naming the value, the file and the line of its first row: a new
    vocabulary must be added to GENDER_TABLE deliberately, never guessed.
    """
    cleaned = raw.fillna("").astype(str).str.strip().str.lower()
    if set(cleaned.unique()) - GENDER_TABLE.keys():
        unknown = ~cleaned.isin(GENDER_TABLE.keys()).to_numpy()
        line = tsv_line(source, int(np.flatnonzero(unknown)[0]))
        values = [repr(v) for v in pd.unique(cleaned[unknown])]  # in the order of the rows
        later = f"; also {', '.join(values[1:5])}{' ...' if len(values) > 5 else ''} on later rows"
        known = ", ".join(repr(k) for k in GENDER_TABLE if k)
        raise CorpusError(
            f"{source}, line {line}: unknown gender value {values[0]}{later if len(values) > 1 else ''}; "
            f"known values: {known}"
        )
    mapped = cleaned.map(GENDER_TABLE).astype(object)
    return mapped.where(mapped.notna(), None)


def gender_vocabulary(raw: pd.Series) -> str:
    """`v17` when a release's gender strings include one only v17 and later write, else `v16` when they
    include one only v16 and earlier write, else `v17` (no self-reported value: today's releases)."""
    values = set(raw.fillna("").astype(str).str.strip().str.lower())
    return "v16" if not values & V17_ONLY_GENDERS and values & V16_ONLY_GENDERS else "v17"


def check_clip_paths(paths: pd.Series, source: str | Path) -> None:
    """Refuse a `path` that is blank, absolute, or climbs out of clips/ with `..`."""
    bad = paths.eq("") | paths.str.contains(_UNSAFE_PATH)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise CorpusError(
            f"{source}, line {tsv_line(source, position)}: path {paths.iloc[position]!r} is not a file name "
            f"inside clips/ (absolute paths and '..' are refused)"
        )


def read_release(corpus_dir: str | Path, tsvs: tuple[str, ...] = CLIP_TSVS, need_clips: bool = True) -> pd.DataFrame:
    """Read the clip TSVs of one locale folder into a manifest (see the module docstring).

    `tsvs` names the clip TSVs to read (without `.tsv`); missing ones are skipped, but at least
    one must exist. A clip listed in two TSVs is kept once, from the first TSV named. A folder
    without clips/ is refused unless `need_clips` is False (`inspect` reads the TSVs alone).
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir}: no such folder")
    if not _is_locale_folder(corpus_dir, need_clips):
        locales = sorted(d.name for d in corpus_dir.iterdir() if d.is_dir() and _is_locale_folder(d, need_clips))
        if locales:  # a release root (cv-corpus-NN/), holding one folder per locale
            shown = ", ".join(locales[:8]) + (" ..." if len(locales) > 8 else "")
            raise CorpusError(
                f"{corpus_dir} is a release root, not a locale folder; pick one of its locales: "
                f"{shown} (e.g. {corpus_dir / locales[0]})"
            )
        raise CorpusError(f"{corpus_dir}: no clips/ folder; is this a Common Voice locale folder?")
    unknown = [name for name in tsvs if name not in CLIP_TSVS]
    if unknown:
        raise CorpusError(f"unknown clip TSV {unknown[0]!r}; choose from {', '.join(CLIP_TSVS)}")

    frames = []
    for name in tsvs:
        tsv_path = corpus_dir / f"{name}.tsv"
        if not tsv_path.is_file():
            continue
        frame = read_tsv(tsv_path)
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise CorpusError(f"{tsv_path}: missing column {missing[0]!r} (has: {', '.join(frame.columns)})")
        check_clip_paths(frame["path"], tsv_path)
        frame["gender_raw"] = frame["gender"]
        frame["gender"] = normalise_gender(frame["gender_raw"], tsv_path)
        frame["source_tsv"] = name
        frames.append(frame)
    if not frames:
        raise CorpusError(f"{corpus_dir}: none of {', '.join(t + '.tsv' for t in tsvs)} found")

    manifest = pd.concat(frames, ignore_index=True, sort=False)
    gender = manifest["gender"]
    manifest = manifest.fillna("")  # columns that only some TSVs have
    manifest["gender"] = gender

    duplicated = manifest["path"].duplicated()
    if duplicated.any():
        log.warning(
            "%d rows repeat a clip already listed (first: %s); each clip is kept once",
            int(duplicated.sum()),
            manifest.loc[duplicated, "path"].iloc[0],
        )
        manifest = manifest.loc[~duplicated].reset_index(drop=True)

    manifest["cv_split"] = _release_splits(corpus_dir, manifest["path"])
    manifest["duration_s"] = _clip_durations(corpus_dir, manifest["path"])
    rest = [c for c in manifest.columns if c not in MANIFEST_COLUMNS]
    return manifest[list(MANIFEST_COLUMNS) + rest]


def _is_locale_folder(folder: Path, need_clips: bool) -> bool:
    if clips_dir(folder).is_dir():
        return True
    return not need_clips and any((folder / f"{name}.tsv").is_file() for name in CLIP_TSVS)


def release_fingerprint(corpus_dir: str | Path) -> dict[str, str]:
    """The SHA-256 of each clip and split TSV the folder holds (`validated.tsv` -> digest): what
    predictions and exports were made from, so a release changed since can be refused."""
    names = [f"{name}.tsv" for name in (*CLIP_TSVS, *SPLIT_TSVS)]
    return {name: file_sha256(Path(corpus_dir) / name) for name in names if (Path(corpus_dir) / name).is_file()}


def _release_splits(corpus_dir: Path, paths: pd.Series) -> pd.Series:
    """`train`/`dev`/`test` for clips the release's own split TSVs list, else ""."""
    split_of: dict[str, str] = {}
    for name in SPLIT_TSVS:
        tsv_path = corpus_dir / f"{name}.tsv"
        if tsv_path.is_file():
            listed = read_tsv(tsv_path)
            if "path" in listed.columns:
                split_of.update(dict.fromkeys(listed["path"], name))
    return paths.map(lambda path: split_of.get(path, "")).astype(object)


def _clip_durations(corpus_dir: Path, paths: pd.Series) -> pd.Series:
    """Seconds from `clip_durations.tsv` (columns `clip`, `duration[ms]`), NaN where unknown."""
    tsv_path = corpus_dir / DURATIONS_TSV
    if not tsv_path.is_file():
        return pd.Series(np.nan, index=paths.index)
    table = read_tsv(tsv_path)
    if not {"clip", "duration[ms]"} <= set(table.columns):
        log.warning("%s lacks the columns clip and duration[ms]; durations unknown", tsv_path)
        return pd.Series(np.nan, index=paths.index)
    ms = pd.to_numeric(table["duration[ms]"], errors="coerce")
    return paths.map(dict(zip(table["clip"], ms / 1000.0, strict=False))).astype(float)


def _fields(count: int) -> str:
    return "1 field" if count == 1 else f"{count} fields"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
