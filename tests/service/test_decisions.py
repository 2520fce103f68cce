"""Thresholds tied to stated error rates, and the identify outcome rules."""

import math

from service.decisions import Scored, identify_outcome, identify_threshold, verify_threshold
from service.model_card import Calibration, FarPoint

CAL = Calibration(
    a=12.0,
    b=-5.0,
    far_table=[FarPoint(far=10**-k, similarity=0.2 + 0.08 * k) for k in range(1, 7)],
)


def test_verify_threshold_follows_target_far():
    t = verify_threshold(CAL, 1e-3, None)
    assert math.isclose(t.similarity, 0.44)
    assert math.isclose(t.score, CAL.score(0.44))
    assert t.far == 1e-3


def test_explicit_verify_threshold_wins():
    t = verify_threshold(CAL, 1e-3, 0.9)
    assert t.score == 0.9 and t.far is None
    assert math.isclose(CAL.score(t.similarity), 0.9)


def test_identify_threshold_is_stricter_for_bigger_galleries():
    small = identify_threshold(CAL, 0.01, 1)
    big = identify_threshold(CAL, 0.01, 1000)
    assert math.isclose(small.far, 0.01) and math.isclose(big.far, 1e-5)
    assert big.similarity > small.similarity
    assert math.isclose(big.similarity, 0.6)
    assert "1000" in big.basis


def test_identify_threshold_never_extrapolates_below_the_table():
    t = identify_threshold(CAL, 0.01, 10**9)
    assert math.isclose(t.similarity, 0.68)


def _s(pid, score):
    return Scored(pid, pid, 0.0, score)


def test_identify_outcomes():
    thr = identify_threshold(CAL, 0.01, 10)
    hi, lo = thr.score + 0.2, thr.score - 0.2
    assert identify_outcome([], thr, 0.05) == "unknown"
    assert identify_outcome([_s("a", lo), _s("b", lo - 0.1)], thr, 0.05) == "unknown"
    assert identify_outcome([_s("a", hi), _s("b", lo)], thr, 0.05) == "match"
    assert identify_outcome([_s("a", hi), _s("b", hi - 0.01)], thr, 0.05) == "ambiguous"
    assert identify_outcome([_s("a", min(hi + 0.1, 1.0)), _s("b", thr.score)], thr, 0.05) == "match"
