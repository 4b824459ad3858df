"""Do export's certified claims hold? A simulation with a known truth.

Reference speakers are drawn from a population whose precision at every threshold is known: a
speaker's confidence is uniform on [0.5, 1] ("uniform") or sigmoid(s) with s = |logit| ~
|Normal(3, 2.5)| ("strong"), the chance it is right is
sigmoid(s / T) (T = 1 calibrated, 1.5 over-confident, 0.67 under-confident), and it has 1-8 clips
(geometric, mean ~2.2), as a release's speakers have. For each cell (population,
reference speakers, target) and draw, a threshold is chosen on the reference as export does
(`certify.fixed_sequence`), and the true clip-weighted precision above that threshold is read off
the population (500,000 speakers). The older rule (the deepest of every cut whose bound reaches the
target, cvlabel <= 0.3) runs beside it on the same draws.

Columns per rule: certified (share of draws with a claim), wrong claims (share of all draws whose
claim is false: the true precision below the target; what a 95% family-wise guarantee bounds by
0.05), above truth (of the certified claims,
the share whose stated lower bound is above the true precision), below target (of the certified
claims, the share whose true precision is below the target: what a 95% guarantee bounds by 0.05),
coverage (the mean share of the population's clips above the threshold, over all draws).

    python benchmarks/certify_sim.py [--draws 300] [--speakers 100,300,1000,3000] [--targets 0.9,0.95,0.97,0.99]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.stats import beta

from cvlabel.certify import CONFIDENCE_GRID, fixed_sequence, precision_bounds

# name: (how confidences spread, the truth's temperature)
POPULATIONS = {
    "uniform calibrated": ("uniform", 1.0),
    "uniform over-confident": ("uniform", 1.5),
    "strong calibrated": ("strong", 1.0),
    "strong over-confident": ("strong", 1.5),
    "strong under-confident": ("strong", 0.67),
}
CERTAINTY = 0.95


def draw_speakers(n: int, spread: str, temperature: float, rng: np.random.Generator) -> pd.DataFrame:
    """n speakers of one predicted gender: confidence, clips, correct (bool), p_correct (the truth)."""
    if spread == "uniform":  # confidence uniform on [0.5, 1]: precision falls steadily with the threshold
        strength = np.log(1.0 / (1.0 - rng.uniform(0.5, 1.0, n)) - 1.0)
    else:  # strong: most speakers very sure, as a good model's are
        strength = np.abs(rng.normal(3.0, 2.5, n))
    confidence = 1.0 / (1.0 + np.exp(-strength))
    p_correct = 1.0 / (1.0 + np.exp(-strength / temperature))
    clips = np.minimum(rng.geometric(0.42, n), 8)
    return pd.DataFrame(
        {"confidence": confidence, "clips": clips, "correct": rng.random(n) < p_correct, "p_correct": p_correct}
    )


class Truth:
    """A population's true clip-weighted precision and clip coverage above any threshold."""

    def __init__(self, population: pd.DataFrame):
        order = population.sort_values("confidence", ascending=False)
        self.confidence = order["confidence"].to_numpy()[::-1]  # ascending, for searchsorted
        weights = order["clips"].to_numpy(float)
        self.kept_clips = np.cumsum(weights)[::-1]
        self.kept_right = np.cumsum(weights * order["p_correct"].to_numpy())[::-1]

    def at(self, threshold: float) -> tuple[float, float]:
        """(precision, coverage) of every speaker whose confidence >= threshold."""
        first = int(np.searchsorted(self.confidence, threshold, side="left"))
        if first >= len(self.confidence):
            return float("nan"), 0.0
        return float(self.kept_right[first] / self.kept_clips[first]), float(
            self.kept_clips[first] / self.kept_clips[0]
        )


def every_cut_rule(pool: pd.DataFrame, target: float) -> dict[str, float] | None:
    """cvlabel <= 0.3: the deepest cut (between distinct confidences) whose bound reaches the target."""
    order = pool.sort_values("confidence", ascending=False)
    weights = order["clips"].to_numpy(float)
    right = np.cumsum(weights * order["correct"].to_numpy(float))
    total, squares = np.cumsum(weights), np.cumsum(weights**2)
    precision = right / total
    effective = total**2 / squares
    successes = precision * effective
    with np.errstate(invalid="ignore"):
        lower = np.where(successes > 0, beta.ppf(1 - CERTAINTY, successes, effective - successes + 1), 0.0)
    passing = np.flatnonzero(lower >= target)
    if not passing.size:
        return None
    end = passing[-1]
    return {"threshold": float(order["confidence"].iloc[end]), "lower_bound": float(lower[end])}


