"""Claims a user can rely on: per-gender thresholds whose precision is certified on reference speakers.

Mistakes come by whole speakers (every clip of a speaker gets the speaker's label), so precision is
estimated over reference speakers (self-reported speakers predicted by models that never heard
them), weighted by their clips, and claimed only as a one-sided lower bound: Clopper-Pearson on
the effective number of speakers, n_eff = (sum of clips)^2 / (sum of clips^2) (n_eff is the
number of speakers when all have as many clips). With no mistake at all the bound is
(1 - certainty)^(1 / n_eff): 299 equal speakers are needed to certify 0.99 at 95%.

Which threshold: fixed-sequence testing over a grid declared before looking (Learn then Test,
Angelopoulos et al. 2021, with the fixed-sequence procedure of Bauer 1991). The hypotheses
"precision above threshold t < target" are tested in order from the strictest t of CONFIDENCE_GRID to
the loosest, each at level 1 - certainty, and the first that is not rejected ends the sequence: the
loosest rejected t is the threshold. A family-wise error of at most 1 - certainty follows: the first
true hypothesis in the order must be wrongly rejected for any error to occur. Where the sequence
starts is chosen from the speakers' confidences and clips alone, never from whether they were right
(fixed_sequence), so the order is still fixed before the test looks. Searching every cut for the deepest
one whose bound passes (cvlabel <= 0.3) was no such test: benchmarks/certify_sim.py.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy.stats import beta

from .labels import BINARY_GENDERS
from .summaries import Claim, Claims

# A committee this close to chance on its dev speakers is guessing: training says so loudly, and
# export refuses to pseudo-label with it unless told to (--allow-weak-model).
MIN_DEV_BALANCED_ACCURACY = 0.7

# The thresholds tested, strictest first, fixed before any reference is seen: 1 - confidence from 1e-5 to 0.5,
# geometric (a step of ~12%): fine enough that a claim gives up little coverage between grid points.
CONFIDENCE_GRID = tuple(float(1.0 - x) for x in np.geomspace(1e-5, 0.5, 96))
# The targets an uncertifiable export tries below the one asked for, to name the highest this reference can
# certify (found by trying these, so a target then chosen from them was chosen after looking: say so)
TARGET_LADDER = (0.99, 0.98, 0.97, 0.95, 0.9, 0.8)


def bound_text(bound: float | None) -> str:
    """A lower bound in words: 3 decimals rounded down, so a best bound of 0.9497 that fails a 0.95 target
    never reads 0.950 (the epsilon keeps a bound of exactly 0.95, stored as 0.94999..., at 0.950)."""
    return "none" if bound is None else f"{math.floor(bound * 1000 + 1e-9) / 1000:.3f}"


class Cut(TypedDict):
    """A threshold the fixed sequence passed, and what the reference speakers above it give."""

    threshold: float
    lower_bound: float  # the cut's own Clopper-Pearson bound (chosen by the data: not what is guaranteed)
    precision: float  # point estimate, clip-weighted
    speakers: int
    clips: int


def precision_bounds(correct: np.ndarray, clips: np.ndarray, certainty: float) -> tuple[float, float]:
    """(one-sided lower bound, point estimate) of the clip-weighted precision of speakers whose
    labels are `correct` (bool per speaker), each speaker weighing its `clips`."""
    weights = np.asarray(clips, dtype=float)
    if weights.size == 0 or weights.sum() <= 0:
        return 0.0, float("nan")
    precision = float((weights * np.asarray(correct, dtype=float)).sum() / weights.sum())
    effective = float(weights.sum() ** 2 / (weights**2).sum())
    right = precision * effective
    lower = 0.0 if right <= 0 else float(beta.ppf(1.0 - certainty, right, effective - right + 1.0))
    return lower, precision


def certified_thresholds(
    speakers: pd.DataFrame, target: float, certainty: float, accept_uncertified: bool = False
) -> Claims:
    """Per gender, the lowest speaker confidence whose selection reaches `target` as a lower bound.

    speakers: reference speakers with `predicted` (0/1), `confidence`, `clips`, `correct` (bool)
    and `disputed` (bool; disputed speakers are never labelled, so they are left out here too).
    Thresholds are fixed_sequence's (CONFIDENCE_GRID). Returns per gender: threshold (None: label
    nothing of this gender), certified, lower_bound (of a certified claim: the target, which the
    fixed sequence guarantees; the chosen threshold's own bound, cut_lower_bound, is higher and not
    guaranteed) and precision at the threshold, the reference speakers and clips selected, the
    reference speakers predicted as that gender, and best_lower_bound over all cuts (a description of
    the reference, not a claim).
    With accept_uncertified and no certifiable cut, the threshold is the deepest cut whose point
    estimate and every shallower cut's reach the target (certified False).
    """
    claims: Claims = {}
    for gender, curve in precision_curves(speakers, certainty).items():
        bounds = list(zip(curve["lower_bound"], curve["precision"], strict=True))
        whole = curve.iloc[-1] if len(curve) else {"speakers": 0, "clips": 0}  # the last cut keeps every speaker
        claim: Claim = {
            "threshold": None, "certified": False, "lower_bound": None, "precision": None, "speakers": 0,
            "clips": 0, "reference_speakers": int(whole["speakers"]), "reference_clips": int(whole["clips"]),
            "best_lower_bound": float(curve["lower_bound"].max()) if len(curve) else 0.0,
        }  # fmt: skip
        pool = _pool(speakers, gender)
        passed = fixed_sequence(pool, target, certainty)
        if passed is None:  # the highest lower target of the ladder this reference certifies, and what it keeps
            for lower_target in (t for t in TARGET_LADDER if t < target):
                reachable = fixed_sequence(pool, lower_target, certainty)
                if reachable is not None:
                    claim["certifiable"] = {
                        "target": lower_target,
                        "threshold": reachable["threshold"],
                        "coverage": reachable["clips"] / max(int(pool["clips"].sum()), 1),
                    }
                    break
        if passed is not None:  # what is guaranteed is the target (family-wise); the cut's own bound is not
            claim.update({
                "threshold": passed["threshold"], "precision": passed["precision"], "speakers": passed["speakers"],
                "clips": passed["clips"], "certified": True, "lower_bound": target,
                "cut_lower_bound": passed["lower_bound"],
            })  # fmt: skip
        elif accept_uncertified:
            # not a test: the deepest cut whose point estimate, and every shallower one's, reach it
            running = np.minimum.accumulate(np.array([precision for _, precision in bounds]))
            chosen = [k for k, floor in enumerate(running) if floor >= target]
            if chosen:
                cut = curve.iloc[chosen[-1]]
                claim.update({"threshold": float(cut["threshold"]), "lower_bound": float(cut["lower_bound"]),
                              "precision": float(cut["precision"]), "speakers": int(cut["speakers"]),
                              "clips": int(cut["clips"])})  # fmt: skip
        claims[gender] = claim
    return claims


def fixed_sequence(
    pool: pd.DataFrame,
    target: float,
    certainty: float,
    grid: tuple[float, ...] = CONFIDENCE_GRID,
    start: str = "peak",
) -> Cut | None:
    """The loosest `grid` threshold the fixed sequence certifies on `pool` (speakers of one predicted
    gender: confidence, clips, correct), with its lower_bound, precision, speakers and clips; None
    when the first threshold tested fails (see the module docstring).

    Where the sequence starts is read from confidences and clips alone (so the guarantee holds):
    `peak`, at the threshold whose bound the confidences forecast highest (as if calibrated: a speaker
    of confidence c right with chance c; the most likely to pass, and past the strict thresholds whose
    few speakers one honest mistake sinks); `expected`, at the strictest whose forecast reaches the
    target; `testable`, at the strictest whose bound a flawless record could lift to the target.
    benchmarks/certify_sim.py measured `peak` to keep the most coverage at the same guarantee."""
    order = np.argsort(-pool["confidence"].to_numpy(dtype=float), kind="stable")
    confidence = pool["confidence"].to_numpy(dtype=float)[order]
    clips = pool["clips"].to_numpy(dtype=float)[order]
    correct = pool["correct"].to_numpy(dtype=bool)[order]
    # every grid threshold at once: the speakers kept are a prefix of the most confident
    kept = np.searchsorted(-confidence, -np.asarray(grid), side="right")
    weighted = {"clips": clips, "squares": clips**2, "right": clips * correct, "expected": clips * confidence}
    sums = {name: np.concatenate([[0.0], np.cumsum(values)])[kept] for name, values in weighted.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        effective = np.where(kept > 0, sums["clips"] ** 2 / sums["squares"], 0.0)
        flawless = np.where(kept > 0, (1.0 - certainty) ** (1.0 / effective), 0.0)
        forecast = _bounds(sums["expected"] / sums["clips"], effective, certainty)
        lower = _bounds(sums["right"] / sums["clips"], effective, certainty)
    # only thresholds whose bound a flawless record could lift to the target are worth a test
    testable = np.flatnonzero(flawless >= target)
    if not len(testable):
        return None
    first = int(testable[0])
    if start == "peak":
        first = int(testable[np.argmax(forecast[testable])])  # ties: the strictest
    elif start == "expected":
        first = int(next((i for i in testable if forecast[i] >= target), first))
    passed: Cut | None = None
    for i in range(first, len(grid)):
        if flawless[i] < target:  # a prolific speaker can make a looser threshold untestable again: skipped
            continue
        if lower[i] < target:
            break
        passed = {"threshold": grid[i], "lower_bound": float(lower[i]), "precision": float(sums["right"][i] /
                  sums["clips"][i]), "speakers": int(kept[i]), "clips": int(sums["clips"][i])}  # fmt: skip
    return passed


def _bounds(precision: np.ndarray, effective: np.ndarray, certainty: float) -> np.ndarray:
    """precision_bounds' lower bound, elementwise (0 where nothing is kept or nothing is right)."""
    right = np.nan_to_num(precision) * effective
    safe = right > 0
    out = np.zeros(len(right))
    out[safe] = beta.ppf(1.0 - certainty, right[safe], effective[safe] - right[safe] + 1.0)
    return out


