"""`cvlabel train`: a committee of models cross-fitted over the train speakers, calibrated, measured.

Read top to bottom: splits; the train speakers dealt into `train.folds` folds; decode into the
cache; for each fold, one explicit training loop on the other folds (early stopping on dev
balanced accuracy), which then predicts the held-out fold's speakers: every train speaker gets a
prediction from a model that never heard them (the out-of-fold reference). The members together
are the committee: their mean logit is the run's prediction. Then the temperature is fitted on
the reference, the committee is measured on test, and the run folder is written.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import torch

from .artifacts import RunFolder, model_path, read_augmented_splits, read_reference, write_reference
from .audio import mp3_decoder
from .augment import augment_batch, spec_augment, training_crops
from .cache import AudioCache, cache_root
from .certify import MIN_DEV_BALANCED_ACCURACY
from .checkpoint import HEARD_BEFORE, heard_before, load_checkpoint, save_checkpoint, speaker_digest
from .config import Config, config_to_dict, save_config
from .encoder import EMBEDDING, MIN_TEMPERATURE, EncoderCommittee, fit_logistic, pretrained_encoder_state
from .errors import ConfigError, CvlabelError
from .features import log_mel
from .files import atomic_path, writable_folder, write_json
from .html_report import write_run_report
from .labels import LABELS, calibrate, decide_logits
from .metrics import (
    balanced_accuracy,
    binary_nll,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
)
from .model import Committee, GenderCNN, count_parameters
from .progress import progress
from .runners import resolve_jobs
from .scoring import SORT_WINDOW, clip_logits
from .speech import Speech
from .splits import SPLITS, assign_folds, labelled_rows, spread_over_speakers

if TYPE_CHECKING:
    from .checkpoint import AnyCommittee

log = logging.getLogger(__name__)
T = TypeVar("T")

LOG_COLUMNS = [
    "member",
    "epoch",
    "train_loss",
    "dev_loss",
    "dev_accuracy",
    "dev_balanced_accuracy",
    "learning_rate",
    "seconds",
]
COMMITTEE = -1  # the `member` of a reference row that the whole committee predicted (dev, test)
FEW_TRAIN_SPEAKERS = 200  # below this many train speakers, train says the base model may label better: on real
# Common Voice releases it never heard (benchmarks/finetune.py, 3 seeds, ~70 train speakers) the base model alone
# reached 0.944 balanced clip accuracy, a model of the release's own 0.856, fine-tuned from the base 0.871-0.906


def train(
    corpus_dir: str | Path, out_dir: str | Path, config: Config = Config(), augmented: str | Path | None = None
) -> dict[str, Any]:
    """Train on the self-reported rows of a release (or on the train/dev/test files of a
    `cvlabel export parquet` folder); write the run folder; return the metrics."""
    started = time.time()
    run = RunFolder(out_dir)
    if run.model.exists():
        raise CvlabelError(f"{out_dir} already holds a trained model; choose a new --out folder")
    rows = (
        read_augmented_splits(augmented, corpus_dir) if augmented else labelled_rows(corpus_dir, config.splits, "all")
    )
    _check_both_genders({split: rows[rows["split"] == split] for split in SPLITS})
    assign_folds(rows[rows["split"] == "train"], config.train.folds, config.train.seed)  # enough speakers?
    start = starting_weights(config)  # a wrong train.init fails here, before any work
    writable_folder(run.path, RunFolder.OWN, "cvlabel train")
    torch.set_num_threads(model_threads(config.train.threads))

    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    errors = cache.fill(rows["clip"].tolist(), jobs=resolve_jobs(config.train.jobs))
    if errors:
        log.warning("%d clips could not be used (first: %s: %s)", len(errors), *next(iter(errors.items())))
    rows = rows[~rows["clip"].isin(errors)]
    data = {split: rows[rows["split"] == split].reset_index(drop=True) for split in SPLITS}
    _check_both_genders(data)
    folds = assign_folds(data["train"], config.train.folds, config.train.seed)
    speakers = data["train"]["client_id"].nunique()
    if speakers < FEW_TRAIN_SPEAKERS:
        log.warning(
            "only %d train speakers: on releases this small the base model alone labelled better than a model "
            "trained (or fine-tuned) on them (0.94 vs 0.86-0.91 balanced clip accuracy at ~70 speakers; "
            "README, 'Which model a user gets'): try 'cvlabel infer ... --model base'",
            speakers,
        )

    if config.model.kind == "encoder":
        committee, out_of_fold, history = _fit_encoder_heads(run, data, folds, cache, config)
    else:
        committee, out_of_fold, history = _train_cnn_members(run, data, folds, cache, config, start)
    metrics = _write_run(run, committee, data, out_of_fold, folds, cache, config)
    metrics["best_epochs"] = [
        max((h for h in history if h["member"] == k), key=_score)["epoch"] for k in range(config.train.folds)
    ]
    metrics["clips_seen"] = clips_seen(history, [int((folds != k).sum()) for k in range(config.train.folds)], config)
    metrics.update({"decode_errors": len(errors), "train_seconds": round(time.time() - started, 1)})
    dev_balanced_accuracy = metrics["dev"]["balanced_accuracy"]
    if not dev_balanced_accuracy >= MIN_DEV_BALANCED_ACCURACY:
        log.warning(
            "this model is near chance on its dev speakers (balanced accuracy %.2f < %.2f): its labels are not "
            "usable, and export will refuse it; train longer or on more speakers",
            dev_balanced_accuracy,
            MIN_DEV_BALANCED_ACCURACY,
        )
    write_json(run.metrics, metrics)
    write_run_report(run.path, metrics)  # confusion.png, reliability.png, report.html: before the checkpoint
    _write_log(run.train_log, history)
    save_checkpoint(
        committee,
        config,
        metrics["temperature"],
        run.model,
        info={
            "corpus": str(corpus_dir),
            "augmented": str(augmented or ""),
            "dev_balanced_accuracy": dev_balanced_accuracy,
            "mp3_decoder": mp3_decoder(),  # what "auto" decoded the training clips with here
            **({HEARD_BEFORE: sorted(start.heard)} if start and start.heard else {}),
        },
    )
    for fold in range(config.train.folds):  # the run is finished: its members live in the checkpoint now
        run.member(fold).unlink(missing_ok=True)
        run.member_progress(fold).unlink(missing_ok=True)
    for block in run.embedding_blocks():  # and the d-vectors the encoder's heads were fitted on
        block.unlink()
    return metrics


def _train_cnn_members(
    run: RunFolder,
    data: dict[str, pd.DataFrame],
    folds: np.ndarray,
    cache: AudioCache,
    config: Config,
    start: StartingWeights | None,
) -> tuple[Committee, np.ndarray, list[dict[str, Any]]]:
    """The CNN committee (model.kind cnn): one member trained per fold, resuming the members and epochs a killed
    run saved. Returns it, each train row's out-of-fold logit, and the train_log rows."""
    members: list[GenderCNN] = []
    out_of_fold = np.full(len(data["train"]), np.nan)
    history: list[dict[str, Any]] = []
    early_stopping = spread_over_speakers(data["dev"], config.train.dev_clips, config.train.seed)
    member_steps = [config.train.epochs * _steps(int((folds != k).sum()), config) for k in range(config.train.folds)]
    with progress(total=sum(member_steps), desc="training", unit="step") as bar:
        resume = _resume_key(config, data, folds)
        for fold in range(config.train.folds):
            done = _finished_member(run, fold, resume, config)
            if done is not None:  # a killed run's member: kept, not trained again
                member, held_logits, rows = done
                history.extend(rows)
                bar.update(member_steps[fold])
                log.warning("member %d of %d was trained before (%s): resuming after it", fold + 1,
                            config.train.folds, run.member(fold).name)  # fmt: skip
            else:
                train_rows = data["train"][folds != fold].reset_index(drop=True)
                trainer = _MemberTrainer(
                    fold, train_rows, early_stopping, cache, config, bar, start, run.member_progress(fold), resume
                )
                before = len(history)
                member = trainer.fit(history, run.train_log)
                held_logits = _logits(member, data["train"][folds == fold], cache, config)[:, 0]
                _save_member(run.member(fold), member, held_logits, history[before:], resume)
            run.member_progress(fold).unlink(missing_ok=True)  # the finished member holds all of it
            out_of_fold[folds == fold] = held_logits
            members.append(member)
    return Committee(members), out_of_fold, history


