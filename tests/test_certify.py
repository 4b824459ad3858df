"""Certified thresholds: a claim is a one-sided lower bound over reference speakers."""

import numpy as np
import pandas as pd
import pytest

from cvlabel.certify import CONFIDENCE_GRID, certified_thresholds, claims_at, fixed_sequence, precision_bounds


def reference(confidences, correct, clips=None, disputed=None, predicted=1):
    n = len(confidences)
    clips = clips if clips is not None else [10] * n
    disputed = disputed if disputed is not None else [False] * n
    return pd.DataFrame(
        {"predicted": predicted, "confidence": confidences, "correct": correct, "clips": clips, "disputed": disputed}
    )


def test_zero_mistakes_bound_is_the_closed_form():
    for n in (1, 10, 299):
        lower, precision = precision_bounds(np.ones(n, bool), np.full(n, 7.0), 0.95)
        assert precision == 1.0 and lower == pytest.approx(0.05 ** (1 / n))


def test_bound_is_clip_weighted_over_speakers():
    # one wrong speaker of four: 25% of clips when equal, 70% of clips when it is the prolific one
    correct = np.array([True, True, True, False])
    _, equal = precision_bounds(correct, np.array([10, 10, 10, 10]), 0.95)
    _, prolific = precision_bounds(correct, np.array([10, 10, 10, 70]), 0.95)
    assert equal == pytest.approx(0.75) and prolific == pytest.approx(0.3)
    # a prolific speaker counts as fewer independent speakers: a lower bound for the same precision
    low_many, _ = precision_bounds(np.ones(20, bool), np.full(20, 10.0), 0.95)
    low_skewed, _ = precision_bounds(np.ones(20, bool), np.array([200.0] + [1.0] * 19), 0.95)
    assert low_skewed < low_many


def test_fewer_reference_speakers_give_a_stricter_threshold():
    rng = np.random.default_rng(0)
    confidences = np.sort(rng.uniform(0.6, 1.0, 400))[::-1]
    correct = np.ones(400, bool)
    correct[[150, 260, 330]] = False  # mistakes only at lower confidences
    many = certified_thresholds(reference(confidences, correct), 0.97, 0.95)["female"]
    few = certified_thresholds(reference(confidences[::4], correct[::4]), 0.97, 0.95)["female"]
    assert many["certified"] and many["lower_bound"] is not None and many["lower_bound"] >= 0.97
    # a quarter of the speakers (one mistake among them) certify nothing at 0.97: the fewer, the stricter
    assert few["threshold"] is None and few["best_lower_bound"] is not None and few["best_lower_bound"] < 0.97
    assert many["reference_speakers"] == 400 and few["reference_speakers"] == 100


def test_too_few_speakers_certify_nothing_unless_accepted():
    claims = certified_thresholds(reference([0.99] * 20, [True] * 20), 0.99, 0.95)
    assert claims["female"]["threshold"] is None and claims["female"]["best_lower_bound"] == pytest.approx(0.05**0.05)
    assert claims["male"]["reference_speakers"] == 0 and claims["male"]["threshold"] is None
    accepted = certified_thresholds(reference([0.99] * 20, [True] * 20), 0.99, 0.95, accept_uncertified=True)
    assert accepted["female"]["threshold"] == pytest.approx(0.99) and not accepted["female"]["certified"]


def test_disputed_reference_speakers_are_left_out_like_blank_ones():
    confidences = np.linspace(0.99, 0.9, 100)
    correct = np.ones(100, bool)
    correct[0] = False  # the most confident speaker is wrong...
    with_it = certified_thresholds(reference(confidences, correct), 0.95, 0.95)["female"]
    disputed = np.zeros(100, bool)
    disputed[0] = True  # ...but disputed, so it is never labelled
    without = certified_thresholds(reference(confidences, correct, disputed=disputed), 0.95, 0.95)["female"]
    assert without["reference_speakers"] == 99 and without["precision"] == 1.0 and without["certified"]
    assert with_it["threshold"] is None  # a mistake among the most confident ends the sequence at its start