def split_rule(pool: pd.DataFrame, target: float, rng: np.random.Generator) -> dict[str, float] | None:
    """Choose on a random half of the speakers (every_cut_rule), certify that one threshold on the other."""
    half = rng.random(len(pool)) < 0.5
    chosen = every_cut_rule(pool[half], target)
    if chosen is None:
        return None
    rest = pool[~half]
    kept = rest[rest["confidence"] >= chosen["threshold"]]
    lower, _ = precision_bounds(kept["correct"].to_numpy(bool), kept["clips"].to_numpy(float), CERTAINTY)
    return {"threshold": chosen["threshold"], "lower_bound": lower} if lower >= target else None


COARSE_GRID = CONFIDENCE_GRID[::4]
RULES = {
    "fixed sequence (peak)": lambda pool, target, rng: fixed_sequence(pool, target, CERTAINTY),
    "fixed sequence testable": lambda pool, target, rng: fixed_sequence(pool, target, CERTAINTY, start="testable"),
    "fixed sequence expected": lambda pool, target, rng: fixed_sequence(pool, target, CERTAINTY, start="expected"),
    "fixed sequence 24": lambda pool, target, rng: fixed_sequence(pool, target, CERTAINTY, COARSE_GRID),
    "split halves": split_rule,
    "every cut (<= 0.3)": lambda pool, target, rng: every_cut_rule(pool, target),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--speakers", default="100,300,1000,3000")
    parser.add_argument("--targets", default="0.9,0.95,0.97,0.99")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--populations", default=",".join(POPULATIONS), help="a comma-separated subset")
    parser.add_argument("--rules", default=",".join(RULES), help="a comma-separated subset")
    args = parser.parse_args()
    started = time.time()
    rows = []
    rules = {name: RULES[name] for name in args.rules.split(",")}
    for name in args.populations.split(","):
        spread, temperature = POPULATIONS[name]
        truth = Truth(draw_speakers(500_000, spread, temperature, np.random.default_rng(10_000 + args.seed)))
        for n in [int(x) for x in args.speakers.split(",")]:
            for target in [float(x) for x in args.targets.split(",")]:
                cell = list(POPULATIONS).index(name)  # draws that do not depend on which rules run
                rng = np.random.default_rng([args.seed, n, int(target * 1000), cell])
                tallies = {rule: {"certified": 0, "above": 0, "below": 0, "coverage": 0.0} for rule in rules}
                rule_rng = np.random.default_rng([args.seed, n, int(target * 1000), cell, 7])
                for _ in range(args.draws):
                    pool = draw_speakers(n, spread, temperature, rng)
                    for rule in rules:
                        claim = rules[rule](pool, target, rule_rng)
                        if claim is None:
                            continue
                        precision, coverage = truth.at(claim["threshold"])
                        tally = tallies[rule]
                        tally["certified"] += 1
                        tally["above"] += claim["lower_bound"] > precision
                        tally["below"] += precision < target
                        tally["coverage"] += coverage
                for rule, tally in tallies.items():
                    certified = max(tally["certified"], 1)
                    rows.append({
                        "population": name, "speakers": n, "target": target, "rule": rule,
                        "certified": tally["certified"] / args.draws,
                        "wrong claims": tally["below"] / args.draws,
                        "above truth": tally["above"] / certified,
                        "below target": tally["below"] / certified,
                        "coverage": tally["coverage"] / args.draws,
                    })  # fmt: skip
    table = pd.DataFrame(rows)
    print(f"{args.draws} draws a cell, certainty {CERTAINTY}; {time.time() - started:.0f} s")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary = table.groupby("rule", sort=False).agg(
        worst_wrong_claims=("wrong claims", "max"), worst_below_target=("below target", "max"),
        worst_above_truth=("above truth", "max"), mean_coverage=("coverage", "mean"),
    )  # fmt: skip
    print("over all cells:")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