def _fit_encoder_heads(
    run: RunFolder, data: dict[str, pd.DataFrame], folds: np.ndarray, cache: AudioCache, config: Config
) -> tuple[EncoderCommittee, np.ndarray, list[dict[str, Any]]]:
    """The encoder committee (model.kind encoder): the pretrained encoder's d-vector of every train clip and of
    the dev clips the CNN's early-stopping check scores (train.dev_clips: _write_run scores every dev clip once
    more), kept in blocks, so a killed run resumes after its last; then one logistic head per fold, fitted on
    the other folds' train speakers in seconds. Returns it, each train row's out-of-fold logit, and one
    train_log row per head (epoch 1)."""
    committee = EncoderCommittee(config.train.folds)
    committee.encoder.load_state_dict(pretrained_encoder_state(cache_root(config.train.cache_dir) / ENCODERS))
    resume = _resume_key(config, data, folds)
    parts = {
        "train": data["train"],
        "dev": spread_over_speakers(data["dev"], config.train.dev_clips, config.train.seed),
    }
    embedded = {split: _embeddings(committee, part, cache, split, run, resume) for split, part in parts.items()}
    labels = {split: part["label"].to_numpy() for split, part in parts.items()}
    out_of_fold = np.full(len(data["train"]), np.nan)
    history: list[dict[str, Any]] = []
    for fold in range(config.train.folds):
        started, fitting = time.time(), folds != fold
        weight, bias = fit_logistic(embedded["train"][fitting], labels["train"][fitting], config.model.head_l2)
        committee.set_head(fold, weight, bias)
        out_of_fold[~fitting] = embedded["train"][~fitting] @ weight + bias
        dev_logits = embedded["dev"] @ weight + bias
        dev_predicted = decide_logits(dev_logits)
        history.append({
            "member": fold,
            "epoch": 1,
            "train_loss": binary_nll(labels["train"][fitting], embedded["train"][fitting] @ weight + bias),
            "dev_loss": binary_nll(labels["dev"], dev_logits),
            "dev_accuracy": float((dev_predicted == labels["dev"]).mean()),
            "dev_balanced_accuracy": balanced_accuracy(labels["dev"], dev_predicted),
            "learning_rate": math.nan,
            "seconds": round(time.time() - started, 2),
        })  # fmt: skip
    return committee.eval(), out_of_fold, history


