"""`cvlabel train`: one explicit training loop, from a release folder to a calibrated run folder.

Read top to bottom: splits, decode into the cache, train with early stopping on dev balanced
accuracy, restore the best epoch, fit the temperature on dev, measure on test, write the run.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .artifacts import RunFolder, read_augmented_splits, write_reference
from .augment import augment_waveform, random_crop, spec_augment
from .cache import AudioCache, cache_root
from .checkpoint import save_checkpoint
from .config import Config, save_config
from .errors import CvlabelError
from .features import log_mel
from .files import atomic_path, writable_folder, write_json
from .labels import LABELS, calibrate, decide_logits
from .metrics import balanced_accuracy, binary_nll, classification_metrics, fit_temperature, reliability_table
from .model import GenderCNN, count_parameters
from .plots import plot_confusion, plot_reliability
from .runners import resolve_jobs
from .scoring import clip_logits
from .splits import SPLITS, labelled_rows

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "train_loss", "dev_loss", "dev_accuracy", "dev_balanced_accuracy", "learning_rate", "seconds"]


def train(
    corpus_dir: str | Path, out_dir: str | Path, config: Config = Config(), augmented: str | Path | None = None
) -> dict[str, Any]:
    """Train on the self-reported rows of a release (or on the train/dev/test files of a
    `cvlabel export parquet` folder); write the run folder; return the metrics."""
    started = time.time()
    run = RunFolder(out_dir)
    if run.model.exists():
        raise CvlabelError(f"{out_dir} already holds a trained model; choose a new --out folder")
    writable_folder(run.path)
    torch.manual_seed(config.train.seed)
    rng = np.random.default_rng(config.train.seed)
    generator = torch.Generator().manual_seed(config.train.seed)
    torch.set_num_threads(resolve_jobs(config.train.threads))

    rows = (
        read_augmented_splits(augmented, corpus_dir) if augmented else labelled_rows(corpus_dir, config.splits, "all")
    )
    cache = AudioCache(cache_root(config.train.cache_dir), config.features)
    errors = cache.fill(rows["clip"].tolist(), jobs=resolve_jobs(config.train.jobs))
    if errors:
        log.warning("%d clips could not be used (first: %s: %s)", len(errors), *next(iter(errors.items())))
    rows = rows[~rows["clip"].isin(errors)]
    data = {split: rows[rows["split"] == split].reset_index(drop=True) for split in SPLITS}
    _check_both_genders(data)

    model = GenderCNN(config.model, config.features.n_mels)
    steps_per_epoch = math.ceil(len(data["train"]) / config.train.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.train.learning_rate, total_steps=config.train.epochs * steps_per_epoch, pct_start=0.1
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    crop = int(config.train.crop_seconds * config.features.sample_rate)
    train_labels = data["train"]["label"].to_numpy()
    dev_labels = data["dev"]["label"].to_numpy()

    best: dict[str, Any] = {"balanced_accuracy": -1.0, "loss": math.inf, "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    bar = tqdm(total=config.train.epochs * steps_per_epoch, desc="training", unit="step")
    for epoch in range(1, config.train.epochs + 1):
        epoch_start = time.time()
        model.train()
        order = _epoch_order(train_labels, config.train.balanced_sampling, rng)
        losses = []
        for first in range(0, len(order), config.train.batch_size):
            chosen = order[first : first + config.train.batch_size]
            waves = [
                augment_waveform(
                    random_crop(cache.load(data["train"]["clip"][i]), crop, rng),
                    config.augment,
                    config.features.sample_rate,
                    rng,
                )
                for i in chosen
            ]
            features = spec_augment(log_mel(np.stack(waves), config.features), config.augment, generator)
            loss = loss_fn(model(features), torch.as_tensor(train_labels[chosen], dtype=torch.float32))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.3f}", dev_bacc=f"{best['balanced_accuracy']:.3f}")

        dev_logits = _logits(model, data["dev"], cache, config)
        dev_predicted = decide_logits(dev_logits)
        dev_bacc = balanced_accuracy(dev_labels, dev_predicted)
        dev_loss = binary_nll(dev_labels, dev_logits)
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "dev_loss": dev_loss,
                "dev_accuracy": float((dev_predicted == dev_labels).mean()),
                "dev_balanced_accuracy": dev_bacc,
                "learning_rate": schedule.get_last_lr()[0],
                "seconds": round(time.time() - epoch_start, 2),
            }
        )
        _write_log(run.train_log, history)
        log.info(
            "epoch %d: train loss %.4f, dev loss %.4f, dev balanced accuracy %.4f",
            epoch,
            history[-1]["train_loss"],
            dev_loss,
            dev_bacc,
        )
        if dev_bacc > best["balanced_accuracy"] or (dev_bacc == best["balanced_accuracy"] and dev_loss < best["loss"]):
            best = {
                "balanced_accuracy": dev_bacc,
                "loss": dev_loss,
                "epoch": epoch,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        elif epoch - best["epoch"] >= config.train.patience:
            log.info("no dev improvement for %d epochs: stopping", config.train.patience)
            break
        bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.3f}", dev_bacc=f"{best['balanced_accuracy']:.3f}")
    bar.close()

    model.load_state_dict(best["state"])
    metrics = _write_run(run, model, data, cache, config)
    metrics.update(
        {
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "decode_errors": len(errors),
            "train_seconds": round(time.time() - started, 1),
        }
    )
    write_json(run.metrics, metrics)
    save_checkpoint(
        model,
        config,
        metrics["temperature"],
        run.model,
        info={"corpus": str(corpus_dir), "augmented": str(augmented or ""), "best_epoch": best["epoch"]},
    )
    return metrics


def _write_run(
    run: RunFolder, model: GenderCNN, data: dict[str, pd.DataFrame], cache: AudioCache, config: Config
) -> dict[str, Any]:
    """Calibrate on dev, measure on test, and write everything of the run but the metrics and the
    checkpoint (which the caller writes last: a run folder with a checkpoint is a finished run)."""
    dev, test = data["dev"], data["test"]
    dev_logits = _logits(model, dev, cache, config)
    temperature = fit_temperature(dev["label"].to_numpy(), dev_logits)
    test_logits = _logits(model, test, cache, config)
    labels = test["label"].to_numpy()
    metrics = classification_metrics(labels, test_logits, temperature, test["client_id"].to_numpy())
    metrics["dev"] = classification_metrics(
        dev["label"].to_numpy(), dev_logits, temperature, dev["client_id"].to_numpy()
    )
    metrics["splits"] = {
        split: {
            "clips": len(part),
            "speakers": int(part["client_id"].nunique()),
            **{f"clips_{g}": int((part["label"] == i).sum()) for i, g in enumerate(LABELS)},
        }
        for split, part in data.items()
    }
    metrics["parameters"] = count_parameters(model)

    reference = pd.concat([dev.assign(logit=dev_logits), test.assign(logit=test_logits)])
    write_reference(reference, temperature, run.reference)
    save_config(config, run.config)
    plot_confusion(metrics["confusion"], run.confusion_plot, f"test clips (n={len(test)})")
    plot_reliability(
        {
            "before calibration": reliability_table(labels, calibrate(test_logits, 1.0)),
            f"after (T={temperature:.2f})": reliability_table(labels, calibrate(test_logits, temperature)),
        },
        run.reliability_plot,
        "test reliability",
    )
    return metrics


def _epoch_order(labels: np.ndarray, balanced: bool, rng: np.random.Generator) -> np.ndarray:
    """Clip indices for one epoch: a shuffle, or draws with each gender equally likely."""
    if not balanced:
        return rng.permutation(len(labels))
    counts = np.bincount(labels, minlength=len(LABELS)).astype(float)
    weights = 1.0 / counts[labels]
    return rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())


def _logits(model: GenderCNN, part: pd.DataFrame, cache: AudioCache, config: Config) -> np.ndarray:
    clips = part["clip"].tolist()
    return clip_logits(model, config.features, lambda i: cache.load(clips[i]), len(clips), config.train.batch_size)


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