def precision_curves(speakers: pd.DataFrame, certainty: float) -> dict[str, pd.DataFrame]:
    """Per gender, every cut certified_thresholds considers, from the most confident speaker down:
    threshold (the lowest confidence kept), speakers and clips kept, coverage (the share of the
    gender's undisputed reference clips kept), precision (point estimate) and lower_bound.
    Cuts fall between distinct confidences; disputed speakers are left out."""
    curves = {}
    for gender in BINARY_GENDERS:
        pool = _pool(speakers, gender).sort_values("confidence", ascending=False, kind="stable")
        confidence = pool["confidence"].to_numpy(dtype=float)
        correct, clips = pool["correct"].to_numpy(dtype=bool), pool["clips"].to_numpy(dtype=float)
        cuts = [end for end in range(1, len(pool) + 1) if end == len(pool) or confidence[end] < confidence[end - 1]]
        bounds = [precision_bounds(correct[:end], clips[:end], certainty) for end in cuts]
        kept = np.cumsum(clips)
        curves[gender] = pd.DataFrame(
            {
                "threshold": [float(confidence[end - 1]) for end in cuts],
                "speakers": cuts,
                "clips": [int(kept[end - 1]) for end in cuts],
                "coverage": [float(kept[end - 1] / kept[-1]) for end in cuts],
                "precision": [precision for _, precision in bounds],
                "lower_bound": [lower for lower, _ in bounds],
            },
            columns=["threshold", "speakers", "clips", "coverage", "precision", "lower_bound"],
        )
    return curves