ENCODERS = "encoders"  # the folder of the cache root (train.cache_dir) that holds the speaker encoder's weights


def _embeddings(
    committee: EncoderCommittee, part: pd.DataFrame, cache: AudioCache, split: str, run: RunFolder, key: str
) -> np.ndarray:
    """(rows, 256) d-vectors of a split's clips, with a progress bar (the encoder is the cost of this kind). Each
    EMBEDDING_BLOCK rows are saved in the run folder as they are done and read back by a resumed run."""
    from safetensors.torch import save_file

    load, out = cache.loader(part["clip"].tolist()), np.empty((len(part), EMBEDDING), dtype=np.float32)
    with progress(total=len(part), desc=f"encoding {split} clips", unit="clip") as bar:
        for block, first in enumerate(range(0, len(part), EMBEDDING_BLOCK)):
            rows = range(first, min(len(part), first + EMBEDDING_BLOCK))
            saved = _read_resume_file(run.embeddings(split, block), key)
            if saved is not None:
                out[first : rows.stop] = saved[0]["embeddings"].numpy()
                bar.update(len(rows))
                continue
            for start in range(first, rows.stop, SORT_WINDOW):
                chosen = range(start, min(rows.stop, start + SORT_WINDOW))
                out[start : chosen.stop] = committee.embeddings([load(i) for i in chosen])
                bar.update(len(chosen))
            with atomic_path(run.embeddings(split, block)) as tmp:
                save_file({"embeddings": torch.from_numpy(out[first : rows.stop])}, str(tmp), {"resume_key": key})
    return out


EMBEDDING_BLOCK = 8192  # d-vectors a saved block holds (~37 s of one thread's work): what a kill can lose


