"""Plain-text reports: a release (`inspect`), runs side by side (`compare`), pseudo-labels
against known truth (`check-truth`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import ExportFolder, read_metrics
from .checkpoint import read_checkpoint_info
from .config import Config
from .corpus import CLIP_TSVS, DURATIONS_TSV, SPLIT_TSVS, clips_dir, read_release, read_tsv
from .errors import CvlabelError
from .files import write_text
from .html_report import claim_words, compare_page, export_headline, guarantee_sentence
from .labels import BINARY_GENDERS
from .splits import SPLITS, assign_splits
from .summaries import ExportSummary, InferSummary

GENDER_ORDER = ["male", "female", "other", "declined", "blank"]


def describe_release(corpus_dir: str | Path, config: Config) -> str:
    """Rows per TSV and gender, the unlabeled rows and speakers, the planned splits, and what the
    folder's other TSVs gave. The TSVs are enough: a folder without clips/ is described too."""
    corpus_dir = Path(corpus_dir)
    manifest = read_release(corpus_dir, need_clips=False)
    gender = manifest["gender"].fillna("blank")
    table = pd.crosstab(manifest["source_tsv"], gender).reindex(columns=GENDER_ORDER, fill_value=0)
    blank = manifest["gender"].isna()
    stating = manifest.loc[~blank, "client_id"].unique()  # speakers with a gender on at least one row
    blank_of_stating = int((blank & manifest["client_id"].isin(stating)).sum())
    _, report = assign_splits(manifest, config.splits)

    folder = clips_dir(corpus_dir)
    if not folder.is_dir():
        no_clips = " (no clips/ folder: TSVs only; train and infer need the clips)"
    else:  # one stat a row: how much of the release's audio is here
        on_disk = sum((folder / path).exists() for path in manifest["path"])
        no_clips = "" if on_disk == len(manifest) else f" ({on_disk} of the listed clips are in clips/)"
    lines = [
        f"{corpus_dir}: {len(manifest)} clips, {manifest['client_id'].nunique()} speakers{no_clips}",
        "",
        "rows by TSV and gender:",
        table.to_string(),
        "",
        f"unlabeled (blank gender): {int(blank.sum())} rows"
        + (f" ({blank_of_stating} of speakers who state a gender on other rows)" if blank_of_stating else "")
        + f"; {manifest['client_id'].nunique() - len(stating)} speakers never state a gender",
        "",
        f"splits over {', '.join(config.splits.source_tsvs)} (speakers / clips, male + female):",
    ]
    for split in SPLITS:
        spk, clips = report.speakers[split], report.clips[split]
        lines.append(
            f"  {split:<5} {spk['male']:>5} + {spk['female']:<5} speakers  "
            f"{clips['male']:>7} + {clips['female']:<7} clips"
        )
    if report.capped_clips:
        lines.append(
            f"  {report.capped_clips} train clips over the cap of {config.splits.max_clips_per_speaker} per speaker"
        )
    if report.conflicting_speakers:
        lines.append(f"  {len(report.conflicting_speakers)} speakers whose rows disagree about gender are left out")
    others = _other_tsvs(corpus_dir, manifest)
    if others:
        lines += ["", "other TSVs:", *others]
    return "\n".join(lines)


def _other_tsvs(corpus_dir: Path, manifest: pd.DataFrame) -> list[str]:
    """A line for each TSV of the folder that is not a clip TSV: the release's splits, the durations,
    and the rest (reported.tsv, the sentence TSVs...), which list no clips and are not read."""
    order = [f"{name}.tsv" for name in SPLIT_TSVS] + [DURATIONS_TSV]
    names = sorted(
        (tsv.name for tsv in corpus_dir.glob("*.tsv") if tsv.stem not in CLIP_TSVS),
        key=lambda name: (order.index(name) if name in order else len(order), name),
    )
    width = max((len(name) for name in names), default=0)
    lines = []
    for name in names:
        if name == DURATIONS_TSV:
            what = f"durations of {int(manifest['duration_s'].notna().sum())} of {len(manifest)} clips"
        elif name[: -len(".tsv")] in SPLIT_TSVS:
            split = name[: -len(".tsv")]
            what = f"the release's own {split} split: {int(manifest['cv_split'].eq(split).sum())} of these clips"
        else:
            what = "lists no clips: not read"
        lines.append(f"  {name:<{width}}  {what}")
    return lines


COMPARE_KEYS = [
    "clips",
    "speakers",
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "ece",
    "speaker_accuracy",
    "precision_female",
    "recall_female",
    "precision_male",
    "recall_male",
]