def _pool(speakers: pd.DataFrame, gender: str) -> pd.DataFrame:
    """The undisputed reference speakers predicted as `gender`: the only ones a threshold acts on."""
    index = BINARY_GENDERS.index(gender)
    return speakers[(speakers["predicted"] == index) & ~speakers["disputed"].astype(bool)]


def claims_at(speakers: pd.DataFrame, thresholds: dict[str, float], certainty: float) -> Claims:
    """What the reference says of thresholds the user chose (--min-confidence): the fields of
    certified_thresholds; `certified` is False, as no target was asked for."""
    claims: Claims = {}
    for gender in BINARY_GENDERS:
        pool = _pool(speakers, gender)
        chosen = pool[pool["confidence"] >= thresholds[gender]]
        lower, precision = precision_bounds(
            chosen["correct"].to_numpy(bool), chosen["clips"].to_numpy(float), certainty
        )
        claims[gender] = {
            "threshold": thresholds[gender], "certified": False, "lower_bound": lower if len(chosen) else None,
            "precision": precision if len(chosen) else None, "speakers": int(len(chosen)),
            "clips": int(chosen["clips"].sum()), "reference_speakers": int(len(pool)),
            "reference_clips": int(pool["clips"].sum()), "best_lower_bound": None,
        }  # fmt: skip
    return claims