def test_ties_are_never_split():
    claims = certified_thresholds(reference([0.9] * 100 + [0.8] * 100, [True] * 150 + [False] * 50), 0.9, 0.95)
    assert claims["female"]["speakers"] == 100  # all the 0.9 speakers or none, never some


def test_claims_at_user_thresholds():
    claims = claims_at(reference([0.99, 0.95, 0.7], [True, False, True]), {"male": 0.9, "female": 0.9}, 0.95)
    assert claims["female"]["speakers"] == 2 and claims["female"]["precision"] == pytest.approx(0.5)
    assert claims["male"]["speakers"] == 0 and not claims["female"]["certified"]


def test_the_fixed_sequence_never_certifies_past_a_failing_threshold():
    # mistakes among the most confident, then many right: every cut's own bound would pass deep down
    confidences = [0.9999] * 100 + [0.95] * 700
    correct = [False] * 5 + [True] * 795
    pool = reference(confidences, correct, clips=[1] * 800)
    whole_lower, _ = precision_bounds(np.array(correct), np.ones(800), 0.95)
    assert whole_lower >= 0.95  # the search over every cut (cvlabel <= 0.3) certified the whole pool
    assert fixed_sequence(pool, 0.95, 0.95) is None  # the strictest testable threshold fails: it stops there
    assert certified_thresholds(pool, 0.95, 0.95)["female"]["threshold"] is None
    # with the same mistakes at the bottom instead, it walks down the grid to them and no further
    claim = fixed_sequence(reference(confidences[::-1], correct, clips=[1] * 800), 0.95, 0.95)
    assert claim is not None and claim["threshold"] in CONFIDENCE_GRID and claim["lower_bound"] >= 0.95


def test_thresholds_too_few_to_pass_are_not_tested():
    # 20 speakers can never certify 0.95 (0.05 ** (1 / 20) = 0.86): a mistake among them ends nothing
    confidences = [0.99999] * 20 + [0.99] * 400
    correct = [False] + [True] * 419
    claim = fixed_sequence(reference(confidences, correct, clips=[1] * 420), 0.95, 0.95)
    assert claim is not None and claim["speakers"] == 420


def test_an_uncertifiable_target_names_the_highest_the_reference_certifies():
    # 400 flawless speakers: 0.99 needs 299 equal ones, and one mistake in the lot sinks it; 0.98 passes
    correct = np.ones(400, bool)
    correct[5] = False
    claim = certified_thresholds(reference(np.linspace(0.999, 0.99, 400), correct, clips=[1] * 400), 0.995, 0.95)
    female = claim["female"]
    assert female["threshold"] is None and female["certifiable"]["target"] == 0.98
    assert 0 < female["certifiable"]["coverage"] <= 1
    assert fixed_sequence(reference(np.linspace(0.999, 0.99, 400), correct, clips=[1] * 400), 0.99, 0.95) is None


def test_the_fixed_sequence_keeps_its_guarantee_against_a_known_truth():
    """A fast benchmarks/certify_sim.py: over-confident speakers (the truth's temperature 1.5), 300 a
    draw; a claim is false when the true precision above its threshold is below the target."""
    rng = np.random.default_rng(1)

    def speakers(n):
        strength = np.abs(rng.normal(3.0, 2.5, n))
        right = rng.random(n) < 1 / (1 + np.exp(-strength / 1.5))
        return pd.DataFrame({"confidence": 1 / (1 + np.exp(-strength)), "clips": np.minimum(rng.geometric(0.42, n), 8),
                             "correct": right, "p": 1 / (1 + np.exp(-strength / 1.5))})  # fmt: skip

    population = speakers(200_000)
    draws, false_claims, claims = 200, 0, 0
    for _ in range(draws):
        claim = fixed_sequence(speakers(300), 0.9, 0.95)
        if claim is None:
            continue
        claims += 1
        kept = population[population["confidence"] >= claim["threshold"]]
        false_claims += (kept["clips"] * kept["p"]).sum() / kept["clips"].sum() < 0.9
    assert claims >= 50  # the test says something only if claims are made
    assert false_claims / draws <= 0.05 + 3 * (0.05 * 0.95 / draws) ** 0.5