OUT_OF_FOLD = "__out_of_fold__"  # the tensor of a saved member that holds its held-out fold's logits


def _resume_key(config: Config, data: dict[str, pd.DataFrame], folds: np.ndarray) -> str:
    """What a member depends on: the settings that shape training and the rows of every split with their
    folds (the process counts and the cache's place do not): a member saved under another key is stale."""
    settings = config_to_dict(
        dataclasses.replace(config, train=dataclasses.replace(config.train, cache_dir="", jobs=0, threads=0))
    )
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for split in SPLITS:
        part = data[split]
        digest.update(
            "\n".join(f"{split}\t{c}\t{label}" for c, label in zip(part["clip"], part["label"], strict=True)).encode()
        )
    digest.update(folds.astype(np.int64).tobytes())
    return digest.hexdigest()


def _save_member(path: Path, member: GenderCNN, held_logits: np.ndarray, rows: list[dict[str, Any]], key: str) -> None:
    """One finished member, atomically: its weights, its out-of-fold logits and train_log rows, the key."""
    from safetensors.torch import save_file

    tensors = {**_copy(member), OUT_OF_FOLD: torch.as_tensor(held_logits, dtype=torch.float64)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"resume_key": key, "history": json.dumps(rows)})


def _finished_member(
    run: RunFolder, fold: int, key: str, config: Config
) -> tuple[GenderCNN, np.ndarray, list[dict[str, Any]]] | None:
    """The member a killed run finished for this fold, or None; a CvlabelError when it was trained on
    other settings or rows (a changed config or release is refused, not mixed in)."""
    saved = _read_resume_file(run.member(fold), key)
    if saved is None:
        return None
    tensors, metadata = saved
    held_logits = tensors.pop(OUT_OF_FOLD).numpy()
    member = GenderCNN(config.model, config.features.n_mels)
    member.load_state_dict(tensors)
    return member.eval(), held_logits, json.loads(metadata["history"])