def compare_runs(run_dirs: list[Path], html_file: Path | None = None) -> str:
    """Test metrics of two or more runs as columns, the change from the first run, and their train
    clips; a warning line when the runs were tested on different corpora. With `html_file`, the
    same side by side as a page with each run's figures (html_report.compare_page)."""
    if len(run_dirs) < 2:
        raise CvlabelError("compare needs two or more run folders (e.g. before and after retraining)")
    if html_file is not None and Path(html_file).is_dir():
        raise CvlabelError(f"--html {html_file} is a folder; give a file name, e.g. compare.html")
    if html_file is not None and not Path(html_file).parent.is_dir():
        raise CvlabelError(f"--html {html_file}: the folder {Path(html_file).parent} does not exist")
    if html_file is not None and Path(html_file).exists():  # as every other command: nothing is overwritten
        raise CvlabelError(f"--html {html_file} exists; give another file name, or delete it first")
    columns, corpora, runs = {}, set(), []
    for run_dir in run_dirs:
        metrics = read_metrics(run_dir)
        runs.append(metrics)
        values = {key: metrics.get(key) for key in COMPARE_KEYS}
        values["train_clips"] = metrics.get("splits", {}).get("train", {}).get("clips")
        columns[str(run_dir)] = values
        corpora.add(read_checkpoint_info(run_dir).info.get("corpus", ""))
    table = pd.DataFrame(columns)
    first = table.iloc[:, 0]
    for name in list(table.columns[1:]):
        table[f"change ({Path(name).name})"] = table[name] - first
    shown = table.copy().astype(object)
    for key in table.index:
        for column in table.columns:
            shown.loc[key, column] = _number(table.loc[key, column], key in COUNT_KEYS, column.startswith("change"))
    notes = []
    if len(corpora) > 1:
        notes.append(f"warning: these runs were trained on different corpora ({', '.join(sorted(corpora))}): "
                     "their test rows differ, so the figures do not compare like for like")  # fmt: skip
    fewest = min((m.get("speakers") or 0, str(d)) for m, d in zip(runs, run_dirs, strict=True))
    if fewest[0] < FEW_TEST_SPEAKERS:
        notes.append(f"warning: {fewest[1]} was tested on {fewest[0]} speakers: one speaker right or wrong moves its "
                     f"speaker accuracy by {1 / max(fewest[0], 1):.2f}, and its clips come in a few speakers' lumps, "
                     "so differences between these runs smaller than that say nothing")  # fmt: skip
    if html_file is not None:
        try:
            write_text(html_file, compare_page(run_dirs, shown, notes, runs))
        except OSError as exc:
            raise CvlabelError(f"--html {html_file}: cannot write there ({exc.strerror or exc})") from None
        notes.append(f"side by side with figures: {html_file}")
    return "\n".join([shown.to_string(), *notes])


COUNT_KEYS = ("clips", "speakers", "train_clips")
FEW_TEST_SPEAKERS = 30  # below this many test speakers, compare says its differences are noise


def _number(value: Any, count: bool, signed: bool) -> str:
    if value is None or pd.isna(value):
        return "-"
    sign = "+" if signed else ""
    return f"{value:{sign}.0f}" if count else f"{value:{sign}.4f}"


def check_truth(aug_dir: str | Path, truth_tsv: str | Path) -> str:
    """Precision and coverage of an export's labels for blank-gender rows against true genders."""
    truth = read_tsv(truth_tsv)
    if not {"path", "true_gender"} <= set(truth.columns):
        raise CvlabelError(f"{truth_tsv}: needs the columns path and true_gender")
    rows = ExportFolder(aug_dir).read_rows().merge(truth[["path", "true_gender"]], on="path", how="left")
    if rows["true_gender"].isna().all():
        raise CvlabelError(f"{truth_tsv}: none of its paths is a row of {aug_dir}; is it the truth of another corpus?")
    blank = rows[rows["gender_raw"].str.strip().eq("")]
    lines = [f"{len(blank)} blank-gender rows exported"]
    for source in ("pseudo", "speaker"):
        labelled = blank[blank["gender_source"] == source]
        if labelled.empty:
            lines.append(f"  {source:<8} no rows")
            continue
        correct = labelled["gender"] == labelled["true_gender"]
        speakers = labelled.groupby("client_id").apply(
            lambda g: bool((g["gender"] == g["true_gender"]).all()), include_groups=False
        )
        lines.append(
            f"  {source:<8} {len(labelled):>6} rows ({len(labelled) / max(1, len(blank)):.1%} coverage), "
            f"precision {correct.mean():.4f}; {len(speakers)} speakers, {speakers.mean():.4f} all correct"
        )
        for gender in BINARY_GENDERS:
            chosen = labelled[labelled["gender"] == gender]
            if len(chosen):
                lines.append(
                    f"           {gender:<6} {len(chosen):>6} rows, precision "
                    f"{(chosen['gender'] == chosen['true_gender']).mean():.4f}"
                )
    left = blank[blank["gender"].isna()]
    why = left["blank_reason"] if "blank_reason" in left else left.get("unused_reason", pd.Series(dtype=object))
    counts = why.fillna("no reason recorded").value_counts()
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.items())
    lines.append(f"  left blank: {len(left)} rows" + (f" ({reasons})" if reasons else ""))
    return "\n".join(lines)


def describe_export(summary: ExportSummary) -> str:
    """What an export promises and what it left blank, in words: its command's last lines."""
    # each gender's claim in the headline's words (html_report owns them), then what the export wrote
    lines = [claim_words(gender, claim, summary) for gender, claim in summary["claims"].items()]
    pseudo = summary["pseudo_labels"]
    lines.append(f"pseudo-labels: {sum(pseudo.values())} rows ({', '.join(f'{g} {n}' for g, n in pseudo.items())})")
    reasons = summary.get("unused_reasons", summary.get("blank_reasons", {}))
    left = {k: v for k, v in reasons.items() if k not in ("rebalanced away", "held-out speaker, not an evaluation row")
            and not k.startswith("over ")}  # fmt: skip
    if left:
        lines.append(f"left blank or unused: {', '.join(f'{n} {reason}' for reason, n in left.items())}")
    if "rows" in summary:
        lines.append("rows: " + ", ".join(f"{split} {n}" for split, n in summary["rows"].items()))
    if "manifests" in summary:
        manifests = ", ".join(f"{name} {n}" for name, n in summary["manifests"].items())
        missing = summary["missing_clips"]
        lines.append(f"lhotse manifests (clips per locale/file): {manifests}"
                     + (f"; {missing} clips missing on disk left out" if missing else ""))  # fmt: skip
    if "filled" in summary:
        lines.append("blank genders filled: " + ", ".join(f"{name} {n}" for name, n in summary["filled"].items()))
    sentence = guarantee_sentence(summary)
    if sentence:
        lines.append(sentence)
    if "blank_rows" in summary:  # (a summary.json of cvlabel 0.1 has no headline numbers)
        lines.append(export_headline(summary))  # the last words: what a person remembers
    return "\n".join(lines)


def _decoded_by(decoders: dict[str, int]) -> str:
    """Which decoders read the clips (a run that was resumed counts the clips of every shard)."""
    if not decoders:
        return "no clip decoded"
    return "decoded by " + ", ".join(f"{name} ({count:,} clips)" for name, count in decoders.items())


def describe_infer(summary: InferSummary, out: str | Path) -> str:
    """`cvlabel infer`'s closing lines: what was predicted, what stayed out and why, and where."""
    lines = [
        f"{summary['rows']} rows of {summary['speakers']} speakers: {summary['labels']['male']} male, "
        f"{summary['labels']['female']} female, {summary['errors']} errors ({summary['missing_clips']} clips "
        "missing) "
        f"({summary['label_source'].get('speaker', 0)} from the speaker's own answer on other rows; "
        f"{summary['disputed_rows']} of disputed speakers, never pseudo-labelled); "
        f"{summary['skipped_opted_out_rows']} blank rows skipped (speaker opted out or answered other) and "
        f"{summary['blank_rows_not_read']} in TSVs not given to --tsv; "
        f"{summary['seconds']} s; {_decoded_by(summary['decoders'])}. Predictions: {Path(out) / 'predictions.parquet'}"
    ]
    if summary["clip_balanced_accuracy"] is not None:
        lines.append(
            f"balanced clip accuracy on these self-reported rows: {summary['clip_balanced_accuracy']:.4f} (each "
            "clip's own decision against its speaker's answer)"
        )
    if summary["unheard_locales"]:
        lines.append(
            f"the model never heard {len(summary['unheard_locales'])} of these rows' locales "
            f"({', '.join(summary['unheard_locales'])}): its claims rest on this release's own self-reported "
            "speakers (export --reference), not on what it was trained on"
        )
    if summary["slow_decodes"]:
        rates = ", ".join(f"{count} at {rate} Hz" for rate, count in sorted(summary["slow_decodes"].items()))
        lines.append(
            f"{sum(summary['slow_decodes'].values())} clips decoded the slow way (soundfile + soxr: not MP3, or no "
            f"decimation of their rate serves the model): {rates}"
        )
    return "\n".join(lines)