def _read_resume_file(path: Path, key: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """The tensors and metadata of a finished member or epoch a killed run saved, or None when there is none;
    a CvlabelError when it was saved under other settings or rows (a changed config or release is refused)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    if metadata.get("resume_key") != key:
        raise CvlabelError(
            f"{path.parent} holds members of an unfinished training with other settings or another release "
            f"({path.name}); run the same command as before to resume it, or choose a new --out folder"
        )
    return tensors, metadata


def _save_progress(
    path: Path,
    key: str,
    epoch: int,
    stopped: bool,
    model: GenderCNN,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    best: dict[str, Any],
    rows: list[dict[str, Any]],
    rng: np.random.Generator,
    generator: torch.Generator,
) -> None:
    """A member after `epoch` finished epochs, atomically: everything the next epoch reads (weights, optimizer
    and schedule, the three random states, the best epoch so far and its weights), so a resumed run trains on
    as if it had not been killed."""
    from safetensors.torch import save_file

    optimizer_state = optimizer.state_dict()
    tensors = {f"model.{name}": value for name, value in _copy(model).items()}
    tensors |= {f"best.{name}": value for name, value in (best["state"] or {}).items()}
    for index, state in optimizer_state["state"].items():
        tensors |= {f"optimizer.{index}.{name}": value.contiguous() for name, value in state.items()}
    tensors |= {"rng.torch": torch.get_rng_state(), "rng.generator": generator.get_state()}
    metadata = {
        "resume_key": key,
        "epoch": str(epoch),
        "stopped": json.dumps(stopped),
        "best": json.dumps({k: v for k, v in best.items() if k != "state"}),
        "history": json.dumps(rows),
        "optimizer_groups": json.dumps(optimizer_state["param_groups"]),
        "schedule": json.dumps(schedule.state_dict()),
        "rng.numpy": json.dumps(rng.bit_generator.state),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _load_progress(
    path: Path | None,
    key: str,
    model: GenderCNN,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[int, dict[str, Any], bool, list[dict[str, Any]]] | None:
    """Put a member back as _save_progress left it (model, optimizer, schedule, random states, in place)
    and return (finished epochs, best so far, whether it stopped early, its train_log rows); None when
    nothing was saved. A CvlabelError for progress of other settings or rows."""
    saved = _read_resume_file(path, key) if path is not None else None
    if saved is None:
        return None
    tensors, metadata = saved

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}

    model.load_state_dict(part("model."))
    states: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in part("optimizer.").items():
        index, field = name.split(".", 1)
        states.setdefault(int(index), {})[field] = value
    optimizer.load_state_dict({"state": states, "param_groups": json.loads(metadata["optimizer_groups"])})
    for weight, state in optimizer.state.items():  # each moment in its weight's layout (channels-last), as it
        for name, value in state.items():  # was: the fused update's rounding follows the layout
            if value.shape == weight.shape:
                state[name] = torch.empty_like(weight).copy_(value)
    schedule.load_state_dict(json.loads(metadata["schedule"]))
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    rng.bit_generator.state = json.loads(metadata["rng.numpy"])
    best = {**json.loads(metadata["best"]), "state": part("best.") or None}
    return int(metadata["epoch"]), best, json.loads(metadata["stopped"]), json.loads(metadata["history"])


@dataclass
class _MemberTrainer:
    """One member's explicit loop: balanced augmented crops, dev evaluation each epoch, early stopping."""

    member: int
    train_rows: pd.DataFrame
    dev_rows: pd.DataFrame
    cache: AudioCache
    config: Config
    bar: Any
    start: StartingWeights | None = None  # train.init's weights, or None: random
    progress: Path | None = None  # where each finished epoch is saved, so a killed run resumes after it
    resume_key: str = ""  # _resume_key: saved progress of other settings or rows is refused

    def __post_init__(self) -> None:
        # the dev clips are scored after every epoch: their cache entries are named once, here
        self.dev_load = self.cache.loader(self.dev_rows["clip"].tolist())

    def fit(self, history: list[dict[str, Any]], log_path: Path) -> GenderCNN:
        config, train_rows = self.config, self.train_rows
        seed = config.train.seed * 1000 + self.member  # each member its own weights, crops and draws
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        model = GenderCNN(config.model, config.features.n_mels)
        if self.start:
            model.load_state_dict(self.start.states[self.member % len(self.start.states)])
        model.use_channels_last()  # faster steps; back to the usual layout before it is returned
        steps = _steps(len(train_rows), config)
        optimizer = torch.optim.AdamW(  # fused: one kernel for all the weights, a third of the time of foreach
            model.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay, fused=True
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.train.learning_rate, total_steps=config.train.epochs * steps, pct_start=0.1
        )
        loss_fn = torch.nn.BCEWithLogitsLoss()
        labels, load = train_rows["label"].to_numpy(), self.cache.loader(train_rows["clip"].tolist())
        best: dict[str, Any] = {"dev_balanced_accuracy": -1.0, "dev_loss": math.inf, "epoch": 0, "state": None}
        first_row, done, stopped = len(history), 0, False
        saved = _load_progress(self.progress, self.resume_key, model, optimizer, schedule, rng, generator)
        if saved is not None:  # a killed run's epochs: kept, not trained again
            done, best, stopped, rows = saved
            history.extend(rows)
            self.bar.update((config.train.epochs if stopped else done) * steps)
            log.warning("member %d: %d epochs were trained before: resuming after them", self.member + 1, done)
        elif self.start:  # epoch 0, the starting weights, competes too: fine-tuning never ends worse on dev
            best = {**self._dev_row(model, 0, [math.nan], config.train.learning_rate), "state": _copy(model)}
            history.append({k: v for k, v in best.items() if k != "state"})
        for epoch in range(done + 1, config.train.epochs + 1):
            if stopped:
                break
            epoch_start = time.time()
            model.train()
            order = _epoch_order(labels, config.train.balanced_sampling, rng, _epoch_clips(len(labels), config))
            batches = [
                order[first : first + config.train.batch_size]
                for first in range(0, len(order), config.train.batch_size)
            ]
            losses = []
            for chosen, features in prefetched(batches, lambda chosen: self._features(load, chosen, rng, generator)):
                loss = loss_fn(model(features), torch.as_tensor(labels[chosen], dtype=torch.float32))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                self.bar.update(1)
                self.bar.set_postfix(member=self.member, epoch=epoch, loss=f"{np.mean(losses):.3f}")

            row = self._dev_row(model, epoch, losses, schedule.get_last_lr()[0])
            row["seconds"] = round(time.time() - epoch_start, 2)
            history.append(row)
            _write_log(log_path, history)
            log.info(
                "member %d epoch %d: train loss %.4f, dev loss %.4f, dev balanced accuracy %.4f",
                self.member,
                epoch,
                row["train_loss"],
                row["dev_loss"],
                row["dev_balanced_accuracy"],
            )
            if _score(row) > _score(best):
                best = {**row, "state": _copy(model)}
            elif epoch - best["epoch"] >= config.train.patience:
                log.info("member %d: no dev improvement for %d epochs: stopping", self.member, config.train.patience)
                self.bar.update((config.train.epochs - epoch) * steps)  # the epochs it will not run
                stopped = True
            if self.progress is not None:
                _save_progress(self.progress, self.resume_key, epoch, stopped, model, optimizer, schedule, best,
                               history[first_row:], rng, generator)  # fmt: skip
        model.load_state_dict(best["state"])
        return model.use_channels_last(False).eval()

    def _features(
        self, load: Callable[[int], Speech], chosen: np.ndarray, rng: np.random.Generator, generator: torch.Generator
    ) -> torch.Tensor:
        """One batch's augmented, masked log-mels (drawing crops from `rng`, the rest from `generator`)."""
        speech = [load(i) for i in chosen]
        return spec_augment(training_features(speech, self.config, rng, generator), self.config.augment, generator)

    def _dev_row(self, model: GenderCNN, epoch: int, losses: list[float], learning_rate: float) -> dict[str, Any]:
        """One train_log row: the model measured on the dev speakers (it is left in eval mode)."""
        dev_labels = self.dev_rows["label"].to_numpy()
        batch = self.config.train.batch_size
        dev_logits = clip_logits(model, self.config.features, self.dev_load, len(self.dev_rows), batch)[:, 0]
        dev_predicted = decide_logits(dev_logits)
        return {
            "member": self.member,
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "dev_loss": binary_nll(dev_labels, dev_logits),
            "dev_accuracy": float((dev_predicted == dev_labels).mean()),
            "dev_balanced_accuracy": balanced_accuracy(dev_labels, dev_predicted),
            "learning_rate": learning_rate,
            "seconds": 0.0,
        }


@dataclass
class StartingWeights:
    """What train.init gives a run: each member's state dict, and who those weights had heard."""

    states: list[dict[str, torch.Tensor]]
    heard: frozenset[str]  # speaker digests (checkpoint.HEARD_BEFORE): the init's own, and its run's train and dev


def starting_weights(config: Config) -> StartingWeights | None:
    """train.init's weights, or None (random weights). A ConfigError when that checkpoint hears other
    features or has another network than this config."""
    if not config.train.init:
        return None
    start = load_checkpoint(config.train.init)
    mine, theirs = config_to_dict(config), config_to_dict(start.config)
    differ = [
        f"{section}.{key}: {theirs[section][key]} there, {mine[section][key]} here"
        for section in ("features", "model")
        for key in mine[section]
        if key != "decoder" and mine[section][key] != theirs[section].get(key)  # the decoder: any gives its audio
    ]
    if differ:
        raise ConfigError(
            f"train.init {config.train.init}: its model was trained with other settings ({'; '.join(differ)}); "
            "a run starts from its weights only with the same features and model sections (drop those settings)"
        )
    heard = set(heard_before(start.info))
    init_run = RunFolder(model_path(config.train.init).parent)
    if init_run.reference.is_file():  # a run's members learned from its train speakers, and chose epochs on dev
        trained_on = read_reference(init_run.reference)
        heard |= {speaker_digest(c) for c in trained_on.loc[trained_on["split"] != "test", "client_id"].unique()}
    return StartingWeights([_copy(member) for member in start.model.members], frozenset(heard))


def prefetched(items: list[T], prepare: Callable[[T], torch.Tensor]) -> Iterator[tuple[T, torch.Tensor]]:
    """(item, prepare(item)) in order, the next item prepared in a thread while the caller uses this one: a
    batch's log-mels are made while the network learns from the last (torch and numpy let go of the GIL).
    The items are prepared one after another, in order, so the random draws are those of a plain loop."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvlabel-batches") as pool:
        coming = pool.submit(prepare, items[0])
        for index, item in enumerate(items):
            ready = coming.result()
            if index + 1 < len(items):
                coming = pool.submit(prepare, items[index + 1])
            yield item, ready


def model_threads(requested: int, cores: int | None = None) -> int:
    """torch threads for training: the number given, or for 0 one per core but one, which prepares the
    next batch meanwhile (prefetched). On 2 cores one torch thread and the batch thread made steps about
    20% faster than two torch threads without it (benchmarks/train_step.py)."""
    if requested:
        return resolve_jobs(requested)
    return max(1, (cores or os.cpu_count() or 1) - 1)


def _copy(model: GenderCNN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}


def training_features(
    speech: list[Speech], config: Config, rng: np.random.Generator, generator: torch.Generator
) -> torch.Tensor:
    """Log-mels (batch, n_mels, frames) of one augmented crop of train.crop_seconds of each clip.

    Clips are cropped and augmented at their own rates, in groups of one rate (in order of first
    appearance, so a batch of one rate draws as it always did); every group's log-mels are cut to
    the fewest frames of any (2 s: 101 frames at 12, 16 and 11.025 kHz alike)."""
    groups: dict[float, list[int]] = {}
    for index, clip in enumerate(speech):
        groups.setdefault(clip.rate, []).append(index)
    mels = []
    for rate, members in groups.items():
        length = int(config.train.crop_seconds * rate)
        crops = training_crops([speech[i].samples for i in members], length, config.augment, rate, rng, generator)
        waves = augment_batch(torch.from_numpy(np.stack(list(crops))), config.augment, rate, generator)
        mels.append(log_mel(waves, config.features.at_rate(rate)))
    if len(mels) == 1:
        return mels[0]
    frames = min(mel.shape[-1] for mel in mels)
    batch = torch.empty(len(speech), config.features.n_mels, frames)
    for members, mel in zip(groups.values(), mels, strict=True):
        batch[members] = mel[..., :frames]
    return batch


def _score(row: dict[str, Any]) -> tuple[float, float]:
    """What early stopping maximises: dev balanced accuracy, then lower dev loss."""
    return (row["dev_balanced_accuracy"], -row["dev_loss"])


def _write_run(
    run: RunFolder,
    committee: AnyCommittee,
    data: dict[str, pd.DataFrame],
    out_of_fold: np.ndarray,
    folds: np.ndarray,
    cache: AudioCache,
    config: Config,
) -> dict[str, Any]:
    """Calibrate on the reference, measure on test, and write everything of the run but the metrics
    and the checkpoint (which the caller writes last: a run folder with a checkpoint is finished)."""
    # the reference and the calibration rest on self-reported rows alone (train --augmented also trains on
    # an export's pseudo-labels: a model's own guesses must not vouch for its successor)
    vouching = {split: _self_reported(part) for split, part in data.items()}
    out_of_fold = out_of_fold[vouching["train"]]
    folds = folds[vouching["train"]]
    train, dev, test = (data[split][vouching[split]].reset_index(drop=True) for split in SPLITS)
    dev_members = _logits(committee, dev, cache, config)
    test_members = _logits(committee, test, cache, config)
    dev_logits, test_logits = dev_members.mean(axis=1), test_members.mean(axis=1)
    # the temperature that makes unseen speakers' probabilities honest: fitted on the out-of-fold train
    # speakers (each predicted by the member that never heard them), checked on the dev speakers (the
    # committee's), and kept only where it lowers their calibration error: fitted on data unlike the
    # speakers it is used on, temperature scaling can make it worse (issue 24: 2.6x on the synthetic corpus)
    lowest = MIN_TEMPERATURE if isinstance(committee, EncoderCommittee) else 1.0
    fitted = fit_temperature(train["label"].to_numpy(), out_of_fold, lowest)
    dev_labels = dev["label"].to_numpy()
    dev_ece = {t: expected_calibration_error(dev_labels, calibrate(dev_logits, t)) for t in (1.0, fitted)}
    temperature = fitted if dev_ece[fitted] <= dev_ece[1.0] else 1.0
    labels = test["label"].to_numpy()
    metrics = classification_metrics(labels, test_logits, temperature, test["client_id"].to_numpy())
    metrics["calibration"] = {
        "fitted_temperature": fitted,
        "dev_ece_before": dev_ece[1.0],
        "dev_ece_after": dev_ece[fitted],
        "kept": temperature == fitted,
    }
    metrics["dev"] = classification_metrics(
        dev["label"].to_numpy(), dev_logits, temperature, dev["client_id"].to_numpy()
    )
    metrics["out_of_fold"] = classification_metrics(
        train["label"].to_numpy(), out_of_fold, temperature, train["client_id"].to_numpy()
    )
    metrics["splits"] = {
        split: {
            "clips": len(part),
            "speakers": int(part["client_id"].nunique()),
            **{f"clips_{g}": int((part["label"] == i).sum()) for i, g in enumerate(LABELS)},
        }
        for split, part in data.items()
    }
    metrics["members"] = len(committee.members)
    metrics["parameters"] = count_parameters(committee.members[0]) + (
        count_parameters(committee.encoder) if isinstance(committee, EncoderCommittee) else 0
    )  # a member's: the frozen encoder's and a head's, or a CNN's

    reference = pd.concat(
        [
            train.assign(member=folds, logit=out_of_fold, member_logits=[[x] for x in out_of_fold]),
            dev.assign(member=COMMITTEE, logit=dev_logits, member_logits=list(dev_members)),
            test.assign(member=COMMITTEE, logit=test_logits, member_logits=list(test_members)),
        ]
    )
    write_reference(reference, temperature, run.reference)
    save_config(config, run.config)
    return metrics


def _self_reported(rows: pd.DataFrame) -> np.ndarray:
    """Which rows carry their speaker's own answer (every row of a release; an export's self_reported)."""
    if "self_reported" not in rows:
        return np.ones(len(rows), dtype=bool)
    return rows["self_reported"].to_numpy(dtype=bool)


def clips_seen(history: list[dict[str, Any]], member_rows: list[int], config: Config) -> dict[str, int]:
    """What the budget let the committee see: crops drawn in all (every epoch each member ran), the most an
    epoch drew, and the train clips a member had to draw from (the most of any member)."""
    epochs = [sum(1 for h in history if h["member"] == k and h["epoch"] >= 1) for k in range(len(member_rows))]
    return {
        "crops": sum(_epoch_clips(rows, config) * ran for rows, ran in zip(member_rows, epochs, strict=True)),
        "epoch_clips": max(_epoch_clips(rows, config) for rows in member_rows),
        "member_train_clips": max(member_rows),
    }


def _epoch_clips(rows: int, config: Config) -> int:
    """Clips one epoch draws: every train clip, at most train.epoch_clips (0: no limit)."""
    return min(rows, config.train.epoch_clips) if config.train.epoch_clips > 0 else rows


def _steps(rows: int, config: Config) -> int:
    return math.ceil(_epoch_clips(rows, config) / config.train.batch_size)


def _epoch_order(labels: np.ndarray, balanced: bool, rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` clip indices for one epoch: a shuffle (its first `size`), or draws with each gender equally likely."""
    if not balanced:
        return rng.permutation(len(labels))[:size]
    counts = np.bincount(labels, minlength=len(LABELS)).astype(float)
    weights = 1.0 / counts[labels]
    return rng.choice(len(labels), size=size, replace=True, p=weights / weights.sum())


def _logits(model: GenderCNN | AnyCommittee, part: pd.DataFrame, cache: AudioCache, config: Config) -> np.ndarray:
    """(rows, members) logits of a split's clips."""
    return clip_logits(model, config.features, cache.loader(part["clip"].tolist()), len(part), config.train.batch_size)


def _check_both_genders(data: dict[str, pd.DataFrame]) -> None:
    for split in SPLITS:
        present = set(data[split]["label"])
        if present != {0, 1}:
            raise CvlabelError(
                f"the {split} split needs self-reported clips of both genders, "
                f"has {sorted(LABELS[i] for i in present)}; "
                "the corpus has too few labelled speakers (see 'cvlabel inspect')"
            )


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
